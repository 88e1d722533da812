"""The storage seam: one interface every backend implements, and one way to open a store.

The runner, the projections and the command line talk to an ``EventStore`` opened by
``open_store(url)``, never to segment files or SQL. A store holds the journals of many
tasks; every method names the task it is about. The file store (``journal.files``) is
the embedded default; a second backend proves itself by passing ``tests/contract``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from .errors import BadInput
from .events import AnyEvent, Record


@dataclass
class WriterStats:
    """What this process's writers met in one task's journal (the runner reports it)."""

    lock_retries: int = 0
    lock_timeouts: int = 0
    spills: int = 0


@dataclass(frozen=True)
class ArchiveUnit:
    """What moves to a task's archive together and is pruned together: a sealed segment of the
    file store, a range of records of the PostgreSQL store."""

    name: str
    first: int  # global sequences
    last: int
    runs: tuple[str, ...]  # run ids with records in it ('' for journal-level records)
    bytes: int  # as the live journal held them
    stored_bytes: int  # as the archive holds them, compressed
    pruned: bool = False


class Reading(Iterator[Record]):
    """Committed records in sequence order, from where a read started to the end it found.

    ``hint`` is an opaque token for the place after the last record yielded: give it back to
    ``EventStore.records`` with the next sequence to resume there cheaply. The sequence is the
    cursor; a hint that no longer fits is ignored, never trusted over it."""

    hint: str | None = None


class Subscription(abc.ABC):
    """A running wake-up (see ``EventStore.subscribe``)."""

    #: how it learns of appends, for people ("watchdog native observer", "polling every 2 s")
    kind: str = ""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop calling back; returns once no callback is running."""

    def refresh(self) -> None:
        """Look again for tasks that came or went (the subscriber's tick calls it)."""


class EventStore(abc.ABC):
    """The journals of every task of one root (a runs directory, a database).

    Appends are atomic per call, get gapless global sequence numbers in commit order (per
    task) and per-run sequence numbers; an append may state, per run, the sequence it
    expects the run to be at, and fails with ``SequenceConflict`` (nothing written)
    otherwise. Reads take no lock and write nothing; they see only committed records.
    Every error is a ``JournalError``.
    """

    #: where the store is, as a user would name it (a directory, a postgresql:// URL)
    url: str

    # -- writing ------------------------------------------------------------------------

    @abc.abstractmethod
    def append(self, task: str, run_id: str, event: AnyEvent, expected_seq: int | None = None) -> Record:
        """Append one event to a run; with ``expected_seq``, only if the run is at that sequence."""

    @abc.abstractmethod
    def append_batch(self, task: str, items: Iterable, expected: dict[str, int] | None = None) -> list[Record]:
        """Append ``Item``s (run id, event, optional ts) atomically: all of them or none, in
        order, with no other writer's record between them. ``expected``: run id -> sequence."""

    @abc.abstractmethod
    def record(self, task: str, event: AnyEvent, expected: dict[str, int] | None = None) -> Record:
        """Append a journal-level event (run id ``""``, such as ``runs_archived``); with
        ``expected``, only if each of those runs is at that sequence now."""

    @abc.abstractmethod
    def append_records(self, task: str, records: Sequence[Record]) -> None:
        """Append records copied from another journal of the same history, verbatim: global
        and run sequences, times, origins, journal-level records. The first must carry the
        task's next sequence (``JournalMovedOn`` otherwise) and each its run's next
        (``SequenceConflict``); nothing is written then. Atomic from each record that carries
        an origin to the next (a copy interrupted between them goes on where it stopped)."""

    @abc.abstractmethod
    def prepare(self, task: str) -> None:
        """Get ready to append to the task (creating its journal), so that a journal that cannot
        be written fails now (``JournalWriteFailed``) rather than at the first append."""

    @abc.abstractmethod
    def flush(self, task: str) -> None:
        """Make everything appended durable (and, for the file store, merge deferred batches)."""

    # -- reading ------------------------------------------------------------------------

    @abc.abstractmethod
    def tasks(self) -> list[str]:
        """Tasks that have a journal, sorted (names that are not valid task ids are left out)."""

    @abc.abstractmethod
    def where(self, task: str) -> str:
        """The task's journal as a message names it (a directory; a database and task)."""

    @abc.abstractmethod
    def last_seq(self, task: str) -> int:
        """The global sequence of the task's last committed record, 0 if none (no lock taken)."""

    @abc.abstractmethod
    def exists(self, task: str) -> bool:
        """Whether the task has a journal."""

    @abc.abstractmethod
    def run_seq(self, task: str, run_id: str) -> int:
        """The run's last committed sequence, 0 if it has none."""

    def run_seqs(self, task: str, run_ids: Iterable[str]) -> dict[str, int]:
        """Several runs' last sequences (one consistent look where the backend can give one)."""
        return {run_id: self.run_seq(task, run_id) for run_id in run_ids}

    @abc.abstractmethod
    def records(self, task: str, from_seq: int = 1, hint: str | None = None) -> Reading:
        """Committed records with a global sequence of ``from_seq`` or more, to the current end.
        ``JournalNotFound`` if the task has no journal; ``CorruptRecord`` at damage."""

    def first_at(self, task: str, ts: int) -> int | None:
        """A sequence where the task's record stamps reach ``ts`` (ns): the first record stamped
        at or after it while stamps never go backwards, and a place where they cross it
        otherwise; None if no live record is stamped at or after it. Found without reading the
        journal from its start where the store can (1 where it cannot): a starting point for a
        read whose caller checks what it reads, never trusted over the records."""
        return 1

    @abc.abstractmethod
    def identity(self, task: str) -> str | None:
        """What tells this task's journal from one made anew under the same name: '' while it
        has no record, None if there is no journal. A copy or a restore has the same."""

    @abc.abstractmethod
    def wait(self, task: str, after_seq: int, timeout: float) -> bool:
        """Block until the journal may hold a record past ``after_seq`` (or ``timeout`` s pass);
        True if it does. How it learns is the backend's own (the file store looks at its newest
        segment's size every 20 ms; a server waits for a notification, with polling behind it,
        so a lost notification costs one interval)."""

    @abc.abstractmethod
    def subscribe(
        self,
        on_change: Callable[[str], None],
        task: str | None = None,
        poll: float | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Subscription:
        """Call ``on_change(task)`` (on another thread) soon after each append to ``task``, or to
        any task (new ones included) when None; ``poll`` seconds: poll instead of notifying
        (network filesystems). Notifications may be merged or lost: callers catch up on a tick
        too. ``warn(message)``: what the wake-up survives (a journal deleted, a watch refused)."""

    # -- retention (``projections.retention`` decides what; a store moves and deletes) ---------

    def archive(self, task: str, before_seq: int, runs: set[str]) -> list[ArchiveUnit]:
        """Move the oldest live records to the task's archive, in units, while a unit holds only
        records of ``runs`` (and journal-level ones) before ``before_seq``; the live journal then
        begins after the last unit moved. Each unit moves whole or not at all, whatever kills
        the process; appends go on meanwhile; one archiver at a time. The units moved (and any
        an interrupted archive left half moved, now finished)."""
        raise BadInput(f"the store at {self.url} cannot archive")

    def archive_units(self, task: str) -> list[ArchiveUnit]:
        """The task's archive, oldest first (pruned units included); empty without one."""
        return []

    def prune_archive(self, task: str, names: set[str]) -> None:
        """Delete the records of the archived units ``names`` for good; their entries stay,
        marked pruned (what they held, and for the file store their chain hashes)."""
        raise BadInput(f"the store at {self.url} cannot prune")

    def archived_records(self, task: str, runs: set[str]) -> Iterator[Record]:
        """The records of ``runs`` that were moved to the task's archive, in order."""
        return iter(())

    def archived_runs(self, task: str) -> set[str]:
        """Runs with records in the task's archive (not pruned)."""
        return {run for unit in self.archive_units(task) if not unit.pruned for run in unit.runs if run}

    def chained_records(self, task: str) -> Iterator[tuple[Record, bytes | None, bytes | None]]:
        """Every record with the hash chain before and after it, None where the store keeps
        none (``reader.chained_records``): what ``export`` writes beside each record."""
        for rec in self.records(task):
            yield rec, None, None

    def follow(self, task: str, from_seq: int = 1, stop: threading.Event | None = None, poll: float = 0.05) -> Iterator[Record]:
        """Records from ``from_seq`` as they are committed, until ``stop`` is set (waits for the
        journal to exist first)."""
        stop = stop or threading.Event()
        while not self.exists(task):
            if stop.wait(0.05):
                return
        next_seq, hint = from_seq, None
        while not stop.is_set():
            reading = self.records(task, next_seq, hint)
            got = next_seq
            for rec in reading:
                yield rec
                next_seq = rec.seq + 1
            hint = reading.hint or hint
            if stop.is_set():
                return
            if got == next_seq:  # woken but nothing committed yet (a batch being written): no spinning
                stop.wait(poll)
            self.wait(task, next_seq - 1, poll)

    # -- checking -----------------------------------------------------------------------

    @abc.abstractmethod
    def check(self, task: str, pins: dict[int, bytes] | None = None):
        """Read every record and report what is wrong (a ``journal.verify.Report``); writes
        nothing. ``pins``: {sequence: hash chain value} a reviewer noted, checked still to hold."""

    def upgrade(self, task: str) -> tuple[str, bytes] | None:
        """Start storing the hash chain in a journal written before it (``Journal.upgrade``)."""
        raise BadInput("this store keeps no hash chain (the file store does): there is nothing to upgrade")

    @abc.abstractmethod
    def repair(self, task: str, quarantine: bool = False):
        """Repair what can be repaired without losing a committed record, then ``check``. With
        ``quarantine``, damaged regions are also set aside (their records are lost; a copy is
        kept), so that appends can go on after them."""

    @abc.abstractmethod
    def writer_stats(self, task: str) -> WriterStats:
        """What this process's appends to the task met so far (lock retries, timeouts, deferrals)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every resource; the store is not used after."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(url: str, durability: str = "batch", lock_timeout: float | None = None, root: str | None = None) -> EventStore:
    """The store at ``url``: a directory path (or ``file://`` URL) is the file store of that
    runs directory (``root``: the directory the user named that holds it, see ``FileStore``);
    ``postgresql://`` a database (``journal.postgres``; the ``postgres`` extra installs its driver)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, durability=durability, lock_timeout=lock_timeout)
    if "://" in url and not url.startswith("file://"):
        raise BadInput(f"store {url!r}: not a directory or a known URL (file://, postgresql://)")
    from .files import FileStore

    return FileStore(url.removeprefix("file://"), durability=durability, lock_timeout=lock_timeout, root=root)


def copy_chunks(records: Sequence[Record], size: int = 1000) -> Iterator[list[Record]]:
    """Records cut where an origin starts a batch (only a batch's first record carries one),
    and every ``size`` records: the atomic steps of ``append_records``. BadInput, before the
    chunk that holds it is given out, where a global or run sequence skips (a journal with a
    region set aside by ``verify --quarantine`` cannot be copied verbatim)."""
    chunk: list[Record] = []
    runs: dict[str, int] = {}
    for rec in records:
        if chunk and rec.seq != chunk[-1].seq + 1:
            raise BadInput(f"the records to copy skip from sequence {chunk[-1].seq} to {rec.seq}: they cannot be copied as they are")
        prev = runs.get(rec.run_id)
        if prev is not None and rec.run_seq != prev + 1:
            raise BadInput(f"run {rec.run_id or '(journal)'} skips from sequence {prev} to {rec.run_seq}: the records cannot be copied as they are")
        runs[rec.run_id] = rec.run_seq
        if chunk and (rec.origin is not None or len(chunk) >= size):
            yield chunk
            chunk = []
        chunk.append(rec)
    if chunk:
        yield chunk


def runs_before(chunk: list[Record]) -> dict[str, int]:
    """Each run of a chunk of copied records at the sequence it must be at before them: the
    expected sequences of their append."""
    expected: dict[str, int] = {}
    for rec in chunk:
        expected.setdefault(rec.run_id, rec.run_seq - 1)
    return expected
