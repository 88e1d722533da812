"""`archive` and `prune`: ended runs leave the live journal for its archive, and archived
history is deleted, both by the same selectors (``projections.retention`` does the work)."""

from __future__ import annotations

import click

from runjournal.projections.render import Paths
from runjournal.projections.retention import Selection
from runjournal.projections.retention import archive as archive_runs
from runjournal.projections.retention import prune as prune_runs

from .complete import complete_task
from .context import format_option, pass_settings
from .lookup import journal_tasks
from .output import echo, emit_json
from .projection_cmds import Since


def _emit(docs: list[dict], verb: str, fmt: str) -> int:
    """What each task's archive or prune did: the documents (json), or a line each and its runs."""
    if fmt == "json":
        emit_json(docs)
        return 0
    for doc in docs:
        runs, units = len(doc["runs"]), len(doc["units"])
        would = "would be " if doc["dry_run"] else ""
        echo(f"task {doc['task_id']}: {runs} run(s) {would}{verb}; {units} unit(s) {would}{'moved to the archive' if verb == 'archived' else 'deleted'}, {doc['bytes']} bytes")
        for run_id in doc["runs"]:
            echo(f"  {run_id}")
    return 0


def _selection(before, keep_last, older_than) -> Selection:
    selection = Selection(before, keep_last, older_than)
    if not selection:
        raise click.UsageError("say which runs: --before DATE, --keep-last N or --older-than DURATION")
    return selection


def _selector_options(command):
    """The options ``archive`` and ``prune`` share: the tasks, the selectors, --format."""
    for option in reversed(
        (
            click.option("--task", "-t", "tasks", multiple=True, metavar="T", shell_complete=complete_task, help="Only this task (repeatable; default: every task)."),
            click.option("--before", type=Since(), metavar="DATE", help="Runs that ended before this time (ISO-8601)."),
            click.option("--keep-last", type=click.IntRange(min=0), metavar="N", help="All but the newest N runs."),
            click.option("--older-than", type=Since(), metavar="DURATION", help="Runs that ended longer ago than this (30d, 12h)."),
        )
    ):
        command = option(command)
    return command


@click.command()
@_selector_options
@click.option("--dry-run", is_flag=True, help="Show what would be archived; change nothing.")
@format_option
@pass_settings
def archive(settings, tasks, before, keep_last, older_than, dry_run, fmt):
    """Move ended runs out of the live journal into its archive (compressed, chain kept).

    The projections keep what they need of them (metrics.json, summary.json and state.json
    rebuild the same); replay, show and export --run read them from the archive; runs
    --archived lists them. Open runs, stale ones and the newest failed or cancelled run of a
    pipeline (the one resume continues) stay.

    Example: runjournal archive --task nightly --older-than 30d
    """
    selection = _selection(before, keep_last, older_than)
    return _emit([archive_runs(settings.store, t, selection, dry_run) for t in journal_tasks(settings, tasks)], "archived", fmt)


@click.command()
@_selector_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and how many bytes; change nothing.")
@format_option
@pass_settings
def prune(settings, tasks, before, keep_last, older_than, dry_run, fmt):
    """Delete archived runs for good: their archived units and projection directories.

    Only archived runs are pruned (`runjournal archive` first), and a unit only with every run
    in it; the archive keeps each pruned unit's entry (on the file store, its chain hashes).

    Example: runjournal prune --older-than 365d --dry-run
    """
    selection = _selection(before, keep_last, older_than)
    docs = [prune_runs(settings.store, t, selection, Paths(settings.runs_dir, settings.out_dir, t), dry_run) for t in journal_tasks(settings, tasks)]
    return _emit(docs, "pruned", fmt)
