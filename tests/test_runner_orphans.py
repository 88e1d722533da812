"""A resume after a killed runner stops what the dead runner's stage left running first.

Every run here is a real runner process (``python -m runjournal``) killed with SIGKILL, with
real stage processes it leaves orphaned. The interrupted stage writes its pid to ``starts``
each time it starts and, before anything else, notes in ``overlap`` any earlier start (or
its child) that still runs: the stage must never run twice at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HELPERS, clean_env, wait_until
from helpers.runner_support import (
    FAST,
    alive,
    argv,
    cli,
    cmd,
    finish,
    group_members,
    kill_group,
    manifest,
    output,
    pipeline,
    read_pids,
    spawn,
    token_file,
    write_config,
)

from runjournal.journal import Journal, JournalReader, Layout
from runjournal.journal import events as ev
from runjournal.runner import ResumeRefused, Runner, StageGroup, fingerprint, load, procs, unfinished_groups


def interrupted_stage(ignore_term: bool = False) -> str:
    """Stage ``two``: the first time, a shell that waits on a long ``sleep`` child (both in the
    stage's process group) once it has written ``ready``; later, it passes at once."""
    check = (
        'echo $$ >> starts; for p in $(cat starts) $(cat child.pid 2>/dev/null); do [ "$p" = $$ ] && continue; '
        's=$(cut -d" " -f3 /proc/$p/stat 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ] || echo "$p runs as $$ starts" >> overlap; done; '
    )
    trap = "trap '' TERM; " if ignore_term else ""
    return check + f"[ -e ready ] && exit 0; {trap}sleep 300 & echo $! > child.pid; echo $$ > ready.tmp; mv ready.tmp ready; wait"


def write_pipeline(root: Path, ignore_term: bool = False) -> None:
    stages = (cmd("one", "echo x >> count-1"), cmd("two", interrupted_stage(ignore_term)), cmd("three", "echo x >> count-3"))
    write_config(root, pipeline("p", *stages), limits=FAST)  # cancelGraceSeconds 1


def ready(root: Path) -> tuple[int, int]:
    """Wait for stage two's first start: (its shell = the group, its sleep child)."""
    path = wait_until(lambda: (root / "ready").exists() and root / "ready", "stage two to start")
    return int(path.read_text()), int((root / "child.pid").read_text())


def start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def stage_starts(root: Path) -> list[ev.StageStarted]:
    return [r.event for r in JournalReader(str(root / ".runs" / "default" / "journal")).records() if isinstance(r.event, ev.StageStarted)]


@pytest.mark.parametrize("ignore_term", [False, True], ids=["obeys TERM", "ignores TERM"])
def test_resume_after_sigkill_stops_the_dead_stage_before_running_it_again(tmp_path: Path, ignore_term: bool):
    write_pipeline(tmp_path, ignore_term)
    proc = spawn(tmp_path, "start")
    shell, child = ready(tmp_path)
    try:
        leader_start = start_time(shell)
        proc.send_signal(signal.SIGKILL)
        assert finish(proc) == -signal.SIGKILL
        assert alive(shell) and alive(child)  # orphaned and running: what the resume must stop
        run_id = output(tmp_path)[0].split()[1]
        began = time.monotonic()
        p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}", "--format", "json")
        took = time.monotonic() - began
    finally:
        kill_group(shell)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "succeeded"
    starts = read_pids(tmp_path / "starts")
    assert len(starts) == 2 and starts[0] == shell
    assert not (tmp_path / "overlap").exists(), (tmp_path / "overlap").read_text()
    assert not alive(shell) and not alive(child) and not group_members(shell)
    assert f"stopped what stage two (attempt 1) left running: process group {shell}, 2 process(es) (TERM, then KILL)" in p.stderr
    if ignore_term:
        assert took >= 1.0  # TERM was ignored: KILL came after cancelGraceSeconds
    # the group was journaled when the stage started: its id and its leader's start time
    two = [e for e in stage_starts(tmp_path) if e.stage_id == "two"]
    assert [(e.pgid, e.pgid_start) for e in two][0] == (shell, leader_start)
    assert two[1].pgid == starts[1]
    doc = manifest(tmp_path, run_id)
    [event] = doc["resume_events"]
    assert (event["outcome"], event["detail"]) == ("accepted", f"stopped stage two (attempt 1): process group {shell}, 2 process(es)")
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "succeeded", "succeeded"]


def test_a_zombie_runner_counts_as_dead(tmp_path: Path):
    """The runner's parent never reaps it (a container whose PID 1 reaps nothing): the runner
    stays a zombie, and the resume goes on; its orphaned stage is stopped first."""
    write_pipeline(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, str(HELPERS / "zombie_parent.py"), str(tmp_path), "ready", "killed", "release", *argv(tmp_path, "start")],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    shell = 0
    try:
        shell, _ = ready(tmp_path)
        runner = int(wait_until(lambda: (tmp_path / "killed").exists() and (tmp_path / "killed").read_text(), "the runner to be killed"))
        wait_until(lambda: procs.proc(runner) and procs.proc(runner).state == "Z", "the killed runner to be a zombie")
        run_id = (tmp_path / "runner.out").read_text().split()[1]
        p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
        assert procs.proc(runner).state == "Z"  # still unreaped while the resume ran
    finally:
        (tmp_path / "release").touch()
        finish(parent)
        if shell:
            kill_group(shell)
    assert p.returncode == 0, p.stderr
    assert "still alive" not in p.stderr
    assert len(read_pids(tmp_path / "starts")) == 2
    assert not (tmp_path / "overlap").exists(), (tmp_path / "overlap").read_text()
    assert manifest(tmp_path, run_id)["status"] == "succeeded"


def test_a_stage_group_that_cannot_be_stopped_refuses_the_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """EPERM (the group is another user's) is faked here: the tests run as one account, often root."""
    write_pipeline(tmp_path)
    proc = spawn(tmp_path, "start")
    shell, child = ready(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        finish(proc)
        run_id = output(tmp_path)[0].split()[1]
        real_killpg = os.killpg

        def not_permitted(pgid: int, sig: int) -> None:
            if pgid == shell and sig:
                raise PermissionError(1, "Operation not permitted")
            real_killpg(pgid, sig)

        monkeypatch.setattr(procs.os, "killpg", not_permitted)
        runner = Runner(Layout(str(tmp_path / ".runs"), str(tmp_path / "out")), str(tmp_path), "default", load(None, str(tmp_path)))
        try:
            with pytest.raises(ResumeRefused, match=rf"resume of run {run_id} refused: stage two \(attempt 1\) left processes running that cannot be stopped: its process group {shell} \(pids? .*\) belongs to another user"):
                runner.resume(run_id, token_file(tmp_path, run_id).read_text().strip(), "me", "try")
        finally:
            runner.close()
        assert alive(shell) and alive(child)  # left as it was
        assert read_pids(tmp_path / "starts") == [shell]  # nothing ran again
        [event] = manifest(tmp_path, run_id)["resume_events"]
        assert event["outcome"] == "blocked"
        assert event["detail"].startswith(f"stage two (attempt 1) left processes running that cannot be stopped: its process group {shell}")
    finally:
        monkeypatch.undo()  # the real killpg again, for the clean-up
        kill_group(shell)


def test_a_stage_on_another_host_is_left_to_the_heartbeat_rule(tmp_path: Path):
    """A stage group recorded on another host cannot be looked at: once the heartbeat is stale,
    the resume goes on, says so, and touches no process here that has the same group id."""
    write_config(tmp_path, pipeline("p", cmd("one", "true")), limits=FAST)
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a group here with the recorded id
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    run_id = "2025-12-01T09-37-11-576Z-1a60ebea"
    token = "t0ken"
    try:
        with Journal(str(journal_dir)) as j:
            j.append(run_id, ev.RunStarted(
                task_id="default", pipeline_id="p", resume_token_fingerprint=fingerprint(token),
                stages=(ev.StagePlan(id="one", title="one", command="true"),),
                heartbeat_interval_seconds=1, heartbeat_stale_after_seconds=2,
                runner_pid=os.getpid(), runner_host="far-away", runner_start=1,
            ))
            rec = j.append(run_id, ev.StageStarted(index=1, stage_id="one", pgid=decoy.pid, pgid_start=start_time(decoy.pid)))
        wait_until(lambda: time.time_ns() - rec.ts > 2_000_000_000, "the remote runner's heartbeat to pass its stale limit")
        lines: list[str] = []
        runner = Runner(Layout(str(tmp_path / ".runs"), str(tmp_path / "out")), str(tmp_path), "default", load(None, str(tmp_path)), say=lines.append)
        try:
            result = runner.resume(run_id, token, "me", "the remote runner went quiet")
        finally:
            runner.close()
        assert result.status == "succeeded"
        assert alive(decoy.pid)
        here = socket.gethostname()
        assert f"warning: stage one (attempt 1) ran on host far-away as process group {decoy.pid}; whether it still runs there cannot be checked from {here}" in lines
        [event] = manifest(tmp_path, run_id)["resume_events"]
        assert event["detail"] == f"not checked: stage one (attempt 1), process group {decoy.pid} on host far-away"
    finally:
        decoy.kill()
        decoy.wait()


def _rec(seq: int, run_id: str, event: ev.Event) -> ev.Record:
    return ev.Record(seq, run_id, seq, seq, event)


def test_unfinished_groups_follow_attempts_and_child_runs():
    a, c1, other = "run-a", "run-c1", "run-x"
    records = [
        _rec(1, a, ev.RunStarted(task_id="t", pipeline_id="p", runner_pid=10, runner_host="h", runner_start=5)),
        _rec(2, a, ev.StageStarted(index=1, stage_id="s1", pgid=100, pgid_start=50)),
        _rec(3, a, ev.StageFinished(index=1, stage_id="s1")),
        _rec(4, a, ev.StageStarted(index=2, stage_id="s2", pgid=200, pgid_start=60)),
        _rec(5, other, ev.RunStarted(task_id="t", pipeline_id="q", runner_pid=11, runner_host="h")),
        _rec(6, other, ev.StageStarted(index=1, stage_id="x", pgid=300, pgid_start=70)),
        _rec(7, a, ev.RunResumed(actor="me", reason="r", outcome="accepted", attempt=2, runner_pid=20, runner_host="k", runner_start=8)),
        _rec(8, a, ev.StageStarted(index=2, stage_id="s2", pgid=400, pgid_start=80)),
        _rec(9, a, ev.StageStarted(index=3, stage_id="sub", pgid=0)),  # a sub-pipeline stage: no group of its own
        _rec(10, c1, ev.RunStarted(task_id="t", pipeline_id="c", parent_run_id=a, runner_pid=20, runner_host="k", runner_start=8)),
        _rec(11, a, ev.ChildRunLinked(index=3, stage_id="sub", child_run_id=c1, pipeline_id="c")),
        _rec(12, c1, ev.StageStarted(index=1, stage_id="inner", pgid=500, pgid_start=90)),
    ]
    assert unfinished_groups(records, a) == [
        StageGroup(a, 2, "s2", 2, 400, 80, "k", (20, "k", 8)),
        StageGroup(c1, 1, "inner", 1, 500, 90, "k", (20, "k", 8)),
    ]
    assert unfinished_groups(records + [_rec(13, c1, ev.StageFailed(index=1, stage_id="inner"))], a) == [
        StageGroup(a, 2, "s2", 2, 400, 80, "k", (20, "k", 8)),
    ]
    assert unfinished_groups(records, other) == [StageGroup(other, 1, "x", 1, 300, 70, "h", (11, "h", 0))]
