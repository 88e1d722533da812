"""runner.procs: processes told apart by start time, zombies counted dead, a group stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from helpers import wait_until

from runjournal.runner import procs, runner_alive


def test_a_zombie_is_not_running_and_a_zombie_runner_is_dead():
    child = subprocess.Popen(["true"])
    try:
        wait_until(lambda: procs.proc(child.pid) and procs.proc(child.pid).state == "Z", "the child to exit, unreaped")
        start = procs.start_time(child.pid)
        assert start
        assert not procs.running(child.pid)
        assert runner_alive(child.pid, socket.gethostname(), start) is False
    finally:
        child.wait()


def test_a_group_is_matched_by_its_leaders_start_time_and_stopped(tmp_path: Path):
    # a leader that ignores TERM, and a child in its group that does too: KILL after the grace
    leader = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300 & echo $! > child; wait"], cwd=tmp_path, start_new_session=True)
    try:
        child = int(wait_until(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip(), "the child to start"))
        start = procs.start_time(leader.pid)
        assert sorted(p.pid for p in procs.stage_group(leader.pid, start)) == sorted([leader.pid, child])
        # another start time: the pid names another process now; nothing is touched
        assert procs.stage_group(leader.pid, start + 1) == []
        assert procs.stop_group(leader.pid, start + 1, 0.1) == 0
        assert procs.running(leader.pid) and procs.running(child)
        assert procs.stop_group(leader.pid, start, 0.2) == 2
        assert not procs.running(child)
        leader.wait(timeout=10)
        assert leader.returncode == -signal.SIGKILL
        assert procs.stage_group(leader.pid, start) == []
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
