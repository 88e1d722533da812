"""Statuses in colour on a terminal (green succeeded, red failed, yellow running, cancelled or
stale); none where stdout is not a terminal, under $NO_COLOR, or with --format json."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import clean_env
from helpers.histories import RunScript, make_run_id, populate

from runjournal.cli.main import cli

GREEN, RED, YELLOW, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    runs = [
        RunScript(make_run_id(1), stages=1).stage(1).complete(),
        RunScript(make_run_id(2), stages=1).stage(1, exit_code=3).fail("stage stage-1 failed"),
        RunScript(make_run_id(3), stages=2, stale_after=10**9).stage(1).start_stage(2),
    ]
    populate(tmp_path, [item for run in runs for item in run.items])
    return tmp_path


def run(root: Path, *args: str, color: bool, **env: str) -> str:
    environment = {k: v for k, v in clean_env().items() if k != "NO_COLOR"} | env
    result = CliRunner().invoke(cli, ["--root", str(root), *args], color=color, env=environment, catch_exceptions=False)
    return result.output


def test_runs_on_a_terminal(root):
    lines = run(root, "runs", color=True).splitlines()
    assert lines[0].startswith("RUN ID ")  # headers stay plain
    by_run = {line.split()[0]: line for line in lines[1:]}
    assert f"  {YELLOW}in_progress{RESET}  " in by_run[make_run_id(3)]
    assert f"  {RED}failed{RESET}       " in by_run[make_run_id(2)]  # coloured, then padded as before
    assert f"  {GREEN}succeeded{RESET}    " in by_run[make_run_id(1)]
    assert click.unstyle("\n".join(lines)) == run(root, "runs", color=False).rstrip("\n")


def test_status_and_its_stages_on_a_terminal(root):
    out = run(root, "status", make_run_id(3), color=True)
    assert f"status:    {YELLOW}in_progress{RESET}\n" in out
    assert f"1  stage-1  {GREEN}succeeded{RESET}  " in out
    assert f"2  stage-2  {YELLOW}running{RESET}    " in out
    out = run(root, "status", make_run_id(2), color=True)
    assert f"status:    {RED}failed{RESET}\n" in out


@pytest.mark.parametrize(
    ("args", "env"),
    [(("runs",), {"NO_COLOR": "1"}), (("status", make_run_id(2)), {"NO_COLOR": "1"}), (("runs", "--format", "json"), {}), (("status", make_run_id(2), "--format", "json"), {})],
    ids=["runs NO_COLOR", "status NO_COLOR", "runs json", "status json"],
)
def test_no_colour_under_no_color_or_json(root, args, env):
    out = run(root, *args, color=True, **env)
    assert "failed" in out and "\x1b" not in out


def test_no_colour_where_stdout_is_not_a_terminal(root, run_cli):
    code, out, err = run_cli("runs")  # a real process, its stdout a pipe
    assert (code, err) == (0, "")
    assert "failed" in out and "\x1b" not in out
