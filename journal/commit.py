"""Group commit: the writers of one journal share fdatasyncs, and none syncs under the append lock.

An append that must be durable before it returns (``always``, or a boundary event in ``batch``)
writes under the append lock, lets go of it, and only then makes its record durable:

1. If the head's synced mark (``Head.synced``) already covers its sequence, another writer's
   fdatasync, begun after the record was written, has put it on disk: it returns at once.
2. Otherwise it takes the *sync lock* (``<journal>/sync``, a flock of its own) if it is free,
   reads how far the segment is written now (``Head.written_through``), calls ``fdatasync``,
   and moves the mark there. Every writer that appended while that sync ran finds itself
   covered by the next one: one fdatasync per group of writers instead of one per append.
3. If the sync lock is busy, another writer is syncing: it sleeps about as long as a sync
   takes here (a moving average, 0.2 ms at first) and looks at the mark again, up to
   ``LOOKS`` times, before it queues for the lock in the kernel. (Queueing at once measured
   worse: flock wakes every waiter when the holder lets go, and each then takes the lock in
   turn only to find itself covered; see docs/benchmarks.md.)

The sync lock only saves work: a writer that cannot have it within ``WAIT`` seconds (a holder
stopped with SIGSTOP, a slow disk) syncs on its own, and for ``ALONE_FOR`` seconds after that
takes the sync lock only if it is free at once, so a stopped holder costs the others nothing
but their sharing. The mark is zeroed whenever sequences past the journal's end may be written
again (a cut tail, a rebuild of the head, a reboot), so it never vouches for a record it did not
see synced.
"""

from __future__ import annotations

import os
import time

from .errors import JournalError, JournalWriteFailed
from .head import Head
from .lock import JournalLock

SYNC_LOCK = "sync"
WAIT = 0.5
ALONE_FOR = 5.0
LOOKS = 4
NAPS = 1
FIRST_NAP = 0.0002
MAX_NAP = 0.005


class GroupCommit:
    """The durable end of one open journal's appends (one per ``Journal``, used under its mutex)."""

    def __init__(self, directory: str, dir_fd: int):
        self._directory = directory
        self._dir_fd = dir_fd
        self._lock: JournalLock | None = None  # opened at the first sync: most writers never need it
        self._alone_until = 0.0
        self._sync_time = FIRST_NAP  # how long an fdatasync takes here (a moving average)
        self.syncs = 0  # fdatasyncs this writer issued
        self.covered = 0  # durable appends another writer's fdatasync covered

    def durable(self, head: Head, fd: int, seq: int, base: int) -> None:
        """Return once record ``seq``, written to ``fd`` (segment ``base``), is on disk.
        JournalWriteFailed if the fdatasync fails: the record may not be durable."""
        for _ in range(LOOKS):
            if head.synced() >= seq:
                self.covered += 1
                return
            if self._lock_free():
                locked = True
                break
            # another writer is syncing: wait about as long as a sync takes, then look again
            time.sleep(self._sync_time / NAPS)
        else:
            locked = self._take()
        try:
            if locked and head.synced() >= seq:
                self.covered += 1
                return
            through = head.written_through(base, seq)
            started = time.monotonic()
            try:
                os.fdatasync(fd)
            except OSError as e:
                raise JournalWriteFailed(
                    f"cannot make journal {self._directory} durable (fdatasync: {e.strerror or e}); "
                    f"the records up to sequence {seq} were written but may not survive a power loss"
                ) from None
            self.syncs += 1
            head.mark_synced(through)
            took = time.monotonic() - started
            self._sync_time += (min(took, MAX_NAP) - self._sync_time) / 8
        finally:
            if locked:
                self._lock.release()

    def _sync_lock(self) -> JournalLock:
        """The sync lock, opened at the first sync: most writers never need it."""
        if self._lock is None:
            self._lock = JournalLock(os.path.join(self._directory, SYNC_LOCK), WAIT, dir_fd=self._dir_fd)
        return self._lock

    def _lock_free(self) -> bool:
        try:
            return self._sync_lock().try_acquire()
        except (JournalError, OSError):
            return False

    def _take(self) -> bool:
        """Hold the sync lock (True), or go without it (False) when it stays busy or cannot be had."""
        try:
            lock = self._sync_lock()
            if time.monotonic() < self._alone_until:
                return lock.try_acquire()
            lock.acquire()
            return True
        except (JournalError, OSError):  # LockTimeout, a lock file that cannot be opened: sync alone
            self._alone_until = time.monotonic() + ALONE_FOR
            return False

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
