"""Where things live for one invocation (contract section 3), and shared option decorators."""

from __future__ import annotations

import os
from dataclasses import dataclass

import click

from journal import Layout, validate_task_id


@dataclass(frozen=True)
class Settings:
    root: str
    runs_dir: str
    out_dir: str
    debug: bool

    @property
    def layout(self) -> Layout:
        return Layout(self.runs_dir, self.out_dir)

    def task(self, given: str | None) -> str:
        """--task > RUNJOURNAL_TASK > MCP_RUNNER_TASK_ID > default, validated."""
        task = given if given is not None else os.environ.get("RUNJOURNAL_TASK") or os.environ.get("MCP_RUNNER_TASK_ID") or "default"
        return validate_task_id(task)

    def journal_dir(self, task: str | None) -> str:
        return self.layout.journal_dir(self.task(task))


def resolve(root: str | None, runs_dir: str | None, out_dir: str | None, debug: bool) -> Settings:
    root = root or os.environ.get("RUNJOURNAL_ROOT") or os.environ.get("CODEX_ORCHESTRATOR_ROOT") or os.getcwd()
    root = os.path.abspath(root)
    runs = runs_dir or os.environ.get("CODEX_ORCHESTRATOR_RUNS_DIR") or os.path.join(root, ".runs")
    out = out_dir or os.environ.get("CODEX_ORCHESTRATOR_OUT_DIR") or os.path.join(root, "out")
    return Settings(root, os.path.abspath(runs), os.path.abspath(out), debug)


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
