"""`archive` and `prune`: ended runs leave the live journal for its archive (``journal.archive``),
and archived history is deleted, both by the same selectors.

Archiving appends one ``runs_archived`` record (what the projections need of every archived run:
``projections.state.Snapshot``), then moves the oldest sealed segments that hold nothing else to
``archive/``. Pruning deletes archived segments whose runs are all selected, then records that
those runs are gone, then removes their projection directories.
"""

from __future__ import annotations

import os
import shutil

import click
import msgspec

from runjournal.journal import archive as jarchive
from runjournal.journal import events as ev
from runjournal.journal.files import FileStore
from runjournal.projections.state import Run, Snapshot, TaskState, WriterTotals, read_snapshot, snapshot

from .complete import complete_task
from .context import format_option, pass_settings
from .lookup import journal_tasks
from .output import echo, emit_json
from .projection_cmds import Since

ENDED = ("succeeded", "failed", "cancelled")


class Fold:
    """The live journal folded as a rebuild folds it, with what an archive needs besides: each
    run's share of the writer totals, its last sequence, the last snapshot, the runs it holds."""

    def __init__(self, store, task: str):
        self.state = TaskState(task_id=task)
        self.writers: dict[str, WriterTotals] = {}
        self.run_seqs: dict[str, int] = {}
        self.earlier: Snapshot | None = None
        self.snapshot_seq = 0  # the last runs_archived record
        for rec in store.records(task):
            self.state.apply(rec)
            self.run_seqs[rec.run_id] = rec.run_seq
            event = rec.event
            if type(event) is ev.WriterStats:
                self.writers.setdefault(rec.run_id, WriterTotals()).add(event)
            elif type(event) is ev.RunsArchived:
                self.earlier, self.snapshot_seq = read_snapshot(event.state), rec.seq
            elif type(event) in (ev.RunCompleted, ev.RunFailed, ev.RunCancelled):
                ended = self.state.runs.get(rec.run_id)
                for cmd in ended.commands if ended is not None else ():
                    cmd.log = []  # the fold renders nothing: an ended run's output leaves memory
            if len(self.state.dirty_commands) > 1024:
                self.state.dirty_commands = set()


def chosen(runs: list[Run], before: int | None, keep_last: int | None, older_than: int | None) -> list[Run]:
    """The runs the selectors pick (all of them must), oldest first: ``before`` and
    ``older_than`` by the time a run ended, ``keep_last`` leaves the newest N by start."""
    picked = sorted(runs, key=lambda r: (r.started_ts, r.run_id))
    if keep_last is not None:
        picked = picked[: max(0, len(picked) - keep_last)]
    for limit in (before, older_than):
        if limit is not None:
            picked = [r for r in picked if (r.completed_ts or 0) < limit]
    return picked


def archivable(state: TaskState) -> list[Run]:
    """Runs that may be archived: ended, not already archived, and not the newest run of their
    pipeline when it failed or was cancelled (`resume` would continue that one)."""
    newest: dict[str, Run] = {}
    for run in state.runs.values():
        if run.parent_run_id is None:
            top = newest.get(run.pipeline_id)
            if top is None or (run.started_ts, run.run_id) > (top.started_ts, top.run_id):
                newest[run.pipeline_id] = run
    resumable = {r.run_id for r in newest.values() if r.status in ("failed", "cancelled")}
    return [
        r
        for r in state.runs.values()
        if r.status in ENDED and r.completed_ts is not None and r.stale_since_ts is None and r.run_id not in state.archived and r.run_id not in resumable
    ]


def _file_store(settings) -> FileStore:
    store = settings.store
    if not isinstance(store, FileStore):
        raise click.UsageError("archive and prune work on the file store only in this version (the PostgreSQL store keeps every record)")
    return store


def archive_task(settings, task: str, before, keep_last, older_than, dry_run: bool) -> dict:
    store = _file_store(settings)
    fold = Fold(store, task)
    picked = chosen(archivable(fold.state), before, keep_last, older_than)
    doc = {"task_id": task, "runs": [r.run_id for r in picked], "dry_run": dry_run, "segments": [], "bytes": 0, "stored_bytes": 0}
    if dry_run:
        return doc
    everything = {**fold.state.archived, **{r.run_id: fold.writers.get(r.run_id, WriterTotals()) for r in picked}}
    journal = store.writer(task)
    covered = fold.snapshot_seq
    if picked:
        state = snapshot(fold.state, everything, fold.earlier)
        covered = journal.record(ev.RunsArchived(runs=tuple(sorted(everything)), state=state), {r.run_id: fold.run_seqs.get(r.run_id, 0) for r in picked}).seq
    # (with nothing new picked: what an earlier archive left to move, or left half moved)
    moved = jarchive.move(journal, covered, set(everything))
    doc.update(
        snapshot_seq=covered,
        segments=[e.segment for e in moved],
        bytes=sum(e.bytes for e in moved),
        stored_bytes=sum(e.file_bytes for e in moved),
    )
    return doc


def prune_task(settings, task: str, before, keep_last, older_than, dry_run: bool) -> dict:
    store = _file_store(settings)
    fold = Fold(store, task)
    directory = store.journal_dir(task)
    found = jarchive.manifest(directory)
    archived = [r for r in fold.state.runs.values() if r.run_id in fold.state.archived]
    picked = {r.run_id for r in chosen(archived, before, keep_last, older_than)}
    live = set(fold.run_seqs)  # runs with records still in the live journal
    picked -= live
    # a run goes only with every segment it has records in: drop runs that share a segment
    # with one that stays, until nothing changes
    while True:
        staying = {run for e in found.segments if not e.pruned and not set(e.runs) <= picked | {""} for run in e.runs}
        if not staying & picked:
            break
        picked -= staying
    going = [e for e in found.segments if not e.pruned and set(e.runs) <= picked | {""} and set(e.runs) & picked]
    picked = {run for e in going for run in e.runs if run} | {
        r for r in picked if not any(r in e.runs for e in found.segments if not e.pruned)
    }
    doc = {
        "task_id": task,
        "runs": sorted(picked),
        "dry_run": dry_run,
        "segments": [e.segment for e in going],
        "bytes": sum(e.file_bytes for e in going),
    }
    if dry_run or not picked:
        return doc
    journal = store.writer(task)
    gone = {e.segment for e in going}
    with jarchive.exclusive(journal):  # no archiver moving segments meanwhile
        with journal.hold() as dfd:
            jarchive.recover(dfd)
            found = jarchive.manifest(dfd)
            entries = [msgspec.structs.replace(e, pruned=True) if e.segment in gone else e for e in found.segments]
            jarchive.write_manifest(dfd, msgspec.structs.replace(found, segments=entries))
        for e in going:  # listed as pruned first: a kill here leaves files the next recover removes
            try:
                os.unlink(os.path.join(directory, jarchive.ARCHIVE_DIR, e.file))
            except FileNotFoundError:
                pass
    remaining = {rid: w for rid, w in fold.state.archived.items() if rid not in picked}
    state = snapshot(fold.state, remaining, fold.earlier)
    rec = journal.record(ev.RunsArchived(runs=tuple(sorted(remaining)), state=state, pruned=tuple(sorted(picked))))
    paths = _paths(settings, task)
    for run_id in sorted(picked):
        shutil.rmtree(paths.run_dir(run_id), ignore_errors=True)
    doc["snapshot_seq"] = rec.seq
    return doc


def _paths(settings, task: str):
    from runjournal.projections.render import Paths

    return Paths(settings.runs_dir, settings.out_dir, task)


def _report(doc: dict, verb: str) -> None:
    runs, segs = len(doc["runs"]), len(doc["segments"])
    would = "would be " if doc["dry_run"] else ""
    echo(f"task {doc['task_id']}: {runs} run(s) {would}{verb}; {segs} segment(s) {would}{'moved to archive/' if verb == 'archived' else 'deleted'}, {doc['bytes']} bytes")
    for run_id in doc["runs"]:
        echo(f"  {run_id}")


def _selectors(before, keep_last, older_than) -> None:
    if before is None and keep_last is None and older_than is None:
        raise click.UsageError("say which runs: --before DATE, --keep-last N or --older-than DURATION")


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
    _selectors(before, keep_last, older_than)
    docs = [archive_task(settings, t, before, keep_last, older_than, dry_run) for t in journal_tasks(settings, tasks)]
    if fmt == "json":
        emit_json(docs)
    else:
        for doc in docs:
            _report(doc, "archived")
    return 0


@click.command()
@_selector_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and how many bytes; change nothing.")
@format_option
@pass_settings
def prune(settings, tasks, before, keep_last, older_than, dry_run, fmt):
    """Delete archived runs for good: their archived segments and projection directories.

    Only archived runs are pruned (`runjournal archive` first), and a segment only with every
    run in it; the archive keeps each pruned segment's chain hashes.

    Example: runjournal prune --older-than 365d --dry-run
    """
    _selectors(before, keep_last, older_than)
    docs = [prune_task(settings, t, before, keep_last, older_than, dry_run) for t in journal_tasks(settings, tasks)]
    if fmt == "json":
        emit_json(docs)
    else:
        for doc in docs:
            _report(doc, "pruned")
    return 0
