"""Where things live for one invocation (contract section 3), and shared option decorators."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import click

from runjournal.journal import BadInput, EventStore, Layout, open_store, validate_task_id

from .complete import complete_run, complete_task


@dataclass(frozen=True)
class Settings:
    root: str
    runs_dir: str
    out_dir: str
    debug: bool
    #: where the journals are (contract section 3): --store, $RUNJOURNAL_STORE, else the runs dir
    store_url: str = ""
    #: the directories the user named: the root, and the runs and out dirs where given
    roots: tuple[str, ...] = ()

    @property
    def layout(self) -> Layout:
        return Layout(self.runs_dir, self.out_dir, self.roots or (self.root,))

    @property
    def store(self) -> EventStore:
        """The store, opened once per command and closed when the command ends."""
        ctx = click.get_current_context()
        store = ctx.meta.get("runjournal.store")
        if store is None:
            # a runs dir the user did not name (<root>/.runs) is below the root: not followed through a link
            root = None if self.store_url else self.layout.root_of(self.runs_dir)
            store = ctx.meta["runjournal.store"] = open_store(self.store_url or self.runs_dir, root=root)
            ctx.call_on_close(store.close)
        return store

    def task(self, given: str | None) -> str:
        """--task > RUNJOURNAL_TASK > MCP_RUNNER_TASK_ID > default, validated."""
        task = given if given is not None else os.environ.get("RUNJOURNAL_TASK") or os.environ.get("MCP_RUNNER_TASK_ID") or "default"
        return validate_task_id(task)



def _pick(given: str | None, option: str, *variables: str) -> tuple[str | None, str]:
    """The first value set, and what set it (to name it in an error)."""
    if given:
        return given, option
    for name in variables:
        if os.environ.get(name):
            return os.environ[name], f"${name}"
    return None, option


def _directory(path: str, source: str) -> str:
    """``path`` made absolute; BadInput if it, or the nearest part of it that exists, is not a directory."""
    path = probe = os.path.abspath(path)
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "a file" if os.path.isfile(probe) else "not a directory"
        raise BadInput(f"{source} {path}: {probe} is {what}" if probe != path else f"{source} {path} is {what}, not a directory")
    return path


def found_root(root: str | None, meta: dict | None = None) -> str | None:
    """The root given, or, when neither ``--root`` nor its variables name one, the nearest
    directory holding a config from here up (``runner.config.find``; None if there is none, and
    the current directory is the root). ``meta`` keeps the search, for the commands that say
    where they looked."""
    if _pick(root, "--root", "RUNJOURNAL_ROOT", "CODEX_ORCHESTRATOR_ROOT")[0]:
        return root
    from runjournal.runner.config import find

    search = find(os.getcwd())
    if meta is not None:
        meta["runjournal.search"] = search
    return os.path.dirname(search.found) if search.found else None


def resolve(root: str | None, runs_dir: str | None, out_dir: str | None, debug: bool, store: str | None = None) -> Settings:
    """The locations of contract section 3; those given (option or variable) must be directories."""
    root, source = _pick(root, "--root", "RUNJOURNAL_ROOT", "CODEX_ORCHESTRATOR_ROOT")
    root = _directory(root, source) if root else os.getcwd()
    runs, source = _pick(runs_dir, "--runs-dir", "CODEX_ORCHESTRATOR_RUNS_DIR")
    named = [root] + ([_directory(runs, source)] if runs else [])
    runs = named[-1] if runs else os.path.join(root, ".runs")
    out, source = _pick(out_dir, "--out-dir", "CODEX_ORCHESTRATOR_OUT_DIR")
    if out:
        named.append(_directory(out, source))
    out = named[-1] if out else os.path.join(root, "out")
    url, source = _pick(store, "--store", "RUNJOURNAL_STORE")
    if url and "://" not in url:
        url = _directory(url, source)  # a directory: the file store of that runs directory
    return Settings(root, runs, out, debug, url or "", tuple(named))


pass_settings = click.make_pass_decorator(Settings)

def _format_option(json_is: str):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help=f"text for people, json for scripts: {json_is}.")


format_option = _format_option("one JSON document on stdout")


def streaming_format_option(until: str | None = None):
    """--format of a command that streams: JSON Lines, always or (``until``) in one mode only."""
    lines = "JSON Lines (one JSON object per line)"
    return _format_option(f"{until}, {lines}" if until else lines)


output_option = click.option(
    "--output",
    "-o",
    default="-",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    metavar="FILE",
    help="Write to FILE instead of stdout (-). A regular file is replaced atomically; a device or a FIFO is written through.",
)

task_option = click.option(
    "--task", "-t", "task", metavar="T", shell_complete=complete_task, help="Task id (default: $RUNJOURNAL_TASK, $MCP_RUNNER_TASK_ID or 'default')."
)
#: the RUN_ID argument of the commands on one run
run_id_argument = click.argument("run_id", shell_complete=complete_run)
#: --run ID of the commands that can narrow to one run
run_option = click.option("--run", "run_id", metavar="ID", shell_complete=complete_run, help="Only this run's events (looked for in every task unless --task).")


class PositiveNumber(click.FloatRange):
    """A finite number > 0: click's FloatRange lets 'nan' and 'inf' through."""

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
