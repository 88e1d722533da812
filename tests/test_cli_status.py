"""`runjournal status RUN_ID [--watch]`: one run's state, and its exit code; --watch follows it live."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import pytest
from helpers import DEADLINE, assert_one_error_line, clean_env
from helpers.histories import RunScript, append_from_another_process, every_point_of_life, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture

from runjournal.journal import events as ev


@pytest.mark.parametrize(
    ("n", "status", "code"),
    [(1, "succeeded", 0), (2, "failed", 1), (3, "cancelled", 130), (4, "in_progress", 1), (5, "succeeded", 0), (7, "succeeded", 0)],
    ids=["succeeded", "failed", "cancelled", "stale", "resumed", "child"],
)
def test_exit_code_follows_the_run(tmp_path, invoke, n, status, code):
    populate(tmp_path, every_point_of_life()[0])
    got, out, err = invoke("status", make_run_id(n), "--format", "json")
    assert (got, err) == (code, "")
    doc = json.loads(out)
    assert (doc["status"], doc["exit_code"]) == (status, code)
    assert doc["stale"] is (n == 4)


def test_live_runs_exit_0(tmp_path, invoke):
    now = time.time_ns()
    queued = RunScript(make_run_id(1, now), start_ts=now)
    running = RunScript(make_run_id(2, now), start_ts=now).start_stage(1, gap=0)
    populate(tmp_path, queued.items + running.items)
    code, out, _ = invoke("status", queued.run_id, "--format", "json")
    assert (code, json.loads(out)["status"]) == (0, "queued")
    code, out, _ = invoke("status", running.run_id, "--format", "json")
    doc = json.loads(out)
    assert (code, doc["status"], doc["status_detail"]) == (0, "in_progress", "running stage 1/3: stage-1")


def test_text_shows_stages(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=2).stage(1).stage(2, exit_code=4).fail("stage-2 failed")
    populate(tmp_path, run.items)
    code, out, err = invoke("status", run.run_id)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"run:       {run.run_id}",
        "task:      default",
        "pipeline:  diagnostics (Diagnostics), attempt 1",
        "status:    failed",
        "detail:    failed: stage-2 failed",
        "started:   2025-12-01T09:37:11.576Z",
        "completed: 2025-12-01T09:37:14.677Z",
        "heartbeat: 2025-12-01T09:37:14.376Z",
        "",
        "#  STAGE    STATUS     EXIT  DURATION  SUMMARY",
        "1  stage-1  succeeded  0     1.4s      stage-1 ok",
        "2  stage-2  failed     4     1.4s      failed",
    ]


def test_unknown_run_and_bad_id(tmp_path, invoke):
    populate(tmp_path, RunScript(make_run_id(1)).items)
    code, out, err = invoke("status", make_run_id(2))
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"no run {make_run_id(2)} in any task")
    code, out, err = invoke("status", "a/b")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "run id 'a/b' must not contain '/'")


def test_watch_on_a_dead_run_ends_at_once(tmp_path, invoke):
    run = RunScript(make_run_id(1)).start_stage(1)  # silent since 2025
    populate(tmp_path, run.items)
    code, out, _ = invoke("status", run.run_id, "--watch", "--format", "json")
    assert code == 1
    [doc] = [json.loads(line) for line in out.splitlines()]
    assert doc["stale"] is True and doc["status_detail"].startswith("stale: ")


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines, read by a thread (None at the end)."""
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_for_line(q: queue.Queue, wanted: str, seen: list[str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        assert line is not None, f"output ended before {wanted!r}: {seen}"
        seen.append(line.rstrip("\n"))
        if wanted in line:
            return


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_watch_follows_the_run_until_it_ends(tmp_path, fmt):
    now = time.time_ns()
    run = RunScript(make_run_id(1, now), start_ts=now, stages=2).start_stage(1, gap=0)
    journal_dir = populate(tmp_path, run.items)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runjournal", "--root", str(tmp_path), "status", run.run_id, "--watch", "--format", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )
    try:
        q, seen = lines_of(proc), []
        wait_for_line(q, "stage-2  pending" if fmt == "text" else '"status":"in_progress"', seen)
        rid = run.run_id
        append_from_another_process(
            journal_dir,
            [
                (rid, ev.StageFinished(index=1, stage_id="stage-1", exit_code=0)),
                (rid, ev.StageStarted(index=2, stage_id="stage-2")),
                (rid, ev.StageFailed(index=2, stage_id="stage-2", exit_code=3)),
                (rid, ev.RunFailed(reason="stage-2 failed")),
            ],
        )
        assert proc.wait(timeout=DEADLINE) == 1
        while (line := q.get(timeout=DEADLINE)) is not None:
            seen.append(line.rstrip("\n"))
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if fmt == "json":
        docs = [json.loads(line) for line in seen]
        assert docs[0]["status"] == "in_progress"
        assert (docs[-1]["status"], docs[-1]["exit_code"]) == ("failed", 1)
        assert [c["status"] for c in docs[-1]["commands"]] == ["succeeded", "failed"]
    else:
        table_end = next(i for i, line in enumerate(seen) if line.startswith("2  stage-2  pending"))
        changes = [line.split("  ", 1)[1] for line in seen[table_end + 1 :]]
        # appended one by one: each change shows; catch-ups may also see several at once
        assert "stage 1 stage-1: running -> succeeded (exit 0)" in changes
        assert changes[-1] == "failed: stage-2 failed"
        assert any(c.startswith("stage 2 stage-2: ") and c.endswith("failed (exit 3)") for c in changes)
