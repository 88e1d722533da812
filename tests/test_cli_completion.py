"""Shell completion through click's mechanism: run ids, task ids and pipeline ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import BashComplete
from helpers import _LOCATION_VARS, clean_env
from helpers.histories import RunScript, make_run_id, populate
from helpers.runner_support import cmd, pipeline, write_config

from runjournal.cli.main import cli


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    for name in _LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)
    populate(tmp_path, RunScript(make_run_id(1), task="nightly").items, task="nightly")
    populate(tmp_path, RunScript(make_run_id(2), task="nightly").items, task="nightly")
    populate(tmp_path, RunScript(make_run_id(3, ts=1_800_000_000 * 10**9), task="adhoc").items, task="adhoc")
    write_config(tmp_path, pipeline("ci", cmd("build", "true")), pipeline("docs", cmd("html", "true")))
    return tmp_path


def complete(root: Path, *words: str, incomplete: str = "") -> list[str]:
    completer = BashComplete(cli, {}, "runjournal", "_RUNJOURNAL_COMPLETE")
    return [item.value for item in completer.get_completions(["--root", str(root), *words], incomplete)]


def test_run_ids(root):
    newest_first = [make_run_id(3, ts=1_800_000_000 * 10**9), make_run_id(2), make_run_id(1)]
    assert complete(root, "status") == newest_first
    assert complete(root, "tail", "--run") == newest_first
    assert complete(root, "show", "--task", "nightly") == [make_run_id(2), make_run_id(1)]
    assert complete(root, "replay", incomplete="2027") == newest_first[:1]


def test_task_ids(root):
    assert complete(root, "runs", "--task") == ["adhoc", "nightly"]
    assert complete(root, "verify", "-t", incomplete="n") == ["nightly"]


def test_pipeline_ids(root):
    assert complete(root, "start") == ["ci", "docs"]
    assert complete(root, "plan", incomplete="d") == ["docs"]
    assert complete(root, "runs", "--pipeline") == ["ci", "docs"]


def test_the_scripts_come_from_the_installed_command(root):
    for shell, marker in (("bash", "complete -o nosort -F _runjournal_completion runjournal"), ("zsh", "#compdef runjournal"), ("fish", "complete --no-files --command runjournal")):
        env = clean_env() | {"_RUNJOURNAL_COMPLETE": f"{shell}_source"}
        done = subprocess.run([sys.executable, "-m", "runjournal"], capture_output=True, text=True, env=env, timeout=60)
        assert (done.returncode, done.stderr) == (0, ""), shell
        assert marker in done.stdout, done.stdout
    env = clean_env() | {"_RUNJOURNAL_COMPLETE": "bash_complete", "COMP_WORDS": f"runjournal --root {root} runs --task ", "COMP_CWORD": "5"}
    done = subprocess.run([sys.executable, "-m", "runjournal"], capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, "plain,adhoc\nplain,nightly\n")
