"""The projector: catches a task's projection files up with its journal, from a checkpoint.

One projector per task writes at a time (a flock on ``.projection/lock``); a second one
waits or skips. Files are replaced atomically and written before the checkpoint that
covers them, so a projector killed at any point leaves old-or-new files and the next
catch-up, replaying from the older checkpoint, converges to the same bytes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from journal import JournalReader, Position
from journal import events as ev
from journal.fsutil import atomic_write, fsync_dir, makedirs_durable
from journal.writer import Item, Journal

from . import render
from .state import PROJECTION_VERSION, TaskState, is_stale

STATE_DIR = ".projection"
BULK_FILES = 16  # above this many files in one flush, sync once for all instead of per file


class Checkpoint(msgspec.Struct):
    version: int
    segment: str
    offset: int
    next_seq: int
    state: TaskState


_ckpt_decoder = msgspec.msgpack.Decoder(Checkpoint)
_ckpt_encoder = msgspec.msgpack.Encoder()


@dataclass
class CatchUp:
    """What one catch-up did."""

    applied: int
    files: int
    next_seq: int
    stale_marked: int = 0


class Projector:
    """Projects one task. Keep it for a process's life: its state stays in memory between catch-ups."""

    def __init__(self, runs_dir: str, out_dir: str, task: str, sync: bool = True):
        self.paths = render.Paths(runs_dir, out_dir, task)
        self.task = task
        self.sync = sync
        self.journal_dir = os.path.join(self.paths.task_dir, "journal")
        self.state_dir = os.path.join(self.paths.task_dir, STATE_DIR)
        self.checkpoint_path = os.path.join(self.state_dir, "checkpoint")
        self._state: TaskState | None = None
        self._position: Position | None = None
        self._ckpt_stat: tuple | None = None
        self._last_saved = 0.0

    # -- public ---------------------------------------------------------------------

    def catch_up(
        self,
        wait: float | None = 30.0,
        mark_stale: bool = False,
        now_ns: int | None = None,
        progress: Callable[[int], None] | None = None,
        save_every: float = 0.0,
    ) -> CatchUp | None:
        """Apply new records and rewrite changed files. None if another projector held the lock (``wait`` None)."""
        if not os.path.isdir(self.journal_dir):
            return CatchUp(0, 0, 1)
        lock = self._lock(wait)
        if lock is None:
            return None
        try:
            result = self._catch_up(progress, save_every)
            if mark_stale:
                marked = self._mark_stale(time.time_ns() if now_ns is None else now_ns)
                if marked:
                    again = self._catch_up(None, 0.0)
                    result = CatchUp(result.applied + again.applied, result.files + again.files, again.next_seq, marked)
            return result
        finally:
            os.close(lock)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> CatchUp:
        """Throw every projection file and the checkpoint away and project from the first record."""
        lock = self._lock(60.0)
        if lock is None:
            raise TimeoutError("another projector held the lock for 60 s")
        try:
            for path in (os.path.join(self.paths.task_dir, "cli"), os.path.join(self.paths.task_dir, "metrics")):
                shutil.rmtree(path, ignore_errors=True)
            for path in (self.paths.metrics(), self.paths.state(), self.checkpoint_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            self._state, self._position, self._ckpt_stat = None, None, None
            return self._catch_up(progress, 0.0)
        finally:
            os.close(lock)

    def state(self) -> TaskState:
        """The state as of the last catch-up (loading the checkpoint if this projector has none)."""
        if self._state is None:
            self._load()
        return self._state

    # -- internals --------------------------------------------------------------------

    def _lock(self, wait: float | None) -> int | None:
        makedirs_durable(self.state_dir)
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + (wait or 0.0)
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if wait is None or time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _load(self) -> None:
        """Take the checkpoint from disk unless the one in memory is the newest."""
        try:
            st = os.stat(self.checkpoint_path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key = None
        if self._state is not None and key == self._ckpt_stat:
            return
        self._state, self._position = TaskState(task_id=self.task), None
        if key is not None:
            try:
                with open(self.checkpoint_path, "rb") as f:
                    ckpt = _ckpt_decoder.decode(f.read())
            except (OSError, msgspec.DecodeError):
                ckpt = None  # unreadable checkpoint: rebuild from the journal
            if ckpt is not None and ckpt.version == PROJECTION_VERSION:
                self._state = ckpt.state
                self._position = Position(ckpt.segment, ckpt.offset, ckpt.next_seq) if ckpt.segment else None
        self._ckpt_stat = key

    def _catch_up(self, progress, save_every: float) -> CatchUp:
        self._load()
        state = self._state
        reader = JournalReader(self.journal_dir)
        applied = 0
        apply = state.apply
        for rec in reader.records(self._position):
            apply(rec)
            applied += 1
            if progress is not None and applied % 10000 == 0:
                progress(applied)
        if reader.position.segment:
            self._position = reader.position
        files = self._flush(state)
        if applied and (save_every <= 0 or time.monotonic() - self._last_saved >= save_every):
            self._save()
        return CatchUp(applied, files, self._position.next_seq if self._position else 1)

    def _save(self) -> None:
        pos = self._position or Position("", 0, 1)
        data = _ckpt_encoder.encode(Checkpoint(PROJECTION_VERSION, pos.segment, pos.offset, pos.next_seq, self._state))
        atomic_write(self.checkpoint_path, data, sync=self.sync)
        st = os.stat(self.checkpoint_path)
        self._ckpt_stat = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._last_saved = time.monotonic()

    def _flush(self, state: TaskState) -> int:
        """Write every file the applied records changed; return how many."""
        if not (state.dirty or state.dirty_heartbeat or state.dirty_commands):
            return 0
        p = self.paths
        out: list[tuple[str, bytes]] = []
        for rid in sorted(state.dirty_heartbeat):
            run = state.runs.get(rid)
            if run is not None:
                out.append((p.heartbeat(rid), render.heartbeat(run)))
        for rid, index in sorted(state.dirty_commands):
            run = state.runs.get(rid)
            cmd = state.command(run, index) if run else None
            if cmd is None:
                continue
            if cmd.has_log and not cmd.log_on_disk:
                out.append((p.log(rid, cmd), render.log(cmd)))
                if cmd.status not in ("pending", "running"):
                    cmd.log, cmd.log_on_disk = [], True  # a finished stage's log is final: keep memory flat
            if cmd.error is not None:
                out.append((p.error(rid, cmd), render.error_file(run, cmd)))
        for rid in sorted(state.dirty):
            run = state.runs.get(rid)
            if run is not None:
                out.append((p.manifest(rid), render.dumps(render.manifest(state, run, p))))
        if state.dirty:
            out.append((p.metrics(), render.metrics_lines(state)))
            out.append((p.summary(), render.summary(state)))
            out.append((p.state(), render.state_snapshot(state, p)))
        write_files(out, self.sync)
        state.dirty, state.dirty_heartbeat, state.dirty_commands = set(), set(), set()
        return len(out)

    def _mark_stale(self, now_ns: int) -> int:
        state = self._state
        stale = [r for r in state.runs.values() if is_stale(r, now_ns)]
        if not stale:
            return 0
        observer = f"projector pid {os.getpid()} on {socket.gethostname()}"
        items = [Item(r.run_id, ev.RunStale(last_heartbeat_ts=r.heartbeat_ts or r.started_ts, observer=observer)) for r in stale]
        with Journal(self.journal_dir) as journal:
            journal.append_batch(items)
        return len(items)


def write_files(files: list[tuple[str, bytes]], sync: bool = True) -> None:
    """Replace each file atomically; for many files, one filesystem sync instead of one per file."""
    dirs = set()
    for path, _ in files:
        d = os.path.dirname(path)
        if d not in dirs:
            os.makedirs(d, exist_ok=True)
            dirs.add(d)
    if len(files) <= BULK_FILES or not sync:
        for path, data in files:
            atomic_write(path, data, sync=sync)
        return
    tmps = []
    for path, data in files:
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        tmps.append((tmp, path))
    os.sync()  # every temp file durable before any rename makes it visible
    for tmp, path in tmps:
        os.replace(tmp, path)
    for d in sorted(dirs):
        fsync_dir(d)
