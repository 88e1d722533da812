"""The file store's wake-up: watchdog on journal directories (``FileStore.subscribe``).

watchdog says *that* a journal changed, never *what*: the subscriber catches the task up
to the end of its journal, so a burst of appends costs one catch-up, and a notification
watchdog drops (inotify queue overflow) costs at most the subscriber's next tick.

Only journal directories (and the runs directory, to see new tasks; a task directory until
its journal appears) are watched, never projection output, so a projector's own writes
never wake it up.
"""

from __future__ import annotations

import os
import threading
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
from watchdog.observers.api import ObservedWatch
from watchdog.observers.polling import PollingObserver

from .errors import JournalError
from .fsutil import makedirs
from .naming import validate_task_id
from .store import Subscription

#: what wakes a subscriber: appends, new segments, closes after writing, and directories coming
#: and going. Opens and read-only closes are left out: a projector's own reads make those.
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


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: maps the path to its task and says so, nothing more."""

    def __init__(self, subscription: FileSubscription):
        self._subscription = subscription

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._subscription._notice(os.fsdecode(event.src_path))
        if event.dest_path:
            self._subscription._notice(os.fsdecode(event.dest_path))


class FileSubscription(Subscription):
    """Calls ``on_change(task)`` after appends to the task (any task when ``task`` is None)."""

    def __init__(self, store, on_change: Callable[[str], None], task: str | None, poll: float | None, warn: Callable[[str], None] | None = None):
        self.runs_dir = os.path.abspath(store.runs_dir)
        self.task = None if task is None else validate_task_id(task)
        self.on_change = on_change
        self.warn = warn or (lambda message: None)
        self.kind = f"polling every {poll:g} s" if poll else "watchdog native observer"
        self._mutex = threading.Lock()
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int]]] = {}
        makedirs(self.runs_dir)
        self._observer = PollingObserver(timeout=poll) if poll else Observer()
        self._observer.start()
        self.refresh()
        # watches change on a thread of the subscription's own, never on watchdog's dispatch thread
        self._rescan = threading.Event()
        self._stopped = threading.Event()
        self._rescanner = threading.Thread(target=self._rescan_loop, name="runjournal-rescan", daemon=True)
        self._rescanner.start()

    def stop(self) -> None:
        self._stopped.set()
        self._rescan.set()
        self._rescanner.join()
        self._observer.stop()
        self._observer.join()

    def _rescan_loop(self) -> None:
        while True:
            self._rescan.wait()
            if self._stopped.is_set():
                return
            self._rescan.clear()
            self.refresh()

    def _notice(self, path: str) -> None:
        rel = os.path.relpath(path, self.runs_dir)
        parts = rel.split(os.sep)
        if rel == "." or len(parts) == 1:
            self._rescan.set()  # a task appeared or went away
        elif parts[1] == "journal" and parts[0] != "..":
            if len(parts) == 2:
                self._rescan.set()  # the journal directory itself came or went
            if self.task is None or parts[0] == self.task:
                self.on_change(parts[0])

    def refresh(self) -> None:
        """Watch the runs dir, each task's journal dir, and task dirs still waiting for a journal;
        say which tasks need a look (a journal that came, went or was replaced)."""
        with self._mutex:
            changed = self._refresh()
        for task in dict.fromkeys(changed):
            if self.task is None or task == self.task:
                self.on_change(task)

    def _refresh(self) -> list[str]:
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
            # the task dir stays watched once its journal appears: unscheduling a watch while its
            # events are still buffered kills watchdog's emitter thread (KeyError) before 7.0,
            # the last watchdog Python 3.10 can have
            if os.path.isdir(task_dir):
                wanted.append(task_dir)
            if os.path.isdir(journal):
                wanted.append(journal)
        identities = {}
        for path in wanted:
            try:
                st = os.stat(path)
            except OSError:
                continue
            identities[path] = (st.st_dev, st.st_ino)
        changed = []
        for path in list(self._watches):
            _, identity = self._watches[path]
            now = identities.get(path)
            if now == identity:
                continue
            self._unschedule(path)
            if os.path.basename(path) == "journal":
                task = os.path.basename(os.path.dirname(path))
                changed.append(task)
                if now is None:
                    self.warn(f"task {task}: journal directory {path} disappeared; its projection files are left as they are")
                else:  # a journal with another first record: its projector starts over
                    self.warn(f"task {task}: journal directory {path} was replaced; its projections follow the new one")
        for path, identity in identities.items():
            if path in self._watches:
                continue
            try:
                watch = self._observer.schedule(_Handler(self), path, recursive=False, event_filter=WAKE_EVENTS)
            except OSError as e:
                # e.g. the inotify watch limit: changes there are still seen on the subscriber's tick
                self.warn(f"cannot watch {path}: {e.strerror or e}; catching it up on the tick instead (--poll avoids inotify)")
                continue
            self._watches[path] = (watch, identity)
            if path.endswith(os.sep + "journal"):
                changed.append(os.path.basename(os.path.dirname(path)))  # appended before the watch existed
        for path in identities:
            # a journal created between the listing above and the watch on its task directory
            # made no event that watch could see: look again at once rather than on the tick
            journal = os.path.join(path, "journal")
            if path != self.runs_dir and os.path.basename(path) != "journal" and journal not in identities and os.path.isdir(journal):
                changed.extend(self._refresh())
                break
        return changed

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
