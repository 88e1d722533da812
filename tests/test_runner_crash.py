"""Crash: a runner killed with SIGKILL leaves its run started-but-unfinished, shown stale, resumable.

The crashed run comes from ``crashed_run``: a real runner process SIGKILLed while its second
stage runs (see CRASH_PIPELINE in helpers/runner_support.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers import wait_until
from helpers.runner_support import FAST, cli, crashed_run, manifest, metrics, project, runs_of, task_dir, token_file


def metric_keys(root: Path) -> list[tuple[str, int]]:
    return [(m["run_id"], m["attempt"]) for m in metrics(root)]


def test_sigkill_then_resume_skips_succeeded_stages(tmp_path: Path):
    run_id = crashed_run(tmp_path)  # default heartbeats: 5 s interval, 30 s stale limit
    doc = manifest(tmp_path, run_id)
    assert doc["status"] == "in_progress"
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "running", "pending"]
    assert metrics(tmp_path) == []  # the attempt never ended

    # accepted at once, heartbeat still fresh: the runner's pid on this host is dead
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}", "--reason", "runner was killed", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert (result["run_id"], result["status"], result["exit_code"]) == (run_id, "succeeded", 0)
    assert f"run {run_id} resumed (attempt 2): 2 of 3 stage(s) to run" in p.stderr

    assert (runs_of(tmp_path, "count-1"), runs_of(tmp_path, "count-2"), runs_of(tmp_path, "count-3")) == (1, 2, 1)
    doc = manifest(tmp_path, run_id)
    assert doc["status"] == "succeeded"
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "succeeded", "succeeded"]
    [event] = doc["resume_events"]
    assert (event["outcome"], event["reason"]) == ("accepted", "runner was killed")
    assert metric_keys(tmp_path) == [(run_id, 2)]
    [line] = metrics(tmp_path)
    assert (line["status"], line["commands_passed"], line["commands_failed"]) == ("succeeded", 3, 0)

    # neither a refused resume nor a rebuild adds a metrics line
    assert cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}").returncode == 1
    p = cli(tmp_path, "project", "--rebuild")
    assert p.returncode == 0, p.stderr
    assert metric_keys(tmp_path) == [(run_id, 2)]
    manifest(tmp_path, run_id)


def test_a_killed_run_is_marked_stale_then_resumed(tmp_path: Path):
    run_id = crashed_run(tmp_path, limits=FAST)  # heartbeat every 1 s, stale after 2 s
    killed = time.monotonic()

    def stale() -> dict | None:
        assert project(tmp_path).returncode == 0
        doc = manifest(tmp_path, run_id)
        return doc if doc["status_detail"].startswith("stale:") else None

    doc = wait_until(stale, "`runjournal project` to mark the killed run stale")
    assert time.monotonic() - killed > 1.0  # not before the heartbeats could have gone silent
    assert doc["status"] == "in_progress"  # stale is a detail: nothing is known to have ended
    assert doc["status_detail"].endswith("(over 2 s); the runner is presumed dead: resume the run to continue it")
    assert doc["completed_at"] is None
    summary = json.loads((task_dir(tmp_path) / "metrics" / "summary.json").read_text())
    assert summary["stale"] == 1

    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert p.returncode == 0, p.stderr
    doc = manifest(tmp_path, run_id)
    assert (doc["status"], doc["status_detail"]) == ("succeeded", "succeeded")
    assert metric_keys(tmp_path) == [(run_id, 2)]
    assert (runs_of(tmp_path, "count-1"), runs_of(tmp_path, "count-3")) == (1, 1)
