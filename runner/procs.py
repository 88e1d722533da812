"""Processes on this host, read from /proc: start times, zombies, process groups, stopping a group.

A pid alone does not name a process for long: the kernel reuses it. Everything here pairs a
pid with its start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``), and takes
a zombie for what it is: a process that has finished running and only waits to be reaped
(in a container whose PID 1 reaps nothing, it waits forever).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

POLL = 0.02  # seconds between looks at a process group that is being stopped
KILL_WAIT = 10.0  # how long a group may take to vanish after SIGKILL (a process in uninterruptible sleep)


@dataclass(frozen=True)
class Proc:
    """What ``/proc/<pid>/stat`` says of one process."""

    pid: int
    state: str  # R, S, D, Z (zombie), T, ...
    pgid: int
    start: int  # clock ticks since boot

    @property
    def running(self) -> bool:
        """Not a zombie (or dead): it still runs, or can run again."""
        return self.state not in ("Z", "X", "x")


def proc(pid: int) -> Proc | None:
    """The process ``pid`` as /proc shows it; None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    try:
        # the command name (field 2) may hold spaces and parentheses: split after its last ")"
        fields = text.rsplit(")", 1)[1].split()
        return Proc(pid, fields[0], int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int:
    """Start time of a process in clock ticks since boot (0 if unknown): tells pid reuse apart."""
    p = proc(pid)
    return p.start if p else 0


def running(pid: int, start: int = 0) -> bool:
    """Whether process ``pid`` (started at ``start``, if given) exists and is not a zombie."""
    p = proc(pid)
    return p is not None and p.running and (not start or p.start == start)


def group_members(pgid: int, since: int = 0) -> list[Proc]:
    """The running (not zombie) processes of process group ``pgid`` started at ``since`` or later."""
    try:
        os.killpg(pgid, 0)  # the usual answer, "no such group", without reading all of /proc
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # it exists, but not ours: look
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc (not Linux): nothing can be told
        return []
    for name in names:
        if name.isdigit():
            p = proc(int(name))
            if p is not None and p.pgid == pgid and p.running and p.start >= since:
                members.append(p)
    return members


def stage_group(pgid: int, start: int) -> list[Proc]:
    """What is left running of the process group a stage's shell (pid ``pgid``, started at
    ``start``) led. Linux never hands out a pid still in use as a group id, so while the group
    lives its leader's pid is not reused: a process ``pgid`` with another start time means
    the stage's group is gone (this is someone else's). With the leader gone (or a zombie),
    the processes still in group ``pgid`` are the stage's."""
    leader = proc(pgid)
    if leader is not None and start and leader.start != start:
        return []
    return group_members(pgid, since=start)


class StopFailed(Exception):
    """A process group could not be stopped; the message says why."""


def stop_group(pgid: int, start: int, grace: float) -> int:
    """Stop what is left of a stage's process group: SIGTERM, ``grace`` seconds, SIGKILL, and
    wait until none of it runs. Returns how many processes there were (0: nothing to stop).
    ``StopFailed`` if they may not be signalled (another user's) or outlive SIGKILL."""
    left = stage_group(pgid, start)
    if not left:
        return 0
    found = len(left)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return found
        except PermissionError:
            raise StopFailed(
                f"its process group {pgid} ({_pids(left)}) belongs to another user: "
                "this account may not signal it (stop it as that user or root, then resume)"
            ) from None
        deadline = time.monotonic() + wait
        while True:
            left = stage_group(pgid, start)
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        if not left:
            return found
    raise StopFailed(f"its process group {pgid} ({_pids(left)}) is still running {KILL_WAIT:.0f} s after SIGKILL")


def _pids(procs: list[Proc]) -> str:
    shown = ", ".join(str(p.pid) for p in procs[:5])
    more = f" and {len(procs) - 5} more" if len(procs) > 5 else ""
    return f"{'pid' if len(procs) == 1 else 'pids'} {shown}{more}"
