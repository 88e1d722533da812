"""The per-task journal lock: flock on a file kept open, with a bounded wait.

The kernel drops a flock when its holder dies, so a dead process never leaves the lock
stale. The uncontended path is one non-blocking flock call (about a microsecond). When
the lock is busy, a writer first retries twice with exponential backoff and jitter (20 us,
then 40 us, +-50 %) for the common case of a holder that is nearly done; then it waits in
the kernel, so it is woken the moment the holder lets go instead of polling at fixed
intervals: in the main thread itself, a blocking flock with SIGALRM keeping the deadline
(when the program does not use SIGALRM), otherwise in a helper thread (a blocking
portalocker lock) that hands the lock over; and it gives up at the deadline (10 s by
default) with LockTimeout naming the holder. Longer sleeps measured worse: with 50
writers, sleeping up to 1.6 ms before the kernel wait gave 12k events/s, this gives 32k.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time


from .fsutil import open_private
from .errors import JournalWriteFailed, LockTimeout

DEFAULT_TIMEOUT = 10.0


class JournalLock:
    """Exclusive lock on ``<journal>/lock``; not reentrant, one per open journal."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT, dir_fd: int | None = None):
        self.path = path
        self.timeout = timeout
        #: how the lock file is named: its path, or its name in the journal's directory descriptor
        self._name = os.path.basename(path) if dir_fd is not None else path
        self._dir_fd = dir_fd
        self._open()
        self.retries = 0  # backoff retries and kernel waits, for WriterStats
        self.timeouts = 0
        self.rebinds = 0  # times the lock file was found deleted or replaced, and taken anew
        self._cv = threading.Condition()
        self._want = False  # the helper thread should (or does) wait in the kernel
        self._granted = False  # the helper got the lock for a caller that is still waiting
        self._callers = 0
        self._closed = False
        self._helper: threading.Thread | None = None

    def _open(self) -> None:
        file = os.fdopen(open_private(self._name, self._dir_fd), "r+b")  # held open for the journal's life
        st = os.fstat(file.fileno())
        self._file, self._fd, self._inode = file, file.fileno(), (st.st_dev, st.st_ino)
        self._seen: tuple[int, int] | None = None  # (links, ctime) when last found named ``lock``

    def acquire(self, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if not self._try():
                self._wait(max(0.0, deadline - time.monotonic()), timeout)
            if self._bound():
                return

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now (one non-blocking flock), on the file that is
        named ``lock`` now. (The common case of ``_bound`` is inline: the writer's fast path
        takes it on every append.)"""
        if not self._try():
            return False
        now = os.fstat(self._fd)
        if (now.st_nlink, now.st_ctime_ns) == self._seen:
            return True
        return self._bound()

    def _try(self) -> bool:
        # Not while the helper thread is active (``_want``): it may hold the flock this moment,
        # for a caller that timed out, and a flock on the same open file would "succeed" at
        # once, to be released by the helper under the new caller's feet. The helper clears
        # ``_want`` only after it has handed the lock over or let go of it.
        if self._want:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _bound(self) -> bool:
        """Holding the flock: whether it is on the file named ``lock`` now. A lock file deleted,
        renamed or replaced under a holder would let the next writer lock a new file beside it,
        and two writers would both hold "the" lock; so the holder lets go of the old file, opens
        the one named now (creating it) and returns False, to lock again. Never returns with the
        flock held on a file it could not check: that is JournalWriteFailed.

        The check by name costs a path walk (1.7 us here, as much as the rest of an append);
        so it is made once, and after that an ``fstat`` of the held file tells whether anything
        happened to its names: a delete drops its link count, and a rename, link or unlink
        changes its ctime. Only then is the name looked at again."""
        try:
            now = os.fstat(self._fd)
            if (now.st_nlink, now.st_ctime_ns) == self._seen:
                return True
            st = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)  # after the fstat: a change between them shows next time
            if (st.st_dev, st.st_ino) == self._inode:
                self._seen = (now.st_nlink, now.st_ctime_ns)
                return True
        except FileNotFoundError:
            pass
        except OSError as e:  # ESTALE, EIO, EACCES: not known to be ours, so not held
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            raise JournalWriteFailed(f"cannot check the journal lock {self.path}: {e.strerror or e}; nothing was written") from None
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._rebind()
        return False

    def _rebind(self) -> None:
        """Move from a lock file that is no longer the one named ``lock`` to the named one:
        opened first, so that a failure leaves this lock on its old (unlocked) file, never on a
        closed descriptor whose number the process may reuse."""
        old = self._file
        try:
            self._open()
        except OSError as e:
            raise JournalWriteFailed(f"cannot open the journal lock {self.path}: {e.strerror or e}; nothing was written") from None
        self.rebinds += 1
        old.close()

    def _wait(self, left: float, timeout: float) -> None:
        """Wait up to ``left`` seconds for the flock (LockTimeout saying ``timeout`` after that)."""
        deadline = time.monotonic() + left
        self.retries += 1
        if not self._want and self._wait_here(deadline, timeout):
            return
        with self._cv:
            self._callers += 1
            try:
                if not self._granted and not self._want:
                    self._want = True
                    self._start_helper()
                    self._cv.notify_all()
                self._cv.wait_for(lambda: self._granted, timeout=max(0.0, deadline - time.monotonic()))
                if self._granted:
                    self._granted = False
                    return
            finally:
                self._callers -= 1
        self._timed_out(timeout)

    def _timed_out(self, timeout: float) -> None:
        self.timeouts += 1
        pid = _holder(*self._inode)
        raise LockTimeout(self.describe_holder(timeout, pid), holder_pid=pid)

    def _wait_here(self, deadline: float, timeout: float) -> bool:
        """Wait in the kernel in this thread, the timeout kept by SIGALRM (LockTimeout at the
        deadline); False if that cannot be done here (not the main thread, or SIGALRM is the
        program's): then the helper waits.

        A thread woken by the kernel holds the lock at once; a helper thread would then have
        to wake the caller, with the lock held and idle meanwhile. With 50 writers that costs
        more than half the throughput (benchmarks/lock_handoff.py)."""
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._timed_out(timeout)
        previous = signal.signal(signal.SIGALRM, _expired)
        try:
            signal.setitimer(signal.ITIMER_REAL, remaining)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            return True
        except _Expired:
            # the alarm may have come just after the flock returned: holding the lock, a
            # non-blocking flock on the same file succeeds; a true timeout finds it busy
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
        finally:
            signal.signal(signal.SIGALRM, previous)
        self._timed_out(timeout)

    def _start_helper(self) -> None:
        if self._helper is None or not self._helper.is_alive():
            self._helper = threading.Thread(target=self._wait_in_kernel, name="runjournal-lock", daemon=True)
            self._helper.start()

    def _wait_in_kernel(self) -> None:
        import portalocker  # only a writer that has to wait imports it (20 ms at start-up otherwise)

        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._want or self._closed)
                if self._closed:
                    return
            try:
                portalocker.lock(self._file, portalocker.LOCK_EX)
            except (portalocker.LockException, OSError, ValueError):
                with self._cv:
                    self._want = False
                    self._cv.notify_all()
                return
            with self._cv:
                if self._callers and not self._closed:
                    self._granted = True
                    self._want = False
                    self._cv.notify_all()
                    continue
                # everyone who wanted it gave up meanwhile: let the others have it, and only
                # then say the helper is idle (see acquire)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._want = False
                if self._closed:
                    self._file.close()  # close() left the file to us while we were blocked
                    return

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            if self._want:
                return  # the helper is blocked in the kernel on this file: it closes it when woken
        self._file.close()

    def describe_holder(self, waited: float | None = None, pid: int | None = None) -> str:
        waited = self.timeout if waited is None else waited
        pid = _holder(*self._inode) if pid is None else pid
        who = f"pid {pid} on {socket.gethostname()}" if pid else "another process"
        state = _process_state(pid) if pid else ""
        return (
            f"journal lock {self.path} is held by {who}{state} for at least {waited:.1f} s; "
            "if that process is hung, stop it (the lock is freed when it exits)"
        )


class _Expired(Exception):
    """Raised by the SIGALRM handler while a lock wait in the main thread runs out of time."""


def _expired(signum, frame) -> None:
    raise _Expired


def holder_pid(path: str) -> int | None:
    """The pid holding a flock on ``path``, read from /proc/locks where the OS offers it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _holder(st.st_dev, st.st_ino)


def _holder(dev: int, ino: int) -> int | None:
    """The pid holding a write flock on the file (device, inode), from /proc/locks."""
    try:
        with open("/proc/locks") as f:
            lines = f.readlines()
    except OSError:
        return None
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key and parts[3] == "WRITE":
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
