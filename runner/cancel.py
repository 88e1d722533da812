"""Cancel from anywhere: a ``cancel_requested`` event in the journal, and the runner watching for it.

``request_cancel`` records the request (``runjournal cancel``). A live runner's ``CancelWatch``
reads its task's new records a few times a second and, on a request for its run, cancels as
on Ctrl-C (TERM to the stage's group, ``cancelGraceSeconds``, KILL). A run whose runner is
dead (stale) is closed at once: the request and a ``run_cancelled`` go in one batch, after
what its unfinished stage left running on this host is stopped.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from runjournal.journal import EventStore, Item, JournalError
from runjournal.journal import events as ev
from runjournal.journal.errors import SequenceConflict

from . import procs
from .capture import Cancel
from .orphans import describe, unfinished_groups

#: how often a runner looks for a cancel request of its run (seconds)
POLL = 0.25
#: how many times a request is tried again when the run appended meanwhile
ATTEMPTS = 200
ENDS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)


def requested_by(e: ev.CancelRequested) -> str:
    """Who asked, as the run's reason says it: ``alice (runjournal cancel: deploy frozen)``."""
    return f"{e.actor} (runjournal cancel" + (f": {e.reason})" if e.reason else ")")


class CancelWatch(threading.Thread):
    """Reads the task's records from ``from_seq`` on, every ``POLL`` s; a ``cancel_requested``
    for ``run_id`` asks ``cancel``. Never raises: a journal it cannot read is tried again."""

    def __init__(self, store: EventStore, task: str, run_id: str, cancel: Cancel, from_seq: int, say: Callable[[str], None]):
        super().__init__(name="runjournal-cancel-watch", daemon=True)
        self.store, self.task, self.run_id, self.cancel, self.say = store, task, run_id, cancel, say
        self.next_seq = from_seq
        self.hint: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(POLL):
            try:
                self.look()
            except Exception:  # noqa: BLE001 - the watch must never take the run down
                pass

    def look(self) -> None:
        if self.store.last_seq(self.task) < self.next_seq:  # the usual answer, without reading
            return
        reading = self.store.records(self.task, self.next_seq, self.hint)
        for rec in reading:
            self.next_seq = rec.seq + 1
            if rec.run_id == self.run_id and type(rec.event) is ev.CancelRequested:
                by = requested_by(rec.event)
                if not self.cancel.requests:
                    self.say(f"cancelling: requested by {by}")
                self.cancel.ask(by)
        self.hint = reading.hint or self.hint


@dataclass
class Cancelled:
    """What ``request_cancel`` did: ``requested`` (the runner cancels) or ``closed`` (stale run)."""

    outcome: str
    detail: str = ""


def request_cancel(store: EventStore, task: str, run_id: str, actor: str, reason: str, alive: bool, grace: float = 5.0) -> Cancelled:
    """Record a cancel request for a run that has not ended (``alive``: its runner lives). A
    dead runner's run is closed as cancelled at once, after its stage's leftovers on this host
    are stopped. A ``JournalError`` (exit 1) if the run ended meanwhile (nothing is recorded then)."""
    request = ev.CancelRequested(actor=actor, reason=reason, host=socket.gethostname(), pid=os.getpid())
    from_seq = store.last_seq(task) + 1
    detail = ""
    if not alive:
        detail = _stop_leftovers(store, task, run_id, grace)
    for _ in range(ATTEMPTS):
        seq = store.run_seq(task, run_id)
        ended = _ended_since(store, task, run_id, from_seq)
        if ended is not None:
            raise JournalError(f"run {run_id} {ended} before the cancel was recorded; nothing to cancel")
        from_seq = store.last_seq(task) + 1
        try:
            if alive:
                store.append(task, run_id, request, expected_seq=seq)
                return Cancelled("requested")
            why = f"cancelled by {requested_by(request)}: its runner is gone (stale)" + (f"; {detail}" if detail else "")
            store.append_batch(task, [Item(run_id, request), Item(run_id, ev.RunCancelled(reason=why))], expected={run_id: seq})
            return Cancelled("closed", why)
        except SequenceConflict:
            continue  # the run appended meanwhile: look whether it ended, then try again
    raise JournalError(f"run {run_id} kept changing while the cancel was being recorded ({ATTEMPTS} tries); try again")


def _ended_since(store: EventStore, task: str, run_id: str, from_seq: int) -> str | None:
    """How the run ended in the records from ``from_seq`` on (None: it did not), unless an accepted resume followed."""
    ended = None
    for rec in store.records(task, from_seq):
        if rec.run_id != run_id:
            continue
        if isinstance(rec.event, ENDS):
            ended = {ev.RunCompleted: "succeeded", ev.RunFailed: "failed", ev.RunCancelled: "was cancelled"}[type(rec.event)]
        elif type(rec.event) is ev.RunResumed and rec.event.outcome == "accepted":
            ended = None
    return ended


def _stop_leftovers(store: EventStore, task: str, run_id: str, grace: float) -> str:
    """Stop what a dead runner's unfinished stage left running on this host; say what was done."""
    done = []
    for group in unfinished_groups(store.records(task), run_id):
        if group.host != socket.gethostname():
            done.append(f"not checked: {describe(group, run_id)} ran on host {group.host}")
            continue
        try:
            count = procs.stop_group(group.pgid, group.start, grace)
        except procs.StopFailed as e:
            done.append(f"could not stop {describe(group, run_id)}: {e}")
            continue
        if count:
            done.append(f"stopped {describe(group, run_id)}: process group {group.pgid}, {count} process(es)")
    return "; ".join(done)
