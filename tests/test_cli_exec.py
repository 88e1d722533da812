"""`runjournal exec -- CMD`: one command as a one-stage run, journaled like any other."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.invoke import invoke  # noqa: F401 - fixture
from helpers.runner_support import cli, manifest, metrics, task_dir, token_file

from runjournal.journal import Journal
from runjournal.journal import events as ev
from runjournal.journal.errors import JournalWriteFailed


def test_exec_of_a_failing_command_exits_1_and_records_the_failure(tmp_path: Path):
    p = cli(tmp_path, "exec", "--format", "json", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert p.returncode == 1, p.stderr
    result = json.loads(p.stdout)
    assert list(result) == ["run_id", "task_id", "status", "exit_code", "manifest", "resume_token"]
    assert (result["status"], result["exit_code"], result["task_id"]) == ("failed", 1, "default")
    assert result["resume_token"] == token_file(tmp_path, result["run_id"]).read_text().strip()

    doc = manifest(tmp_path, result["run_id"])
    assert (doc["pipeline_id"], doc["status"]) == ("exec", "failed")
    [command] = doc["commands"]
    assert (command["id"], command["command"], command["status"], command["exit_code"]) == ("exec", "sh -c 'echo oops >&2; exit 3'", "failed", 3)
    error = json.loads((tmp_path / command["error_file"]).read_text())
    assert (error["reason"], error["details"]["exit_code"], error["details"]["stderr"]) == ("stage exec exited with 3", 3, "oops\n")
    [line] = metrics(tmp_path)
    assert (line["pipeline_id"], line["status"], line["commands_failed"]) == ("exec", "failed", 1)


def test_exec_keeps_each_argument_whole(tmp_path: Path):
    p = cli(tmp_path, "exec", "--task", "adhoc", "--", "printf", "%s|", "two words", "it's", "$HOME")
    assert p.returncode == 0, p.stderr
    [run_id] = [d.name for d in (task_dir(tmp_path, "adhoc") / "cli").iterdir()]
    doc = manifest(tmp_path, run_id, "adhoc")
    log = tmp_path / doc["commands"][0]["log_path"]
    assert log.read_text() == "two words|it's|$HOME|"


def test_exec_runs_without_a_config_and_ignores_one(tmp_path: Path):
    (tmp_path / "codex.orchestrator.json").write_text('{"pipelines": [{"id": "other", "stages": [{"id": "a", "command": "exit 9"}]}]}')
    p = cli(tmp_path, "exec", "--format", "json", "--", "true")
    assert p.returncode == 0, p.stderr
    assert manifest(tmp_path, json.loads(p.stdout)["run_id"])["pipeline_id"] == "exec"


def test_exec_needs_a_command(tmp_path: Path):
    p = cli(tmp_path, "exec")
    assert p.returncode == 2
    assert p.stderr.startswith("error: Missing argument 'ARGV...'")


def test_a_run_whose_start_cannot_be_recorded_runs_nothing(tmp_path: Path, invoke, monkeypatch):
    # the journal opens, then refuses the run's first event (a disk that filled just then):
    # nothing is run, the resume token is removed, one error line
    real = Journal.append_batch

    def refuse_starts(self, items, expected=None):
        items = list(items)
        if any(isinstance(i[1], ev.RunStarted) for i in items):
            raise JournalWriteFailed(f"cannot append to {self.directory}/seg: No space left on device; nothing from this append was recorded")
        return real(self, items, expected)

    monkeypatch.setattr(Journal, "append_batch", refuse_starts)
    code, out, err = invoke("exec", "--", "touch", str(tmp_path / "ran"))
    assert code == 1
    assert err == f"error: cannot append to {task_dir(tmp_path) / 'journal'}/seg: No space left on device; nothing from this append was recorded\n"
    assert not (tmp_path / "ran").exists()
    assert os.listdir(task_dir(tmp_path) / ".tokens") == []
