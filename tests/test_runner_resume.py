"""Runner.resume at the library level: the liveness check and the expected-sequence check.

The real race of two resume processes is in test_cli_resume.py; there the loser nearly
always meets the winner's live runner. Here the other interleaving is forced: the other
resume's append lands after this resume has checked the run and before it appends, so only
the journal's expected-sequence check stands between them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import wait_until
from helpers.runner_support import crashed_run, token_file

from runjournal.journal import Journal, JournalReader, Layout
from runjournal.journal import events as ev
from runjournal.runner import ResumeRefused, Runner, load, runner_alive
from runjournal.runner.run import _proc_start


def test_runner_alive_tells_live_dead_reused_and_remote_runners_apart():
    me, host = os.getpid(), socket.gethostname()
    assert runner_alive(me, host, _proc_start(me)) is True
    assert runner_alive(me, host, _proc_start(me) + 1) is False  # same pid, another process: reused
    child = subprocess.Popen(["true"])
    child.wait()
    assert runner_alive(child.pid, host, 0) is False
    assert runner_alive(me, "another-host", 0) is None  # cannot tell: the heartbeat decides
    assert runner_alive(0, host, 0) is None


def test_a_resume_that_loses_the_sequence_race_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run_id = crashed_run(tmp_path)
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    runner = Runner(Layout(str(tmp_path / ".runs"), str(tmp_path / "out")), str(tmp_path), "default", load(None, str(tmp_path)))
    real_catch_up = runner.projector.catch_up

    def other_resume_wins(*args, **kwargs):
        result = real_catch_up(*args, **kwargs)  # this resume's view: crashed, resumable
        with Journal(str(journal_dir)) as other:
            other.append(run_id, ev.RunResumed(actor="other", reason="won the race", outcome="accepted", attempt=2))
        monkeypatch.setattr(runner.projector, "catch_up", real_catch_up)
        return result

    monkeypatch.setattr(runner.projector, "catch_up", other_resume_wins)
    token = token_file(tmp_path, run_id).read_text().strip()
    try:
        with pytest.raises(ResumeRefused, match=rf"run {run_id} changed while resuming \(another resume won"):
            runner.resume(run_id, token, "me", "lost the race")
    finally:
        runner.close()
    resumes = [r.event for r in JournalReader(str(journal_dir)).records() if isinstance(r.event, ev.RunResumed)]
    assert [(e.actor, e.outcome) for e in resumes] == [("other", "accepted")]


def test_a_runner_on_another_host_is_judged_by_its_heartbeat(tmp_path: Path):
    """Same pid, other host: the pid says nothing; a fresh heartbeat refuses, a stale one accepts."""
    run_id = crashed_run(tmp_path, limits={"heartbeatIntervalSeconds": 1, "heartbeatStaleAfterSeconds": 2})
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    layout = Layout(str(tmp_path / ".runs"), str(tmp_path / "out"))
    config = load(None, str(tmp_path))
    token = token_file(tmp_path, run_id).read_text().strip()
    with Journal(str(journal_dir)) as j:  # as if a runner elsewhere had just resumed it and then gone quiet
        rec = j.append(run_id, ev.RunResumed(actor="remote", reason="elsewhere", outcome="accepted", attempt=2, runner_pid=os.getpid(), runner_host="far-away"))
    runner = Runner(layout, str(tmp_path), "default", config)
    try:
        with pytest.raises(ResumeRefused, match="still alive .*attempt 2, started by another resume"):
            runner.resume(run_id, token, "me", "too early")
        wait_until(lambda: time.time_ns() - rec.ts > 2_000_000_000, "the remote runner's heartbeat to pass its stale limit")
        result = runner.resume(run_id, token, "me", "the remote runner went quiet")
    finally:
        runner.close()
    assert (result.status, result.exit_code) == ("succeeded", 0)
    outcomes = [(r.event.actor, r.event.outcome) for r in JournalReader(str(journal_dir)).records() if isinstance(r.event, ev.RunResumed)]
    assert outcomes == [("remote", "accepted"), ("me", "blocked"), ("me", "accepted")]
