"""The live projection daemon: keeps projection files current while journals grow.

watchdog says *that* a journal changed, never *what*: every wake-up catches the changed
tasks up to the end of their journals, so a burst of appends is handled by one catch-up,
and a notification that watchdog drops (inotify queue overflow) costs at most one slow
tick, on which every task is caught up anyway and silent runs are marked stale.

Only journal directories (and the runs directory, to see new tasks) are watched, never
projection output, so the daemon's own writes never wake it up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from runjournal.journal import JournalError
from runjournal.journal.naming import validate_task_id

from .projector import CatchUp, Projector

log = logging.getLogger(__name__)

#: what wakes the daemon: appends, new segments, closes after writing, and directories coming
#: and going. Opens and read-only closes are left out: the projector's own reads make those.
WAKE_EVENTS: list[type[FileSystemEvent]] = [
    FileModifiedEvent,
    FileCreatedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    DirModifiedEvent,
]
#: how long a catch-up waits for another projector (``project``, ``status``) to release a task
LOCK_WAIT = 1.0


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: notes which task changed and wakes the loop, nothing more."""

    def __init__(self, daemon: Watcher):
        self._daemon = daemon

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._daemon._notice(os.fsdecode(event.src_path))
        if event.dest_path:
            self._daemon._notice(os.fsdecode(event.dest_path))


class Watcher:
    """Projects every task under ``runs_dir`` (or just ``task``) live; ``run(stop)`` until ``stop`` is set.

    ``poll`` (seconds) uses watchdog's polling observer, for network filesystems where
    inotify sees nothing; otherwise the native observer. ``on_catch_up(task, result)`` is
    called after every catch-up that did something; ``warn(message)`` for problems the
    daemon survives (a journal deleted under it, a corrupt record, a full disk).
    """

    def __init__(
        self,
        runs_dir: str,
        out_dir: str,
        task: str | None = None,
        poll: float | None = None,
        tick: float = 1.0,
        sync: bool = True,
        on_catch_up: Callable[[str, CatchUp], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        self.runs_dir = os.path.abspath(runs_dir)
        self.out_dir = os.path.abspath(out_dir)
        self.task = None if task is None else validate_task_id(task)
        self.poll = poll
        self.tick = tick
        self.sync = sync
        self.on_catch_up = on_catch_up
        self.warn = warn or log.warning
        self.wake = threading.Event()
        self._mutex = threading.Lock()
        self._changed: set[str] = set()
        self._rescan = True
        self._projectors: dict[str, Projector] = {}
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int]]] = {}
        self._last_warning: dict[str, str] = {}
        self._failing: dict[str, float] = {}  # task -> when its catch-ups began to fail
        self._observer: BaseObserver | None = None
        self.catch_ups = 0
        self.applied = 0

    @property
    def observer_kind(self) -> str:
        return f"polling every {self.poll:g} s" if self.poll else "watchdog native observer"

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Watch and catch up until ``stop`` is set; the catch-up in progress finishes first."""
        os.makedirs(self.runs_dir, exist_ok=True)
        observer = PollingObserver(timeout=self.poll) if self.poll else Observer()
        self._observer = observer
        observer.start()
        try:
            self._refresh_watches()
            if on_ready is not None:
                on_ready()
            next_tick = time.monotonic()  # the first pass catches every task up
            while not stop.is_set():
                now = time.monotonic()
                if now < next_tick:
                    self.wake.wait(next_tick - now)
                    if stop.is_set():
                        break
                self.wake.clear()
                with self._mutex:
                    changed, self._changed = self._changed, set()
                    rescan, self._rescan = self._rescan, False
                periodic = time.monotonic() >= next_tick
                if periodic:
                    next_tick = time.monotonic() + self.tick
                if periodic or rescan:
                    self._refresh_watches()
                todo = set(self._tasks()) if periodic else {t for t in changed if self._wanted(t)}
                for task in sorted(todo):
                    if stop.is_set():
                        break
                    self._catch_up(task, mark_stale=periodic)
        finally:
            for task, projector in self._projectors.items():
                try:
                    projector.save()
                except (JournalError, OSError) as e:
                    self.warn(f"task {task}: checkpoint not saved at exit: {e}")
            observer.stop()
            observer.join()
            self._observer = None

    def _catch_up(self, task: str, mark_stale: bool) -> None:
        projector = self._projectors.get(task)
        if projector is None:
            projector = self._projectors[task] = Projector(self.runs_dir, self.out_dir, task, sync=self.sync)
        try:
            result = projector.catch_up(wait=min(LOCK_WAIT, self.tick), mark_stale=mark_stale, save_every=1.0)
        except (JournalError, OSError) as e:
            # a journal deleted (or replaced) under us, corruption, a full disk: say so once, carry on;
            # a new projector starts again from the checkpoint on disk next time
            self._projectors.pop(task, None)
            if time.monotonic() - self._failing.setdefault(task, time.monotonic()) < self.tick:
                # said only if it still fails a tick later: a journal caught in the middle of
                # `rm -r` fails ("segment to resume from no longer exists") until its directory
                # is gone, and then the rescan says that instead
                return
            message = f"task {task}: {e}"
            if self._last_warning.get(task) != message:
                self._last_warning[task] = message
                self.warn(message)
            return
        self._last_warning.pop(task, None)
        self._failing.pop(task, None)
        if result is None:  # another projector holds the task: the next tick retries
            return
        self.catch_ups += 1
        self.applied += result.applied
        if self.on_catch_up is not None and (result.applied or result.files or result.stale_marked):
            self.on_catch_up(task, result)

    # -- what to watch ----------------------------------------------------------------

    def _wanted(self, task: str) -> bool:
        return self.task is None or task == self.task

    def _tasks(self) -> list[str]:
        """Tasks that have a journal directory now."""
        if self.task is not None:
            return [self.task] if os.path.isdir(self._journal_dir(self.task)) else []
        try:
            names = os.listdir(self.runs_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _valid_task(n) and os.path.isdir(self._journal_dir(n)))

    def _journal_dir(self, task: str) -> str:
        return os.path.join(self.runs_dir, task, "journal")

    def _notice(self, path: str) -> None:
        """Map a changed path to the task it belongs to (watchdog's thread)."""
        rel = os.path.relpath(path, self.runs_dir)
        parts = rel.split(os.sep)
        with self._mutex:
            if rel == "." or len(parts) == 1:
                self._rescan = True  # a task appeared or went away
            elif parts[1] == "journal" and parts[0] != "..":
                self._changed.add(parts[0])
                if len(parts) == 2:
                    self._rescan = True  # the journal directory itself came or went
            else:
                return  # something else in a task directory we watch until its journal appears
        self.wake.set()

    def _refresh_watches(self) -> None:
        """Watch the runs dir, each task's journal dir, and task dirs still waiting for a journal."""
        wanted = [self.runs_dir]
        try:
            names = [self.task] if self.task is not None else os.listdir(self.runs_dir)
        except FileNotFoundError:
            names = []
        for name in names:
            if not _valid_task(name):
                continue
            task_dir = os.path.join(self.runs_dir, name)
            journal = os.path.join(task_dir, "journal")
            if os.path.isdir(journal):
                wanted.append(journal)
            elif os.path.isdir(task_dir):
                wanted.append(task_dir)
        identities = {}
        for path in wanted:
            try:
                st = os.stat(path)
            except OSError:
                continue
            identities[path] = (st.st_dev, st.st_ino)
        for path in list(self._watches):
            watch, identity = self._watches[path]
            now = identities.get(path)
            if now == identity:
                continue
            self._unschedule(path)
            if os.path.basename(path) == "journal":
                task = os.path.basename(os.path.dirname(path))
                self._projectors.pop(task, None)  # its state describes a journal that is gone
                self._failing.pop(task, None)
                if now is None:
                    self.warn(f"task {task}: journal directory {path} disappeared; its projection files are left as they are")
                else:  # a journal with another first record: the projector starts over (projector.py)
                    self.warn(f"task {task}: journal directory {path} was replaced; its projections follow the new one")
        for path, identity in identities.items():
            if path in self._watches:
                continue
            try:
                watch = self._observer.schedule(_Handler(self), path, recursive=False, event_filter=WAKE_EVENTS)
            except OSError as e:
                # e.g. the inotify watch limit: changes there are still seen on the tick
                self.warn(f"cannot watch {path}: {e.strerror or e}; catching it up every {self.tick:g} s instead (--poll avoids inotify)")
                continue
            self._watches[path] = (watch, identity)
            if path.endswith(os.sep + "journal"):
                with self._mutex:  # appended before the watch existed: catch up now
                    self._changed.add(os.path.basename(os.path.dirname(path)))
                self.wake.set()
        for path in identities:
            # a journal created between the listing above and the watch on its task directory
            # made no event that watch could see: look again rather than wait for the tick
            if path != self.runs_dir and os.path.basename(path) != "journal" and os.path.isdir(os.path.join(path, "journal")):
                with self._mutex:
                    self._rescan = True
                self.wake.set()

    def _unschedule(self, path: str) -> None:
        watch, _ = self._watches.pop(path)
        try:
            self._observer.unschedule(watch)
        except (KeyError, OSError):
            pass  # its emitter already stopped when the directory went away


def _valid_task(name: str) -> bool:
    try:
        validate_task_id(name)
    except JournalError:
        return False
    return True


def watch(
    runs_dir: str,
    out_dir: str,
    task: str | None = None,
    poll: float | None = None,
    stop: threading.Event | None = None,
    tick: float = 1.0,
    on_catch_up: Callable[[str, CatchUp], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Watcher:
    """Run the live projection daemon until ``stop`` is set; return it (with its counters)."""
    daemon = Watcher(runs_dir, out_dir, task, poll, tick, on_catch_up=on_catch_up, warn=warn)
    daemon.run(stop or threading.Event(), on_ready)
    return daemon
