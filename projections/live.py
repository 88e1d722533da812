"""The live projection daemon: keeps projection files current while journals grow.

The store says *that* a task's journal changed (``EventStore.subscribe``: watchdog for the
file store), never *what*: every wake-up catches the changed tasks up to the end of their
journals, so a burst of appends is handled by one catch-up, and a notification that is lost
costs at most one slow tick, on which every task is caught up anyway and silent runs are
marked stale.

A retention policy (``retention``) is applied on a slow tick, after the task's catch-up: in
each task once when the daemon first catches it up, then every ``retention_every`` seconds.
Archiving and pruning append ``runs_archived`` records, which the next catch-up projects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from runjournal.journal import EventStore, JournalError, open_store
from runjournal.journal.fsutil import root_of
from runjournal.journal.naming import validate_task_id

from .projector import CatchUp, Projector
from .retention import Selection, archive, prune

log = logging.getLogger(__name__)

#: how long a catch-up waits for another projector (``project``, the runner) to release a task
LOCK_WAIT = 1.0
#: how often a retention policy is applied to each task, by default (seconds)
RETENTION_EVERY = 24 * 3600.0


class Watcher:
    """Projects every task under ``runs_dir`` (or just ``task``) live; ``run(stop)`` until ``stop`` is set.

    ``poll`` (seconds) uses watchdog's polling observer, for network filesystems where
    inotify sees nothing; otherwise the native observer. ``on_catch_up(task, result)`` is
    called after every catch-up that did something; ``warn(message)`` for problems the
    daemon survives (a journal deleted under it, a corrupt record, a full disk).

    ``retention`` is a policy with an ``archive`` and a ``prune`` rule, each None or with
    ``older_than_seconds`` and ``keep_last`` (``runner.config.Retention``); it is applied to
    each task every ``retention_every`` seconds, and ``on_retention(task, archived, pruned)``
    gets what ``retention.archive`` and ``retention.prune`` did (None: that rule is not set,
    or failed and was warned about).
    """

    def __init__(
        self,
        runs_dir: str,
        out_dir: str,
        task: str | None = None,
        poll: float | None = None,
        tick: float = 1.0,
        sync: bool = False,
        on_catch_up: Callable[[str, CatchUp], None] | None = None,
        warn: Callable[[str], None] | None = None,
        store: EventStore | None = None,
        roots: tuple[str, ...] = (),
        retention=None,
        retention_every: float = RETENTION_EVERY,
        on_retention: Callable[[str, dict | None, dict | None], None] | None = None,
    ):
        self.runs_dir = os.path.abspath(runs_dir)
        self.roots = roots
        self.store = store if store is not None else open_store(self.runs_dir, root=root_of(self.runs_dir, roots) if roots else None)
        self._owns_store = store is None
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
        self._projectors: dict[str, Projector] = {}
        self._last_warning: dict[str, str] = {}
        self._failing: dict[str, float] = {}  # task -> when its catch-ups began to fail
        self._refused_seen: dict[str, int] = {}  # task -> refused run ids already warned about
        self.retention = retention
        self.retention_every = retention_every
        self.on_retention = on_retention
        self._retention_due: dict[str, float] = {}  # task -> when (monotonic) its policy is next applied
        self.catch_ups = 0
        self.applied = 0
        self.retentions = 0
        self.observer_kind = ""

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Watch and catch up until ``stop`` is set; the catch-up in progress finishes first."""
        subscription = self.store.subscribe(self._noticed, self.task, self.poll, warn=self.warn)
        self.observer_kind = subscription.kind  # how the store learns of appends, for the ready line
        try:
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
                periodic = time.monotonic() >= next_tick
                if periodic:
                    next_tick = time.monotonic() + self.tick
                    subscription.refresh()
                todo = set(self._tasks()) if periodic else changed
                for task in sorted(todo):
                    if stop.is_set():
                        break
                    if self._catch_up(task, mark_stale=periodic) and periodic and self.retention:
                        self._retain(task)
        finally:
            subscription.stop()
            for task, projector in self._projectors.items():
                try:
                    projector.save()
                except (JournalError, OSError) as e:
                    self.warn(f"task {task}: checkpoint not saved at exit: {e}")
            if self._owns_store:
                self.store.close()

    def _noticed(self, task: str) -> None:
        """The store's wake-up (on its thread): note the task and wake the loop."""
        with self._mutex:
            self._changed.add(task)
        self.wake.set()

    def _catch_up(self, task: str, mark_stale: bool) -> bool:
        """Catch the task up; False if it failed or another projector holds it."""
        projector = self._projectors.get(task)
        if projector is None:
            projector = self._projectors[task] = Projector(self.runs_dir, self.out_dir, task, sync=self.sync, store=self.store, roots=self.roots)
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
            return False
        self._last_warning.pop(task, None)
        self._failing.pop(task, None)
        if result is None:  # another projector holds the task: the next tick retries
            return False
        refused = projector.state().invalid_ids
        if len(refused) > self._refused_seen.get(task, 0):
            self._refused_seen[task] = len(refused)
            self.warn(f"task {task}: the journal holds run ids that cannot name a path, not projected: {', '.join(map(repr, refused[:3]))}")
        self.catch_ups += 1
        self.applied += result.applied
        if self.on_catch_up is not None and (result.applied or result.files or result.stale_marked):
            self.on_catch_up(task, result)
        return True

    def _retain(self, task: str) -> None:
        """Apply the retention policy to the task if it is due: archive, then prune. A failure
        is warned about and tried again when the policy is next due."""
        if time.monotonic() < self._retention_due.get(task, 0.0):
            return
        now = time.time_ns()
        paths = self._projectors[task].paths
        archived = self._apply(task, "archive", self.retention.archive, now, lambda s: archive(self.store, task, s))
        pruned = self._apply(task, "prune", self.retention.prune, now, lambda s: prune(self.store, task, s, paths))
        self._retention_due[task] = time.monotonic() + self.retention_every
        self.retentions += 1
        if self.on_retention is not None and (archived is not None or pruned is not None):
            self.on_retention(task, archived, pruned)

    def _apply(self, task: str, verb: str, rule, now_ns: int, do: Callable[[Selection], dict]) -> dict | None:
        """What one rule of the policy did; None if it is not set, or failed (said in a warning)."""
        if rule is None:
            return None
        older_than = None if rule.older_than_seconds is None else now_ns - int(rule.older_than_seconds * 1e9)
        try:
            return do(Selection(keep_last=rule.keep_last, older_than=older_than))
        except (JournalError, OSError) as e:
            self.warn(f"task {task}: retention: {verb} failed: {e}")
            return None

    def _tasks(self) -> list[str]:
        """Tasks that have a journal now."""
        if self.task is not None:
            return [self.task] if self.store.exists(self.task) else []
        return self.store.tasks()


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
