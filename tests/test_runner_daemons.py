"""A daemon a stage starts with setsid outlives the stage, even when the stage's shell exits
before the daemon has left the stage's process group; what stays in the group is stopped.

The runner lets a finished stage's group settle for SETTLE_AFTER_EXIT (1 s) before it treats
what still runs there as leftovers, so `setsid daemon > log 2>&1 < /dev/null &` as the last
thing a stage does is reliable (docs/runner.md). Each test kills the daemons it made.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from helpers.runner_support import alive, cli, cmd, manifest, pipeline, write_config

from runjournal.runner import procs

#: the pattern docs/runner.md gives, with the daemon's pid kept (`$!`) to stop it later
DAEMON = "setsid sleep 302 > daemon.log 2>&1 < /dev/null & echo $! > daemon-{n}.pid"


def session(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pids_in(root: Path, pattern: str) -> list[int]:
    return [int(p.read_text()) for p in sorted(root.glob(pattern)) if p.read_text().strip()]


def test_the_documented_daemon_pattern_survives_twenty_times_in_a_row(tmp_path: Path):
    stages = [cmd(f"d{n:02}", DAEMON.format(n=f"{n:02}")) for n in range(20)]
    write_config(tmp_path, pipeline("daemons", *stages), limits={"cancelGraceSeconds": 1})
    began = time.monotonic()
    try:
        p = cli(tmp_path, "start", "--format", "json")
        took = time.monotonic() - began
        daemons = pids_in(tmp_path, "daemon-*.pid")
        assert p.returncode == 0, p.stderr
        assert len(daemons) == 20
        dead = [pid for pid in daemons if not alive(pid)]
        assert not dead, f"{len(dead)} of 20 daemons were killed as leftovers: {dead}"
        assert all(session(pid) == pid for pid in daemons)  # each left the stage's session: setsid
        assert "left processes running" not in p.stderr
        doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
        assert [c["status"] for c in doc["commands"]] == ["succeeded"] * 20
        assert took < 20  # no settle wait: each stage ends once its group is empty
    finally:
        kill_all(pids_in(tmp_path, "daemon-*.pid"))


def test_a_daemon_slow_to_leave_the_group_is_let_go_and_a_leftover_is_not(tmp_path: Path):
    """The stage's shell exits while the daemon-to-be is still in its group for 0.3 s more
    (it calls setsid late): it is let go. A plain background child in the group is stopped."""
    stage = (
        "(sleep 0.3; exec setsid sleep 303 > /dev/null 2>&1 < /dev/null) & echo $! > slow.pid; "
        "sleep 304 > /dev/null 2>&1 & echo $! > leftover.pid"
    )
    write_config(tmp_path, pipeline("p", cmd("late", stage)), limits={"cancelGraceSeconds": 1})
    try:
        p = cli(tmp_path, "start", "--format", "json")
        assert p.returncode == 0, p.stderr
        slow, leftover = int((tmp_path / "slow.pid").read_text()), int((tmp_path / "leftover.pid").read_text())
        assert alive(slow) and session(slow) == slow
        assert not alive(leftover)
        assert "warning: stage late left processes running when it ended; they were stopped (TERM, then KILL)" in p.stderr
    finally:
        kill_all(pids_in(tmp_path, "*.pid"))


def test_a_daemon_that_keeps_the_stages_pipes_does_not_hang_the_run(tmp_path: Path):
    """The issue's example: the daemon inherits stdout. It survives; the runner stops reading
    the pipes 2 s after the stage's group is empty, and the stage's output is kept."""
    write_config(tmp_path, pipeline("p", cmd("spawn", "setsid sleep 302 & echo $! > daemon.pid; echo spawned")))
    try:
        began = time.monotonic()
        p = cli(tmp_path, "start", "--format", "json")
        took = time.monotonic() - began
        assert p.returncode == 0, p.stderr
        daemon = int((tmp_path / "daemon.pid").read_text())
        assert alive(daemon) and session(daemon) == daemon
        assert took < 10
        doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
        assert doc["commands"][0]["summary"] == "spawned"
    finally:
        kill_all(pids_in(tmp_path, "daemon.pid"))


def test_the_stage_group_is_journaled_before_the_command_runs(tmp_path: Path):
    """The stage's shell waits at a gate until the runner has its group id: a command never runs
    unrecorded. Here the recording fails, and the command (which would write a file) never runs."""
    from runjournal.runner import Cancel, run_command

    seen: list[tuple[int, int]] = []

    def refuse(pgid: int, start: int) -> None:
        seen.append((pgid, start))
        assert procs.proc(pgid) is not None and procs.proc(pgid).start == start
        raise RuntimeError("journal gone")

    try:
        run_command(1, f"touch {tmp_path / 'ran'}", str(tmp_path), dict(os.environ), 4096, 256, lambda events: None, Cancel(), 1.0, on_start=refuse)
    except RuntimeError:
        pass
    else:
        raise AssertionError("on_start's error was swallowed")
    [(pgid, start)] = seen
    assert pgid and start
    assert procs.proc(pgid) is None or not procs.proc(pgid).running  # the gate exited
    assert not (tmp_path / "ran").exists()

    recorded: list[tuple[int, int]] = []
    out = run_command(1, "echo $$ > pid", str(tmp_path), dict(os.environ), 4096, 256, lambda events: None, Cancel(), 1.0, on_start=lambda *a: recorded.append(a))
    assert out.exit_code == 0
    assert recorded[0][0] == int((tmp_path / "pid").read_text())  # the command's shell leads the recorded group
