"""Commands that run pipelines: init, plan, start, exec, resume."""

from __future__ import annotations

import os
import sys

import click

from runjournal.journal import validate_run_id
from runjournal.journal.errors import BadInput
from runjournal.runner import CONFIG_NAME, Runner, default_actor, load, starter_text

from .context import format_option, pass_settings, task_option
from .output import echo, emit_json, table

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help=f"Pipeline config (default: <root>/{CONFIG_NAME}, else the embedded starter)."
)

quiet_token_option = click.option(
    "--quiet-token",
    is_flag=True,
    envvar="RUNJOURNAL_QUIET_TOKEN",
    help="Print where the resume token's file is, never the token (json: \"resume_token\" is null); for CI logs. Default: $RUNJOURNAL_QUIET_TOKEN=1.",
)


@click.command()
@pass_settings
def init(settings):
    """Write a starter codex.orchestrator.json in the root (never overwrites).

    Example: runjournal init && runjournal plan
    """
    path = os.path.join(settings.root, CONFIG_NAME)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise BadInput(f"{path} already exists; not overwriting it") from None
    with os.fdopen(fd, "w") as f:
        f.write(starter_text())
    echo(f"wrote {path}: edit its stages, then `runjournal plan` and `runjournal start`")
    return 0


@click.command()
@click.argument("pipeline", required=False)
@config_option
@format_option
@pass_settings
def plan(settings, pipeline, config_path, fmt):
    """Show the stages that `start` would run.

    Example: runjournal plan diagnostics --format json
    """
    config = load(config_path, settings.root)
    p = config.pipeline(pipeline)
    stages = [
        {
            "index": i,
            "id": s.id,
            "title": s.title,
            "kind": s.kind,
            "command": s.command,
            "pipeline": s.pipeline,
            "cwd": s.cwd,
            "allow_failure": s.allow_failure,
            "optional": s.optional,
        }
        for i, s in enumerate(p.stages, 1)
    ]
    if fmt == "json":
        emit_json({"config": config.path, "pipeline_id": p.id, "title": p.title, "description": p.description, "tags": list(p.tags), "stages": stages})
        return 0
    echo(f"{p.id}: {p.title}  ({config.path})")
    if p.description:
        echo(f"  {p.description}")
    rows = []
    for s in stages:
        what = s["command"] if s["kind"] == "command" else f"sub-pipeline {s['pipeline']}"
        flags = ", ".join(f for f, on in (("failure allowed", s["allow_failure"]), ("optional", s["optional"])) if on)
        rows.append([str(s["index"]), s["id"], what or "", flags])
    table(rows, ["#", "stage", "runs", "notes"])
    return 0


def _runner(settings, task, config_path, fmt, quiet_token: bool = False) -> tuple[Runner, object]:
    config = load(config_path, settings.root)
    say = (lambda line: echo(line, err=True)) if fmt == "json" else echo
    runner = Runner(settings.layout, settings.root, settings.task(task), config, say=say, store=settings.store, quiet_token=quiet_token)
    return runner, config


def _finish(result, fmt) -> int:
    if fmt == "json":
        emit_json(result.to_dict())
    return result.exit_code


@click.command()
@click.argument("pipeline", required=False)
@task_option
@config_option
@click.option("--parent-run", "parent_run", metavar="ID", help="Record this run as a child of run ID.")
@quiet_token_option
@format_option
@pass_settings
def start(settings, pipeline, task, config_path, parent_run, quiet_token, fmt):
    """Run a pipeline and journal it; exits 0 if it succeeded, 1 if it failed, 130 if cancelled.

    Prints the run id, the manifest path and the resume token (kept in a file only you can read;
    with --quiet-token, only that file's path). Without a config file, runs the embedded
    starter pipeline.

    Example: runjournal start diagnostics --task nightly
    """
    if parent_run is not None:
        validate_run_id(parent_run)
    runner, config = _runner(settings, task, config_path, fmt, quiet_token)
    try:
        runner.install_signal_handlers()
        result = runner.start(config.pipeline(pipeline), parent_run_id=parent_run)
    finally:
        runner.close()
    return _finish(result, fmt)


@click.command("exec", context_settings={"ignore_unknown_options": True})
@task_option
@quiet_token_option
@format_option
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_settings
def exec_(settings, task, quiet_token, fmt, argv):
    """Run one command as a one-stage pipeline, journaled like any run.

    Example: runjournal exec --task adhoc -- make test
    """
    runner, _ = _runner(settings, task, None, fmt, quiet_token)
    try:
        runner.install_signal_handlers()
        result = runner.exec(list(argv))
    finally:
        runner.close()
    return _finish(result, fmt)


@click.command()
@click.argument("run_id")
@click.option(
    "--token",
    metavar="TOKEN|@FILE|-",
    envvar="RUNJOURNAL_RESUME_TOKEN",
    help="The resume token `start` printed: @FILE reads it from a file, - from stdin (default: $RUNJOURNAL_RESUME_TOKEN). Prefer these to the token itself, which shows in the process list and shell history.",
)
@task_option
@config_option
@click.option("--reason", default="resumed from the command line", show_default=True, help="Why, for the manifest's resume events.")
@click.option("--actor", default=None, help="Who resumes (default: $USER).")
@format_option
@pass_settings
def resume(settings, run_id, token, task, config_path, reason, actor, fmt):
    """Continue a failed, cancelled or crashed run: stages that succeeded are skipped.

    A wrong or missing token, a run still alive, or a run that already succeeded is
    refused and recorded as a blocked resume. Before it reruns anything, it stops what a
    killed runner's unfinished stage left running on this host (TERM, cancelGraceSeconds,
    KILL); a stage group it may not stop refuses the resume the same way.

    Example: runjournal resume 2025-12-01T09-37-11-576Z-1a60ebea --token @.runs/default/.tokens/2025-12-01T09-37-11-576Z-1a60ebea
    """
    validate_run_id(run_id)
    if not reason.strip():
        raise BadInput("--reason must not be empty: say why the run is resumed (the manifest schema requires it)")
    if token == "-":
        token = sys.stdin.readline().strip()
    elif token and token.startswith("@"):
        try:
            with open(token[1:]) as f:
                token = f.read().strip()
        except OSError as e:
            raise BadInput(f"cannot read the token file {token[1:]}: {e.strerror}") from None
    runner, _ = _runner(settings, task, config_path, fmt)
    try:
        runner.install_signal_handlers()
        result = runner.resume(run_id, token, actor or default_actor(), reason)
    finally:
        runner.close()
    return _finish(result, fmt)
