"""Durations in the journal come from the runner's monotonic clock, never from the wall clock.

Stage ends (``stage_finished``, ``stage_failed``) carry how long the stage ran; run ends
(``run_completed``, ``run_failed``, ``run_cancelled``) how long the attempt ran, since its
``run_started`` or accepted ``run_resumed``. A wall clock stepped back (an NTP step) makes
record times run backwards, never a duration negative.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from helpers import wait_until
from helpers.runner_support import FAST, cli, cmd, finish, pipeline, spawn, sub, token_file, write_config

from runjournal.journal import JournalReader, Layout, Record
from runjournal.journal import events as ev
from runjournal.runner import Runner, load

SECOND = 1_000_000_000
ENDS = (ev.StageFinished, ev.StageFailed, ev.RunCompleted, ev.RunFailed, ev.RunCancelled)


def records(root: Path) -> list[Record]:
    return list(JournalReader(str(root / ".runs" / "default" / "journal")).records())


def ends(root: Path, run_id: str) -> list[ev.Event]:
    return [r.event for r in records(root) if r.run_id == run_id and isinstance(r.event, ENDS)]


def test_durations_come_from_the_monotonic_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The wall clock steps back 60 s while stage one runs (the runner is this process, whose
    time.time_ns is stepped): records go back in time, the durations do not."""
    write_config(tmp_path, pipeline("p", cmd("one", "touch stepped; sleep 0.3"), cmd("two", "true")))
    real = time.time_ns
    stepped = tmp_path / "stepped"
    monkeypatch.setattr(time, "time_ns", lambda: real() - (60 * SECOND if stepped.exists() else 0))
    runner = Runner(Layout(str(tmp_path / ".runs"), str(tmp_path / "out")), str(tmp_path), "default", load(None, str(tmp_path)))
    try:
        result = runner.start(load(None, str(tmp_path)).pipeline("p"))
    finally:
        runner.close()
    assert result.status == "succeeded"
    recs = [r for r in records(tmp_path) if r.run_id == result.run_id]
    started = next(r for r in recs if isinstance(r.event, ev.StageStarted) and r.event.index == 1)
    finished = next(r for r in recs if isinstance(r.event, ev.StageFinished) and r.event.index == 1)
    assert finished.ts - started.ts < -50 * SECOND  # the step happened mid-stage: wall time ran backwards
    one, two, run = (r.event for r in recs if isinstance(r.event, (ev.StageFinished, ev.RunCompleted)))
    assert 0.3 * SECOND <= one.duration_ns < 30 * SECOND
    assert 0 <= two.duration_ns < 30 * SECOND
    assert one.duration_ns + two.duration_ns <= run.duration_ns < 30 * SECOND


def test_every_stage_and_run_end_records_its_duration(tmp_path: Path):
    """Finished, failed and sub-pipeline stages, a failed run, and the resumed attempt that
    completes it: each end event has a duration, measured from that attempt's start."""
    write_config(
        tmp_path,
        pipeline("p", cmd("nap", "sleep 0.2"), sub("child", "c"), cmd("flaky", "test -e fixed || { sleep 0.1; exit 3; }")),
        pipeline("c", cmd("inner", "true")),
    )
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    run_id = json.loads(p.stdout)["run_id"]
    nap, child, flaky, failed = ends(tmp_path, run_id)
    assert isinstance(flaky, ev.StageFailed) and isinstance(failed, ev.RunFailed)
    assert nap.duration_ns >= 0.2 * SECOND and flaky.duration_ns >= 0.1 * SECOND and child.duration_ns >= 0
    assert nap.duration_ns + child.duration_ns + flaky.duration_ns <= failed.duration_ns < 30 * SECOND

    (tmp_path / "fixed").touch()
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert p.returncode == 0, p.stderr
    recs = [r for r in records(tmp_path) if r.run_id == run_id]
    resumed = next(r for r in recs if isinstance(r.event, ev.RunResumed))
    *_, again, completed = (r for r in recs if isinstance(r.event, ENDS))
    assert isinstance(completed.event, ev.RunCompleted)
    assert again.event.duration_ns <= completed.event.duration_ns
    # this attempt's time: from the accepted resume, not from the run's start (no clock step here)
    assert abs(completed.event.duration_ns - (completed.ts - resumed.ts)) < 0.5 * SECOND
    assert completed.event.duration_ns < completed.ts - recs[0].ts


def test_a_cancelled_run_records_its_duration(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("wait", "touch started; sleep 300")), limits=FAST)
    proc = spawn(tmp_path, "start", "--format", "json")
    wait_until(lambda: (tmp_path / "started").exists(), "the stage to start")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 130
    run_id = json.loads((tmp_path / "runner.out").read_text())["run_id"]
    stage, run = ends(tmp_path, run_id)
    assert isinstance(stage, ev.StageFailed) and isinstance(run, ev.RunCancelled)
    assert 0 <= stage.duration_ns <= run.duration_ns < 30 * SECOND
