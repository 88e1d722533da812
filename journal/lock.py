"""The per-task journal lock: flock on a file kept open, with a bounded, jittered wait.

The kernel drops a flock when its holder dies, so a dead process never leaves the lock
stale. The uncontended path is one non-blocking flock call; only when the lock is busy
does the wait loop (portalocker, exponential backoff from 0.2 ms to 20 ms with +-50 %
jitter) start, so a writer waits about as long as the holder needs and gives up at the
deadline (10 s by default).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import time

import portalocker

from .errors import LockTimeout

DEFAULT_TIMEOUT = 10.0
BACKOFF_START = 0.0002
BACKOFF_MAX = 0.02


class JournalLock:
    """Exclusive lock on ``<journal>/lock``; not reentrant, one per open journal."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._file = open(path, "a+b")  # noqa: SIM115 - held open for the journal's life
        self._fd = self._file.fileno()
        self.retries = 0  # backoff sleeps taken, for WriterStats
        self.timeouts = 0

    def acquire(self, timeout: float | None = None) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        self._wait(timeout)

    def _wait(self, timeout: float | None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        delay = BACKOFF_START
        while True:
            try:
                portalocker.lock(self._file, portalocker.LOCK_EX | portalocker.LOCK_NB)
                return
            except portalocker.LockException:
                pass
            now = time.monotonic()
            if now >= deadline:
                self.timeouts += 1
                raise LockTimeout(self.describe_holder(), holder_pid=holder_pid(self.path))
            self.retries += 1
            time.sleep(min(delay * random.uniform(0.5, 1.5), deadline - now))
            delay = min(delay * 2, BACKOFF_MAX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._file.close()

    def describe_holder(self) -> str:
        waited = self.timeout
        pid = holder_pid(self.path)
        who = f"pid {pid} on {socket.gethostname()}" if pid else "another process"
        state = _process_state(pid) if pid else ""
        return (
            f"journal lock {self.path} is held by {who}{state} for at least {waited:.1f} s; "
            "if that process is hung, stop it (the lock is freed when it exits)"
        )


def holder_pid(path: str) -> int | None:
    """The pid holding a flock on ``path``, read from /proc/locks where the OS offers it."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.readlines()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == dev and parts[3] == "WRITE":
            try:
                return int(parts[4])
            except ValueError:
                return None
    return None


def _process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return " (stopped)" if state in ("T", "t") else ""
