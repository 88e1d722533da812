"""Commands that run pipelines: init, plan, start, exec, resume."""

from __future__ import annotations

import os
import shlex
import sys

import click

from runjournal.journal import validate_run_id
from runjournal.journal.errors import BadInput
from runjournal.runner import CONFIG_NAME, Runner, default_actor, load, starter_text
from runjournal.runner.config import Config, ConfigNotFound, Pipeline, Stage, starter

from .complete import complete_pipeline, complete_run
from .context import format_option, pass_settings, run_id_argument, task_option
from .lookup import run_task
from .output import echo, emit_json, table

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help=f"Pipeline config (default: <root>/{CONFIG_NAME}; the root is found upward from here)."
)

starter_option = click.option(
    "--starter", "use_starter", is_flag=True, help="Use the embedded starter pipeline (the one `runjournal init` writes) instead of a config file."
)

stream_option = click.option(
    "--stream",
    "-v",
    "stream",
    is_flag=True,
    help="Print each stage's output as it comes, each line marked with its stage ([build] ..., [build:stderr] ...).",
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


def _config(settings, config_path: str | None, use_starter: bool, command: str) -> Config:
    """The config a command runs: --starter, --config, else the root's, which must exist."""
    if use_starter:
        if config_path is not None:
            raise click.UsageError("--starter and --config exclude each other: give one")
        return starter()
    try:
        config = load(config_path, settings.root)
    except ConfigNotFound:
        raise ConfigNotFound(
            f"no {CONFIG_NAME} in {_looked_in(settings)}: write one in {settings.root} with `runjournal init`, "
            f"run the embedded starter with `runjournal {command} --starter`, or name one with --config FILE"
        ) from None
    if config.warning:
        echo(f"warning: {config.warning}", err=True)
    return config


def _looked_in(settings) -> str:
    meta = click.get_current_context().meta
    search = meta.get("runjournal.search")  # set when no root was named (cli.main._root)
    if search is not None:
        return search.describe()
    return f"{settings.root} ({meta.get('runjournal.root_source', '--root')})"


def _optional_config(settings, config_path: str | None) -> Config:
    """For commands that need only the limits and sub-pipelines (resume, exec): the root's
    config if there is one, else the starter's (the contract's limits)."""
    try:
        config = load(config_path, settings.root)
    except ConfigNotFound:
        return starter()
    if config.warning:
        echo(f"warning: {config.warning}", err=True)
    return config


def _missing_cwds(config: Config, first: Pipeline, root: str) -> list[str]:
    """What `start` would fail on: a command stage's cwd that is not a directory, in ``first``
    and every pipeline it runs as a sub-pipeline."""
    problems, todo, seen = [], [first], {first.id}
    while todo:
        p = todo.pop(0)
        for s in p.stages:
            if s.kind == "subpipeline" and s.pipeline not in seen:
                seen.add(s.pipeline)
                todo.append(config.pipelines[s.pipeline])
            if s.cwd is None:
                continue
            path = os.path.normpath(os.path.join(root, s.cwd))
            if not os.path.isdir(path):
                what = "is not a directory" if os.path.exists(path) else "does not exist"
                shown = f"{s.cwd!r}" if path == s.cwd else f"{s.cwd!r} ({path})"
                problems.append(f"{config.path}: pipeline {p.id!r} stage {s.id!r}: cwd {shown} {what}")
    return problems


@click.command()
@click.argument("pipeline", required=False, shell_complete=complete_pipeline)
@config_option
@starter_option
@click.option("--list", "list_", is_flag=True, help="List the config's pipelines (id, title, number of stages) instead.")
@format_option
@pass_settings
def plan(settings, pipeline, config_path, use_starter, list_, fmt):
    """Show the stages that `start` would run, and check that their working directories exist.

    Exits 2 if the config is malformed or missing, or a stage's cwd is not a directory.

    Example: runjournal plan diagnostics --format json
    """
    if list_ and pipeline is not None:
        raise click.UsageError(f"--list lists every pipeline: give it without PIPELINE (got {pipeline!r})")
    config = _config(settings, config_path, use_starter, "plan")
    if list_:
        return _list(config, fmt)
    p = config.pipeline(pipeline)
    problems = _missing_cwds(config, p, settings.root)
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
        emit_json(
            {"config": config.path, "pipeline_id": p.id, "title": p.title, "description": p.description, "tags": list(p.tags), "stages": stages, "problems": problems}
        )
        return _report(problems)
    echo(f"{p.id}: {p.title}  ({config.path})")
    if p.description:
        echo(f"  {p.description}")
    rows = []
    for s in stages:
        what = s["command"] if s["kind"] == "command" else f"sub-pipeline {s['pipeline']}"
        flags = ", ".join(f for f, on in (("failure allowed", s["allow_failure"]), ("optional", s["optional"])) if on)
        rows.append([str(s["index"]), s["id"], what or "", flags])
    table(rows, ["#", "stage", "runs", "notes"])
    return _report(problems)


def _report(problems: list[str]) -> int:
    for problem in problems:
        echo(f"error: {problem}", err=True)
    return 2 if problems else 0


def _list(config: Config, fmt: str) -> int:
    """`plan --list`: every pipeline of the config."""
    pipelines = [{"id": p.id, "title": p.title, "description": p.description, "tags": list(p.tags), "stages": len(p.stages)} for p in config.pipelines.values()]
    if fmt == "json":
        emit_json({"config": config.path, "pipelines": pipelines})
        return 0
    echo(f"{len(pipelines)} pipeline(s) in {config.path}")
    table([[p["id"], p["title"], str(p["stages"])] for p in pipelines], ["pipeline", "title", "stages"])
    return 0


def _runner(settings, task, config: Config, fmt, quiet_token: bool = False, stream: bool = False) -> tuple[Runner, Config]:
    say = (lambda line: echo(line, err=True)) if fmt == "json" else echo  # echo: every line made safe for a terminal
    runner = Runner(settings.layout, settings.root, settings.task(task), config, say=say, store=settings.store, quiet_token=quiet_token, stream=stream)
    return runner, config


def _finish(result, fmt) -> int:
    if fmt == "json":
        emit_json(result.to_dict())
    return result.exit_code


@click.command()
@click.argument("pipeline", required=False, shell_complete=complete_pipeline)
@task_option
@config_option
@starter_option
@click.option("--parent-run", "parent_run", metavar="ID", shell_complete=complete_run, help="Record this run as a child of run ID.")
@quiet_token_option
@stream_option
@format_option
@pass_settings
def start(settings, pipeline, task, config_path, use_starter, parent_run, quiet_token, stream, fmt):
    """Run a pipeline and journal it; exits 0 if it succeeded, 1 if it failed, 130 if cancelled.

    Prints the run id, the manifest path and the resume token (kept in a file only you can read;
    with --quiet-token, only that file's path). The config is codex.orchestrator.json in the
    root; without --root, the root is the nearest directory holding one, from here up to the
    repository's top. No config is an error (exit 2): `runjournal init` writes one, --starter
    runs the embedded starter pipeline.

    Example: runjournal start diagnostics --task nightly
    """
    if parent_run is not None:
        validate_run_id(parent_run)
    task = settings.task(task)  # bad ids are refused before a missing config
    runner, config = _runner(settings, task, _config(settings, config_path, use_starter, "start"), fmt, quiet_token, stream)
    try:
        runner.install_signal_handlers()
        result = runner.start(config.pipeline(pipeline), parent_run_id=parent_run)
    finally:
        runner.close()
    return _finish(result, fmt)


def _exec_pipeline(argv: list[str], cwd: str) -> Pipeline:
    """What ``Runner.exec`` runs, in ``cwd`` (relative to the root)."""
    command = shlex.join(argv)
    return Pipeline("exec", f"exec: {command[:100]}", (Stage("command", "exec", command[:200] or "exec", command=command, cwd=cwd),))


@click.command("exec", context_settings={"ignore_unknown_options": True})
@task_option
@quiet_token_option
@stream_option
@format_option
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_settings
def exec_(settings, task, quiet_token, stream, fmt, argv):
    """Run one command as a one-stage pipeline, journaled like any run.

    Example: runjournal exec --task adhoc -- make test
    """
    runner, _ = _runner(settings, task, _optional_config(settings, None), fmt, quiet_token, stream)
    here = os.getcwd()
    found_above = "runjournal.search" in click.get_current_context().meta and here != settings.root
    try:
        runner.install_signal_handlers()
        if found_above:  # the root is a parent's, found by its config: the command runs where it was typed
            result = runner.start(_exec_pipeline(list(argv), os.path.relpath(here, settings.root)))
        else:
            result = runner.exec(list(argv))
    finally:
        runner.close()
    return _finish(result, fmt)


@click.command()
@run_id_argument
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
@stream_option
@format_option
@pass_settings
def resume(settings, run_id, token, task, config_path, reason, actor, stream, fmt):
    """Continue a failed, cancelled or crashed run: stages that succeeded are skipped.

    A wrong or missing token, a run still alive, or a run that already succeeded is
    refused and recorded as a blocked resume. Before it reruns anything, it stops what a
    killed runner's unfinished stage left running on this host (TERM, cancelGraceSeconds,
    KILL); a stage group it may not stop refuses the resume the same way.

    The run is looked for in every task unless --task (or $RUNJOURNAL_TASK) names one.

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
    task = run_task(settings, run_id, task)
    runner, _ = _runner(settings, task, _optional_config(settings, config_path), fmt, stream=stream)
    try:
        runner.install_signal_handlers()
        result = runner.resume(run_id, token, actor or default_actor(), reason)
    finally:
        runner.close()
    return _finish(result, fmt)
