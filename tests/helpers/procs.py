"""Helper scripts run as processes of their own, talking over pipes: start them, release them
together, wait for them (tests/test_journal_procs.py, tests/test_journal_group_commit.py)."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys

from . import DEADLINE, HELPERS, clean_env


@contextlib.contextmanager
def spawned(script: str, *args):
    """A helper script in its own process, talking over pipes; killed if still running at the end."""
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS / script), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def go(procs) -> None:
    """Wait for every process to say it is ready, then send them all the start signal."""
    for p in procs:
        assert read_line(p) == "ready", p.args
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def finish(proc: subprocess.Popen) -> str:
    """Wait for a process to exit by itself; its remaining output."""
    out = proc.stdout.read()
    assert proc.wait(DEADLINE) == 0, (proc.args, out)
    return out


def read_line(proc: subprocess.Popen, timeout: float = DEADLINE) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"pid {proc.pid} printed nothing within {timeout:.0f} s"
    return proc.stdout.readline().strip()
