"""The projector: catches a task's projection files up with its journal, from a checkpoint.

One projector per task writes at a time (a flock on ``.projection/lock``); a second one
waits or skips. Files are replaced atomically and written before the checkpoint that
covers them, so a projector killed at any point leaves old-or-new files and the next
catch-up, replaying from the older checkpoint, converges to the same bytes. A rebuild folds
the whole journal before it writes anything, then renders over the live files (``rebuild``).
"""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec

from runjournal.journal import BadInput, CorruptRecord, EventStore, Item, JournalError, LockTimeout, open_store
from runjournal.journal import events as ev
from runjournal.journal.events import DECODE_ERRORS, Record
from runjournal.journal.head import BOOT_ID
from runjournal.journal.fsutil import Below, atomic_write, create_temp, makedirs_durable, open_private, root_of, write_all

from . import render
from .observe import Liveness, Sightings
from .rebuild import MARKER, OLD_MARKER, Spool, mark, sweep, unmark
from .state import PROJECTION_VERSION, TaskState

STATE_DIR = ".projection"
BULK_FILES = 16  # above this many files in one flush, sync once for all instead of per file
#: in a long catch-up (a rebuild), render the runs' files every so many records: the logs of
#: finished stages then leave memory, which stays flat however long the journal
FLUSH_EVERY = 100_000
PATH_CACHE = 50_000
#: files compared and written under one set of open directories (each a descriptor)
WRITE_CHUNK = 512
#: how a live file is opened to be compared: never through a link, never waiting (a FIFO)
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Checkpoint(msgspec.Struct):
    version: int
    #: the cursor: the global sequence of the next record to apply
    next_seq: int
    state: TaskState
    #: which journal the state describes (``EventStore.identity``): a journal made anew differs
    journal: str = ""
    #: the store's opaque hint for reading on from ``next_seq`` cheaply (never trusted over it)
    hint: str = ""
    #: what is on disk that the state no longer holds: (run, stage) -> which start's finished
    #: log was written and left memory; the stages whose error file was written
    logs_written: dict[str, int] = {}
    error_files: list[str] = []
    #: the boot the checkpoint was written in, and whether the files it covers were fsynced:
    #: files written as a cache (not fsynced) may be behind the checkpoint after a power loss,
    #: so such a checkpoint of another boot is not trusted (everything is rendered again)
    boot: str = ""
    durable: bool = True


_ckpt_decoder = msgspec.msgpack.Decoder(Checkpoint)
#: this boot, as the checkpoint records it
BOOT = BOOT_ID.hex()
_ckpt_encoder = msgspec.msgpack.Encoder()


class RebuildFailed(JournalError):
    """A rebuild stopped: before the journal's end (a corrupt record), the projection files left as they were; or while writing them (a full disk), finished by the next projector."""


@dataclass
class CatchUp:
    """What one catch-up did."""

    applied: int
    files: int
    next_seq: int
    stale_marked: int = 0


class Projector:
    """Projects one task. Keep it for a process's life: its state stays in memory between catch-ups."""

    def __init__(
        self,
        runs_dir: str,
        out_dir: str,
        task: str,
        sync: bool = False,
        store: EventStore | None = None,
        roots: tuple[str, ...] = (),
    ):
        """Project ``task`` of ``store`` (by default the file store of ``runs_dir``) into files
        under ``runs_dir`` and ``out_dir``: projection files live on the machine that writes them.
        ``roots``: the directories the user named, which may be links (default: the runs and out
        dirs); nothing below them is written through a link. ``sync``: fsync every file (by
        default they are a cache: replaced atomically, not fsynced, and rendered again after a
        reboot, since the journal is the durable truth)."""
        self._roots = roots or (runs_dir, out_dir)
        self.paths = _Paths(runs_dir, out_dir, task)
        self.task = task
        self.sync = sync
        self.store = store if store is not None else open_store(runs_dir, root=root_of(runs_dir, self._roots))
        self._owns_store = store is None
        self.state_dir = os.path.join(self.paths.task_dir, STATE_DIR)
        self.checkpoint_path = os.path.join(self.state_dir, "checkpoint")
        self._state: TaskState | None = None
        # what the files on disk hold that the state does not: the writer's, not the fold's
        self._logs_written: dict[str, int] = {}
        self._error_files: set[str] = set()
        #: path -> (hash of the bytes this projector last wrote there, the file's inode, size and
        #: modification time just after): what ``_changed`` compares with
        self._written: dict[str, tuple[int, tuple[int, int, int]]] = {}
        self._next_seq = 1
        self._hint: str | None = None
        self._ckpt_stat: tuple | None = None
        self._journal: str | None = None  # identity of the journal the state describes, once known
        self._last_saved = 0.0
        self._unsaved = False  # applied records the checkpoint on disk does not cover yet (``save_every``)
        #: a rebuild's fold in progress: rendered files go to its spool, not the live files
        self._spool: Spool | None = None
        #: when this projector first saw each unfinished run's newest heartbeat (``observe``)
        self.sightings = Sightings()

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
        if not self.store.exists(self.task):
            return CatchUp(0, 0, 1)
        lock = self._lock(wait)
        if lock is None:
            return None
        try:
            redone = self._settle()
            caught = self._catch_up(progress, save_every)
            if redone is not None:
                caught = CatchUp(redone.applied + caught.applied, redone.files + caught.files, caught.next_seq)
            if mark_stale:
                marked = self._mark_stale(time.time_ns() if now_ns is None else now_ns)
                if marked:
                    again = self._catch_up(None, 0.0)
                    caught = CatchUp(caught.applied + again.applied, caught.files + again.files, again.next_seq, marked)
            return caught
        finally:
            os.close(lock)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> CatchUp:
        """Project every file and the checkpoint anew from the first record, over the live ones:
        the whole journal is folded first, then only files whose bytes differ are replaced and
        files the journal no longer gives are removed (``rebuild``). RebuildFailed if the
        journal cannot be read to its end (the live files left as they were) or the files cannot
        be written (the next projector of the task rebuilds again)."""
        lock = self._lock(60.0)
        if lock is None:
            raise LockTimeout("another projector held the projection lock for 60 s; try again when it is done")
        try:
            return self._rebuild(progress)
        finally:
            os.close(lock)

    def _rebuild(self, progress: Callable[[int], None] | None) -> CatchUp:
        """The rebuild, under the projector lock: fold, then write (see ``rebuild``)."""
        self._fresh()
        with self._below() as below:
            spool = Spool(below.dir(self.state_dir))
        with spool:
            self._spool = spool
            try:
                result = self._catch_up(progress, 0.0, load=False, save=False)
            except BaseException as e:
                self._forget()
                if isinstance(e, (JournalError, OSError)) and not isinstance(e, BadInput):
                    raise RebuildFailed(self._failure(e)) from e
                raise
            finally:
                self._spool = None
            try:
                with _gc_paused():
                    files = self._write_spooled(spool)
            except BaseException as e:
                self._forget()
                if isinstance(e, OSError):
                    raise RebuildFailed(self._failure(e, writing=True)) from e
                raise
        return CatchUp(result.applied, files, result.next_seq)

    def _write_spooled(self, spool: Spool) -> int:
        """Bring the live files in line with a rebuild's whole fold: the marker, the sweep, the
        files that differ, the checkpoint, and the marker's removal; how many files changed."""
        with self._below() as below:
            mark(below.dir(self.state_dir), self.sync)
            removed = sweep(below, self.paths.task_dir, os.path.dirname(self.paths.state()), self.state_dir, spool.paths)
        # by path: each run's files together, so that a chunk opens few directories
        spooled = sorted(path for path, where in spool.paths.items() if where is not None)
        for start in range(0, len(spooled), WRITE_CHUNK):
            out = [(path, spool.read(spool.paths[path])) for path in spooled[start : start + WRITE_CHUNK]]
            with self._below() as below:
                # not synced one by one: until the marker goes, a power loss is repaired by a
                # rebuild; not remembered (``_wrote``): a rebuild writes each file at most once
                write_files(out, False, below)
        if self.sync:
            os.sync()  # every file and removal durable before the checkpoint that covers them
        self._save()
        with self._below() as below:
            unmark(below.dir(self.state_dir), self.sync)
        return len(spooled) + removed

    def _failure(self, e: BaseException, writing: bool = False) -> str:
        if isinstance(e, CorruptRecord):
            what = f"a corrupt record in {e.segment} at byte {e.offset} ({e.detail})"
        elif isinstance(e, OSError):
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        else:
            what = str(e)
        if writing:
            return (
                f"task {self.task}: rebuild stopped while writing the projection files ({what}); some are new, some old, and "
                f"the next `runjournal project --task {self.task}` (or any projector of the task) rebuilds them before it trusts one"
            )
        return (
            f"task {self.task}: rebuild stopped at {what}; the projection files were left as they were "
            f"(`runjournal verify --task {self.task}` reports every problem of the journal)"
        )

    def _settle(self) -> CatchUp | None:
        """Rebuild again if a rebuild was killed while writing (its marker is there): the files
        may be part old, part new, and no checkpoint describes them (under the projector lock).
        Two ``lstat`` calls when there is none: cheap enough for every catch-up."""
        if not any(os.path.lexists(os.path.join(self.state_dir, name)) for name in (MARKER, OLD_MARKER)):
            return None
        return self._rebuild(None)

    def _fresh(self) -> None:
        """An empty state, from the first record (the files on disk are not this state's)."""
        self._state, self._next_seq, self._hint, self._journal, self._unsaved = TaskState(task_id=self.task), 1, None, None, False
        self._logs_written, self._error_files = {}, set()

    def _forget(self) -> None:
        """Drop the state in memory: the next use loads the checkpoint from disk."""
        self._state, self._ckpt_stat, self._unsaved = None, None, False

    def _clear(self) -> None:
        """Remove every projection file and the checkpoint (under the projector lock)."""
        for path in (os.path.join(self.paths.task_dir, "cli"), os.path.join(self.paths.task_dir, "metrics")):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.paths.metrics(), self.paths.state(), self.checkpoint_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        # temp files of a projector killed mid-write (never visible under a file's real name)
        for directory in (self.paths.task_dir, os.path.dirname(self.paths.state()), self.state_dir):
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith(".") and name.endswith(".tmp"):
                    os.unlink(os.path.join(directory, name))
        self._state, self._next_seq, self._hint, self._ckpt_stat, self._journal = None, 1, None, None, None
        self._logs_written, self._error_files = {}, set()

    def save(self, wait: float | None = 30.0) -> bool:
        """Write the checkpoint now if catch-ups since the last one skipped it (``save_every``).

        Nothing is written if another projector saved a checkpoint since: it is the newer one.
        """
        if not self._unsaved or self._state is None:
            return False
        lock = self._lock(wait)
        if lock is None:
            return False
        try:
            if self._checkpoint_key() == self._ckpt_stat:
                self._save()
            self._unsaved = False
            return True
        finally:
            os.close(lock)

    def state(self) -> TaskState:
        """The state as of the last catch-up (loading the checkpoint if this projector has none)."""
        if self._state is None:
            self._load()
        return self._state

    def view(self, now_ns: int | None = None) -> TaskState:
        """The state as of the journal's end, for a command that only reads: the checkpoint (when
        it describes this journal) and the records after it, folded in memory. It writes nothing,
        takes no lock and appends nothing, so it works on a journal the user can only read.
        Runs silent past their stale limit are shown stale exactly as a ``run_stale`` event would
        record them, and a live run whose heartbeat is stamped ahead of ``now`` by more than its
        stale limit is shown with its clock skew (``observe``: its silence counts from this
        projector's first sight of the heartbeat, so call again on the same projector to follow
        it); recording it is left to the writers that own the job (``watch``, ``project``, the
        runner). Call again to see what was appended since."""
        if not self.store.exists(self.task):
            return TaskState(task_id=self.task)
        with _gc_paused():
            self._load(read_only=True)
            state = self._state
            reading = self.store.records(self.task, self._next_seq, self._hint)
            for n, rec in enumerate(reading, 1):
                state.apply(rec)
                self._next_seq = rec.seq + 1
                if n % FLUSH_EVERY == 0:
                    _forget_finished_logs(state)
            self._hint = reading.hint or self._hint
        _forget_finished_logs(state)
        now = time.time_ns() if now_ns is None else now_ns
        # the view's stale marks stay the view's: copies of the runs they change, sets of its own
        shown = msgspec.structs.replace(state, runs=dict(state.runs), dirty=set(), dirty_heartbeat=set(), dirty_commands=set())
        for rid, seen in self.sightings.judge(state.runs.values(), now).items():
            run = state.runs[rid]
            if run.stale_since_ts is not None:
                continue
            if seen.stale:
                shown.runs[rid] = copy = msgspec.structs.replace(run)
                shown.apply(Record(0, rid, 0, now, ev.RunStale(last_heartbeat_ts=run.heartbeat_ts or run.started_ts, observer=VIEW_OBSERVER)))
                assert copy.stale_since_ts is not None
            elif seen.skew_ns:
                shown.runs[rid] = msgspec.structs.replace(run, skew_ns=seen.skew_ns)
        shown.dirty, shown.dirty_task = set(), False
        return shown

    def liveness(self, run_id: str, now_ns: int | None = None) -> Liveness | None:
        """How run ``run_id`` looks to this projector at ``now_ns`` (default: its clock), as of
        its last catch-up or view; None if the task has no such run. Each call is a sight: a
        heartbeat stamped in this clock's future counts as silent from the first call that saw
        it (``observe.liveness``)."""
        run = self.state().runs.get(run_id)
        if run is None:
            return None
        return self.sightings.look(run, time.time_ns() if now_ns is None else now_ns)

    # -- internals --------------------------------------------------------------------

    def _below(self) -> Below:
        """The projection directories, opened without following a link below the runs and out dirs."""
        return Below(*self._roots)

    def _lock(self, wait: float | None) -> int | None:
        makedirs_durable(self.paths.runs_dir)
        with self._below() as below:
            fd = open_private("lock", dir_fd=below.dir(self.state_dir))
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

    def _checkpoint_key(self) -> tuple | None:
        try:
            st = os.stat(self.checkpoint_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self, read_only: bool = False) -> None:
        """Take the checkpoint from disk unless the one in memory is the newest (``read_only``:
        a checkpoint of another journal is ignored, never cleared)."""
        key = self._checkpoint_key()
        if self._state is not None and key == self._ckpt_stat:
            return
        self._state, self._next_seq, self._hint, self._unsaved = TaskState(task_id=self.task), 1, None, False
        self._logs_written, self._error_files = {}, set()
        self._journal = None
        if key is not None:
            try:
                with open(self.checkpoint_path, "rb") as f:
                    ckpt = _ckpt_decoder.decode(f.read())
            except (OSError, *DECODE_ERRORS):
                ckpt = None  # unreadable checkpoint: rebuild from the journal
            # a checkpoint of another task (its directory copied, `cp -r .runs/a .runs/b`) describes
            # files rendered for that task: like one of another version, it is not used
            if ckpt is not None and not ckpt.durable and ckpt.boot != BOOT:
                ckpt = None  # files not fsynced, before a reboot: they may be behind it; render anew
            if ckpt is not None and ckpt.version == PROJECTION_VERSION and ckpt.state.task_id == self.task:
                found = self._journal_identity()
                if ckpt.journal and found is not None and ckpt.journal != found:
                    # the journal was deleted and made anew: these files describe another one
                    if not read_only:
                        self._clear()
                    self._state, self._journal = TaskState(task_id=self.task), None
                    return
                self._state, self._next_seq, self._hint = ckpt.state, ckpt.next_seq, ckpt.hint or None
                self._logs_written, self._error_files = dict(ckpt.logs_written), set(ckpt.error_files)
                self._journal = ckpt.journal or None
        self._ckpt_stat = key

    def _journal_identity(self) -> str | None:
        """The store's identity of the task's journal, once it has one (``EventStore.identity``)."""
        if not self._journal:
            found = self.store.identity(self.task)
            if not found:
                return found
            self._journal = found
        return self._journal

    def _made_anew(self) -> bool:
        """Whether the journal this projector's state describes was replaced by another."""
        if not self._journal:
            return False
        found = self.store.identity(self.task)
        return found is not None and found != self._journal

    def _catch_up(self, progress, save_every: float, load: bool = True, save: bool = True) -> CatchUp:
        with _gc_paused():
            return self._fold(progress, save_every, load, save)

    def _fold(self, progress, save_every: float, load: bool = True, save: bool = True) -> CatchUp:
        if load:
            self._load()
            if self._made_anew():  # deleted and made anew while this projector kept its state
                self._clear()
                self._load()
        state = self._state
        reading = self.store.records(self.task, self._next_seq, self._hint)
        applied = files = 0
        apply = state.apply
        rec = None
        for rec in reading:
            apply(rec)
            applied += 1
            if applied % 10000 == 0:
                if progress is not None:
                    progress(applied)
                if applied % FLUSH_EVERY == 0:
                    self._next_seq = rec.seq + 1
                    files += self._flush(state, task_files=False)
        if rec is not None:
            self._next_seq = rec.seq + 1
        self._hint = reading.hint or self._hint
        files += self._flush(state)
        if applied and save:
            if save_every <= 0 or time.monotonic() - self._last_saved >= save_every:
                self._save()
            else:
                self._unsaved = True
        return CatchUp(applied, files, self._next_seq)

    def _save(self) -> None:
        data = _ckpt_encoder.encode(
            Checkpoint(
                PROJECTION_VERSION, self._next_seq, self._state, self._journal_identity() or "", self._hint or "",
                self._logs_written, sorted(self._error_files), BOOT, self.sync,
            )
        )  # fmt: skip
        with self._below() as below:
            atomic_write(self.checkpoint_path, data, sync=self.sync, dir_fd=below.dir(self.state_dir))
        self._ckpt_stat = self._checkpoint_key()
        self._last_saved = time.monotonic()
        self._unsaved = False

    def _changed(self, out: list[tuple[str, bytes]], below: Below) -> list[tuple[str, bytes]]:
        """The files of ``out`` whose bytes are not on disk already: an unchanged file is not
        written again. A file this projector wrote is known by the hash of its bytes and its
        stat just after (``_wrote``); any other is read and compared, through ``below``."""
        known = self._written
        dirs: dict[str, int | None] = {}
        keep = []
        for path, data in out:
            head, _, name = path.rpartition(os.sep)
            dir_fd = dirs.get(head, -1)
            if dir_fd == -1:
                try:
                    dir_fd = dirs[head] = below.dir(head, create=False)
                except OSError:
                    dir_fd = dirs[head] = None  # a link or a file in the way: writing says so (a rebuild removes it first)
            if dir_fd is None or not _holds(dir_fd, name, data, known.get(path)):
                keep.append((path, data))
        return keep

    def _wrote(self, out: list[tuple[str, bytes]], below: Below) -> None:
        known = self._written
        if len(known) + len(out) > PATH_CACHE:
            known.clear()  # memory stays flat; the next flush reads what it cannot tell
        for path, data in out:
            head, _, name = path.rpartition(os.sep)
            try:
                st = os.stat(name, dir_fd=below.dir(head), follow_symlinks=False)
            except OSError:
                continue
            known[path] = (hash(data), (st.st_ino, st.st_size, st.st_mtime_ns))

    def _flush(self, state: TaskState, task_files: bool = True) -> int:
        """Write every file the applied records changed and whose bytes differ from the file on
        disk (during a rebuild's fold, into its spool instead); return how many.

        Without ``task_files``, only the runs' files: the task files (which cover every run,
        and so cost the most to render) are left dirty for the flush that ends the catch-up.
        """
        if not (state.dirty or state.dirty_heartbeat or state.dirty_commands or state.dirty_task):
            return 0
        p = self.paths
        out: list[tuple[str, bytes]] = []
        gone: list[str] = []
        for rid in sorted(state.dirty_heartbeat):
            run = state.runs.get(rid)
            if run is not None:
                out.append((p.heartbeat(rid), render.heartbeat(run)))
        for rid, index in sorted(state.dirty_commands):
            run = state.runs.get(rid)
            cmd = state.command(run, index) if run else None
            if cmd is None:
                continue
            key = f"{rid}#{index}"
            if cmd.has_log and self._logs_written.get(key) != cmd.starts:
                out.append((p.log(rid, cmd), render.log(cmd)))
                if cmd.status not in ("pending", "running", "stale"):
                    cmd.log = []  # a finished stage's log is final: on disk, out of memory
                    self._logs_written[key] = cmd.starts
            if cmd.error is not None:
                out.append((p.error(rid, cmd), render.error_file(run, cmd, state.task_id)))
                self._error_files.add(key)
            elif key in self._error_files:  # a retry cleared the error: a rebuild would not write the file
                gone.append(p.error(rid, cmd))
                self._error_files.discard(key)
        for rid in sorted(state.dirty):
            run = state.runs.get(rid)
            if run is not None:
                out.append((p.manifest(rid), render.dumps(render.manifest(state, run, p))))
        out.sort()  # each directory's files together (a log before its manifest): a chunk opens each directory once
        task_dirty = state.dirty_task
        if task_dirty and task_files:
            out.append((p.metrics(), render.metrics_lines(state)))
            out.append((p.summary(), render.summary(state)))
            out.append((p.state(), render.state_snapshot(state, p)))
            task_dirty = False
        written = 0
        for start in range(0, len(out), WRITE_CHUNK):
            chunk = out[start : start + WRITE_CHUNK]
            with self._below() as below:
                changed = self._changed(chunk, below)
                if self._spool is not None:
                    self._spool.hold(chunk, changed)
                else:
                    write_files(changed, self.sync, below)
                    self._wrote(changed, below)
            written += len(changed)
        if self._spool is not None:
            for path in gone:
                self._spool.drop(path)
        elif gone:
            with self._below() as below:
                for path in gone:
                    written += _remove(path, below, self.sync)
        state.dirty, state.dirty_heartbeat, state.dirty_commands, state.dirty_task = set(), set(), set(), task_dirty
        return written

    def _mark_stale(self, now_ns: int) -> int:
        state = self._state
        judged = self.sightings.judge(state.runs.values(), now_ns)
        stale = [state.runs[rid] for rid, seen in judged.items() if seen.stale and state.runs[rid].stale_since_ts is None]
        if not stale:
            return 0
        observer = f"projector pid {os.getpid()} on {socket.gethostname()}"
        items = [Item(r.run_id, ev.RunStale(last_heartbeat_ts=r.heartbeat_ts or r.started_ts, observer=observer)) for r in stale]
        self.store.append_batch(self.task, items)
        if self._owns_store:
            self.store.close()  # a writer opened for this alone is not kept (it reopens if needed)
        return len(items)


#: who a read-only view says saw a run go silent (never recorded: see Projector.view)
VIEW_OBSERVER = "read-only view"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The fold allocates millions of short-lived objects and no reference cycles: the cyclic
    collector would only rescan the growing state (about 30 % of the fold)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _holds(dir_fd: int, name: str, data: bytes, seen: tuple[int, tuple[int, int, int]] | None) -> bool:
    """Whether the file ``name`` in ``dir_fd`` holds exactly ``data``; ``seen``: the hash of what
    this projector wrote there and the file's (inode, size, mtime) just after, if it did."""
    if seen is not None or not data:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return False
        if seen is not None and (st.st_ino, st.st_size, st.st_mtime_ns) == seen[1]:
            return seen[0] == hash(data)  # its own bytes, untouched since
        if not data:  # (a FIFO reads as empty too)
            return stat.S_ISREG(st.st_mode) and st.st_size == 0
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        # one byte more than expected: a longer file reads longer (a directory, a FIFO: an error or b"")
        return os.read(fd, len(data) + 1) == data
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove(path: str, below: Below, sync: bool) -> int:
    """Remove one projection file (through ``below``); 1 if there was one."""
    dir_fd = below.dir(os.path.dirname(path), create=False)
    if dir_fd is None:
        return 0
    try:
        os.unlink(os.path.basename(path), dir_fd=dir_fd)
    except FileNotFoundError:
        return 0
    if sync:
        os.fsync(dir_fd)
    return 1


def _forget_finished_logs(state: TaskState) -> None:
    """What a flush does for memory, without the files: a finished stage's log leaves memory."""
    for rid, index in state.dirty_commands:
        run = state.runs.get(rid)
        cmd = state.command(run, index) if run else None
        if cmd is not None and cmd.status not in ("pending", "running", "stale"):
            cmd.log = []
    state.dirty_commands = set()


class _Paths(render.Paths):
    """``render.Paths``, cheaper: a rebuild asks for each run's and stage's paths many times over.

    The same strings, remembered (up to ``PATH_CACHE`` of each kind, then forgotten at once,
    so a long-lived daemon's memory stays flat), and ``rel`` by prefix instead of relpath.
    """

    def __init__(self, runs_dir: str, out_dir: str, task: str):
        super().__init__(runs_dir, out_dir, task)
        # every path is built by joining validated ids to runs_dir: when runs_dir is already
        # absolute and normal, a path under the base is the base, a slash, and the relative path
        self._prefix = self._base.rstrip(os.sep) + os.sep if os.path.abspath(runs_dir) == runs_dir else None
        self._run_dirs: dict[str, str] = {}
        self._stage_files: dict[tuple[str, int, str, str], str] = {}

    def rel(self, path: str) -> str:
        prefix = self._prefix
        if prefix is not None and path.startswith(prefix):
            return path[len(prefix) :]
        return super().rel(path)

    def run_dir(self, run_id: str) -> str:
        path = self._run_dirs.get(run_id)
        if path is None:
            if len(self._run_dirs) >= PATH_CACHE:
                self._run_dirs.clear()
            path = self._run_dirs[run_id] = super().run_dir(run_id)
        return path

    def log(self, run_id: str, cmd) -> str:
        return self._stage_file(run_id, cmd, "log", super().log)

    def error(self, run_id: str, cmd) -> str:
        return self._stage_file(run_id, cmd, "error", super().error)

    def _stage_file(self, run_id: str, cmd, kind: str, make) -> str:
        key = (run_id, cmd.index, cmd.id, kind)
        path = self._stage_files.get(key)
        if path is None:
            if len(self._stage_files) >= PATH_CACHE:
                self._stage_files.clear()
            path = self._stage_files[key] = make(run_id, cmd)
        return path


def write_files(files: list[tuple[str, bytes]], sync: bool = True, below: Below | None = None) -> None:
    """Replace each file atomically; for many files, one filesystem sync instead of one per file.
    ``below``: the directories to write in, opened without following links under its roots."""
    if below is None:
        with Below() as own:
            return write_files(files, sync, own)
    if len(files) <= BULK_FILES or not sync:
        for path, data in files:
            atomic_write(path, data, sync=sync, dir_fd=below.dir(os.path.dirname(path)))
        return
    tmps = []
    try:
        for path, data in files:
            dfd = below.dir(os.path.dirname(path))
            fd, tmp = create_temp("", os.path.basename(path), dir_fd=dfd)
            tmps.append((dfd, tmp, os.path.basename(path)))
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
    except OSError:
        for dfd, tmp, _ in tmps:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        raise
    os.sync()  # every temp file durable before any rename makes it visible
    for dfd, tmp, name in tmps:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    # every rename (and new directory) durable before the checkpoint that covers them: one
    # sync costs less than an fsync per directory (a rebuild touches thousands)
    os.sync()
