"""Where things live for one invocation (contract section 3), and shared option decorators."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import click

from runjournal.journal import BadInput, EventStore, Layout, open_store, validate_task_id


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

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (one JSON document on stdout).",
)

task_option = click.option("--task", "-t", "task", metavar="T", help="Task id (default: $RUNJOURNAL_TASK, $MCP_RUNNER_TASK_ID or 'default').")


class PositiveNumber(click.FloatRange):
    """A finite number > 0: click's FloatRange lets 'nan' and 'inf' through."""

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number
