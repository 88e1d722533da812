"""The writer: appends batches of events to a task journal under its lock.

Each open ``Journal`` keeps its segment and lock descriptors open and an in-memory view
of the journal (last global sequence, every run's last sequence, end offset). Under the
lock it first catches that view up with what other writers appended (nothing to do when
the segment size is unchanged), cuts a torn tail if a crashed writer left one, then
encodes the whole batch and writes it with one ``write``.

A writer that cannot get the lock within the timeout spills its batch to
``pending/`` (fsynced, renamed into place) and raises ``LockTimeout`` saying so; the
next lock holder merges pending files, oldest first, before its own events. Appends that
state an expected sequence are never spilled: they fail with nothing written.

The parts it composes: ``chain`` (which segments, in what order), ``segments`` (making,
sealing and mending segment files), ``spill`` (pending files), ``head`` (the shared view of
the journal's end), ``lock`` (the flock and its waiting).
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import msgspec

from . import chain, hashchain, segments, spill
from .commit import GroupCommit
from . import format as fmt
from .errors import (
    BadInput,
    CorruptRecord,
    HistoryViolation,
    JournalDamaged,
    JournalError,
    JournalMovedOn,
    NotQuarantinable,
    JournalWriteFailed,
    LockTimeout,
    SequenceConflict,
)
from .events import (
    DECODE_ERRORS,
    JOURNAL_RUN,
    AnyEvent,
    Event,
    Record,
    RegionQuarantined,
    RunStarted,
    TailRepaired,
    encoder,
    head_decoder,
    int_out_of_range,
    why_undecodable,
)
from .format import HEADER_LEN, MAX_PAYLOAD, encode_frame
from .fsutil import exists_at, open_dir_below, write_all
from .head import Head, HeadDamaged
from .lock import DEFAULT_TIMEOUT, JournalLock
from .naming import validate_run_id
from .rules import started_twice
from .spill import PENDING_DIR

DURABILITY_MODES = ("always", "batch", "none")
HEAD = "head2"  # the head cache, format RJHEAD02 (journal/head.py); "head" was RJHEAD01, left to older writers
LOCK = "lock"
DEFAULT_SEGMENT_BYTES = 16 << 20  # also bounds what a writer reads to check the current segment at open
BATCH_SYNC_INTERVAL = 1.0
PUBLISH_EVERY = 256
ALONE_AFTER = 64  # appends in a row with no other writer before publishing is deferred
VALID_IDS_KEPT = 4096  # run ids remembered as checked, then forgotten at once (memory stays flat)


class Item(NamedTuple):
    """One event to append; ``ts`` (ns since the epoch, UTC) defaults to the time of the append."""

    run_id: str
    event: AnyEvent
    ts: int | None = None


class Journal:
    """A task journal opened for appending. Thread-safe; cheap to keep open for a process's life."""

    def __init__(
        self,
        directory: str,
        durability: str = "batch",
        lock_timeout: float = DEFAULT_TIMEOUT,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        root: str | None = None,
    ):
        """``root``: the directory the user named, which may be a symlink (default: the journal
        directory's parent). The directories below it are opened without following a link,
        and every file of the journal is opened relative to the journal directory's descriptor,
        so nothing is written through a link planted, or a directory swapped, after the open."""
        if durability not in DURABILITY_MODES:
            raise BadInput(f"durability must be one of {', '.join(DURABILITY_MODES)}, not {durability!r}")
        self.directory = directory
        self.durability = durability
        self.segment_bytes = segment_bytes
        try:
            self._dfd = open_dir_below(os.path.dirname(directory) if root is None else root, directory)
        except ValueError as e:  # a journal outside the root it was given: a caller's mistake
            raise BadInput(f"cannot open journal {directory}: {e}") from None
        except OSError as e:
            raise JournalWriteFailed(f"cannot open journal {directory} for writing: {e.strerror}") from None
        lock = None
        try:
            if not exists_at(self._dfd, HEAD):
                segments.create_head(self._dfd, HEAD)
            self._lock = lock = JournalLock(os.path.join(directory, LOCK), lock_timeout, dir_fd=self._dfd)
            self._head = Head(HEAD, dir_fd=self._dfd)
        except OSError as e:
            if lock is not None:
                lock.close()
            os.close(self._dfd)
            raise JournalWriteFailed(f"cannot open journal {directory} for writing: {e.strerror or e}") from None
        self._mutex = threading.Lock()
        self._commit = GroupCommit(directory, self._dfd)
        self._owe = 0  # the last sequence written but not yet made durable (0: none)
        self._owe_boundary = False  # ... and whether a boundary event is among what is owed
        self._fd: int | None = None
        self._segment = ""
        self._base = 0  # first sequence of the current segment
        self._end = 0
        self._crc = 0  # running CRC-32 of the current segment's bytes from its header to _end
        self._chained = False  # whether the current segment carries the hash chain (format 3)
        self._link = hashchain.GENESIS  # the hash chain at ``_link_at`` ...
        self._link_at = (0, 0)  # ... (segment base, offset): where this writer last wrote or read it
        self._last_seq = 0
        self._owner = int.from_bytes(os.urandom(8), "little") or 1  # this writer, in the head
        self._published: bytes | None = None  # the head's header as this writer last wrote it
        self._local: dict[str, int] = {}  # run sequences written since then
        self._unpublished = 0
        self._alone = 0  # appends in a row that found no other writer's work
        self._cut: list[TailRepaired] = []  # torn tails cut but not yet recorded in the journal
        self._spilled_here = False
        self._last_merge_check = 0.0
        self._spill_clock = 0
        self._spill_counter = 0
        self._valid_ids: set[str] = set()  # run ids already checked
        self._dirty = False
        self._last_sync = time.monotonic()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self.spills = 0
        self.head_rebuilds = 0  # the head found damaged and rebuilt from the segments
        #: torn tails this journal cut and recorded, until ``recover()`` hands them out
        self.repaired: list[TailRepaired] = []

    # -- public API -------------------------------------------------------------------

    def append(self, run_id: str, event: AnyEvent, expected_seq: int | None = None) -> Record:
        """Append one event; with ``expected_seq``, only if the run is at that sequence now.
        A run id the command line would refuse is ``InvalidId``, and nothing is written."""
        if not isinstance(event, Event):
            raise TypeError(f"not an event: {event!r}")
        if run_id not in self._valid_ids:
            self._check_id(run_id)
        ts = time.time_ns()
        if expected_seq is not None:
            return self._append(((run_id, event, ts),), {run_id: expected_seq})[0]
        # The common case, in as few steps as it can be: a writer appending where it left the
        # journal. The lock is free at once, the head is as this writer last published it and
        # the segment ends where it wrote last (nobody else wrote since), the run's sequence is
        # in hand, no spill is due to be merged, and the event fits the segment. Anything else
        # goes to ``_append``, with nothing written here.
        with self._mutex:
            rs = self._local.get(run_id)
            lock = self._lock
            if rs is not None and not self._spilled_here and lock.try_acquire():
                rec = None
                try:
                    start = self._end
                    if (
                        self._head.unchanged(self._published)
                        and os.lseek(self._fd, 0, os.SEEK_END) == start
                        and time.monotonic() - self._last_merge_check <= 1.0
                        and type(event) is not RunStarted  # ``_write`` applies its rule
                    ):
                        seq = self._last_seq + 1
                        rec = Record(seq, run_id, rs + 1, ts, event)
                        try:
                            payload = encoder.encode(rec)
                        except OverflowError:
                            rec = None  # ``_append`` says what is wrong
                        else:
                            if self._chained:
                                link = hashchain.link_payload(self._chain_at(start), [payload])[0]
                                data = encode_frame(payload, True) + fmt.encode_link(link)
                            else:
                                data = encode_frame(payload, False)
                            if start + len(data) > self.segment_bytes or len(payload) > MAX_PAYLOAD:
                                rec = None
                            else:
                                self._put(data, start, len(data))
                                self._end = start + len(data)
                                if self._chained:
                                    self._link, self._link_at = link, (self._base, self._end)
                                self._last_seq = seq
                                self._local[run_id] = rs + 1
                                self._alone += 1
                                self._unpublished += 1
                                if self._unpublished >= PUBLISH_EVERY or self._alone < ALONE_AFTER or event.boundary:
                                    self._publish()
                                if self.durability != "none":
                                    self._owe, self._owe_boundary = seq, self._owe_boundary or event.boundary
                finally:
                    lock.release()
                if rec is not None:
                    if self._owe:
                        self._settle()
                    return rec
        return self._append(((run_id, event, ts),), None)[0]

    def append_batch(self, items: Iterable[Item | tuple], expected: dict[str, int] | None = None) -> list[Record]:
        """Append events atomically (one lock, one write, one sync); return their records."""
        now = time.time_ns()
        batch = [Item(i[0], i[1], i[2] if len(i) > 2 and i[2] is not None else now) for i in items]
        if not batch:
            return []
        for it in batch:
            if not isinstance(it.event, Event):
                raise TypeError(f"not an event: {it.event!r}")
            if it.run_id not in self._valid_ids:
                self._check_id(it.run_id)
        return self._append(batch, expected)

    def append_records(self, records: Sequence[Record]) -> None:
        """``EventStore.append_records``: records of another journal of the same history, verbatim."""
        from .store import copy_chunks, runs_before

        for rec in records:
            if not isinstance(rec.event, Event):
                raise TypeError(f"not an event: {rec.event!r}")
            if rec.run_id != JOURNAL_RUN and rec.run_id not in self._valid_ids:
                self._check_id(rec.run_id)
        if not records:
            return
        with self._caught_up():
            for chunk in copy_chunks(records):
                if chunk[0].seq != self._last_seq + 1:
                    raise JournalMovedOn(os.path.basename(os.path.dirname(self.directory)), chunk[0].seq - 1, self._last_seq)
                written = self._write([(r.run_id, r.event, r.ts) for r in chunk], runs_before(chunk), origin=chunk[0].origin)
                if [(r.seq, r.run_seq) for r in written] != [(r.seq, r.run_seq) for r in chunk]:
                    raise JournalWriteFailed(f"records copied to {self.directory} took other sequences than they carry (a run's sequence skips)")

    def _check_id(self, run_id: str) -> None:
        """Run ids become paths of projection files: refuse what the CLI refuses (InvalidId)."""
        validate_run_id(run_id)
        if len(self._valid_ids) >= VALID_IDS_KEPT:
            self._valid_ids.clear()
        self._valid_ids.add(run_id)

    def _append(self, batch: Sequence[tuple], expected: dict[str, int] | None) -> list[Record]:
        """Under the lock: catch up, merge spills when due, write. Items are (run_id, event, ts)."""
        with self._mutex:
            if self._closed.is_set():
                raise JournalError(f"journal {self.directory} is closed")
            try:
                self._lock.acquire()
            except LockTimeout as e:
                if expected:
                    raise LockTimeout(f"{e}; nothing was written (an append with an expected sequence is never deferred)", None, e.holder_pid) from None
                try:
                    path = self._spill(batch)
                except OSError as spill_error:
                    raise LockTimeout(
                        f"{e}; the {len(batch)} event(s) could not be kept in {PENDING_DIR}/ either "
                        f"({spill_error.strerror or spill_error}): nothing was written, the caller still has them",
                        None,
                        e.holder_pid,
                    ) from None
                raise LockTimeout(
                    f"{e}; the {len(batch)} event(s) were kept in {path} and will be appended by the next lock holder",
                    path,
                    e.holder_pid,
                ) from None
            try:
                self._refresh()
                if self._spilled_here or expected or time.monotonic() - self._last_merge_check > 1.0:
                    self._merge_pending()
                records = self._write(batch, expected)
            finally:
                self._lock.release()
            if self._owe:
                self._settle()
            return records

    def record(self, event: Event, expected: dict[str, int] | None = None) -> Record:
        """Append a journal-level event (run id ``""``), such as an archive's ``runs_archived``;
        with ``expected``, only if each of those runs is at that sequence now."""
        return self._append(((JOURNAL_RUN, event, time.time_ns()),), expected)[0]

    def run_seq(self, run_id: str) -> int:
        """The run's current (last committed) sequence, 0 if the run has no events."""
        return self.run_seqs([run_id])[run_id]

    def run_seqs(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Current sequences of several runs, read under one lock (spills merged first)."""
        with self._caught_up():
            return {r: self._current(r) for r in run_ids}

    def flush(self) -> None:
        """Merge pending spills, if the lock is free, and make everything durable."""
        with self._caught_up():
            self._owe, self._owe_boundary = self._last_seq, True

    def recover(self) -> list[TailRepaired]:
        """Open for append once (cutting any torn tail, merging spills); return the repairs made."""
        with self._caught_up():
            done, self.repaired = self.repaired, []
            return done

    def quarantine(self) -> list[RegionQuarantined]:
        """Set every damaged region aside (``journal.quarantine``), then open for append as
        ``recover`` does and record each region; return them. NotQuarantinable, with nothing
        changed past what was already set aside, for damage a hole cannot stand for."""
        from . import quarantine  # a repair's: not imported by every writer
        with self._mutex:
            self._check_open()
            self._lock.acquire()
            try:
                done: list[RegionQuarantined] = []
                head = self._head.read()
                known_last = head[2] if head is not None else 0
                while (damage := quarantine.first_damage(self._dfd)) is not None:
                    if len(done) >= quarantine.MAX_REGIONS or any((r.segment, r.offset) == damage[:2] for r in done):
                        raise NotQuarantinable(f"{damage.segment} at byte {damage.start}: {damage.detail}")
                    done.append(quarantine.set_aside(self._dfd, damage, known_last))
                if done:
                    self._head.invalidate()  # the bytes under its running CRC changed: rebuilt below
                    self._published = None
                self._refresh()
                self._merge_pending()
                # every hole gets its record: those made now, and any a quarantine cut short made
                detail = {(r.segment, r.offset): r for r in done}
                told = [detail.get((r.segment, r.offset), r) for r in quarantine.unrecorded(self._dfd)]
                if told:
                    self._write([Item(JOURNAL_RUN, r, time.time_ns()) for r in told], None)
                    self._sync()
                return told
            finally:
                self._lock.release()

    def upgrade(self) -> tuple[str, bytes] | None:
        """Start storing the hash chain in a journal written before it had one (format 1):
        the chain is computed over every record so far, the current segment is sealed and the
        next one, chained, begins with that value (an empty current segment is replaced by a
        chained one instead). Nothing written before is rewritten: from here on the chain
        covers it, and ``verify`` checks it. (segment, chain value it begins with), or None if
        the journal stores the chain already."""
        with self._caught_up():
            if self._chained:
                return None
            value: bytes | None = hashchain.GENESIS
            for _, batch in chain.first_batches(self._dfd):
                if batch.__class__ is fmt.Hole:
                    value = None  # as ``verify`` reads it: judged again from the next link
                elif value is not None:
                    for _, payload in batch:
                        value = hashchain.step(value, payload)
            value = hashchain.GENESIS if value is None else value
            if self._end > fmt.HEADER_LEN:
                segments.seal(self._fd, self._segment, self._end)
                self._create_segment(self._last_seq + 1, value)
            else:
                self._create_segment(self._base, value)  # no record yet: replaced whole
            self._dirty = False
            self._publish()
            return self._segment, value

    @property
    def dir_fd(self) -> int:
        """The journal directory's descriptor (opened without following a link; see ``__init__``)."""
        return self._dfd

    @contextmanager
    def hold(self):
        """The journal's lock held and this writer caught up, for a change beside the appends
        (``journal.archive``: a segment leaving the live journal); the journal directory's
        descriptor. Appends from other processes wait meanwhile: keep it short."""
        with self._caught_up():
            yield self._dfd

    @contextmanager
    def _caught_up(self):
        """Hold the lock with the view caught up and pending spills merged."""
        with self._mutex:
            self._check_open()
            self._lock.acquire()
            try:
                self._refresh()
                self._merge_pending()
                yield
            finally:
                self._lock.release()
            if self._owe:
                self._settle()

    @property
    def lock_retries(self) -> int:
        return self._lock.retries

    @property
    def lock_timeouts(self) -> int:
        return self._lock.timeouts

    def close(self) -> None:
        """Close; a process that spilled tries (within the lock timeout) to merge its spills first."""
        if self._spilled_here and not self._closed.is_set():
            try:
                self.flush()
            except (LockTimeout, JournalError, OSError):
                pass  # the spills stay in pending/ for the next writer or `verify --repair`
        with self._mutex:
            if self._closed.is_set():
                return
            self._closed.set()
            try:
                if self._fd is not None and self._dirty and self.durability != "none":
                    os.fdatasync(self._fd)  # an error here is the caller's to see, after everything is closed
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._head.close()
                self._lock.close()
                self._commit.close()
                os.close(self._dfd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- under the lock -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise JournalError(f"journal {self.directory} is closed")

    def _refresh(self) -> None:
        """Catch the in-memory view up with what other writers did, from the head (O(1)).
        Damage met on the way is JournalDamaged, and nothing is written."""
        if self._head.unchanged(self._published) and os.lseek(self._fd, 0, os.SEEK_END) == self._end:
            self._alone += 1
            return  # this writer was the last one: the common case, about a microsecond
        try:
            self._catch_up()
        except CorruptRecord as e:
            if self._fd is not None:  # the next append checks again, as at open, until the damage is set aside
                os.close(self._fd)
                self._fd, self._segment, self._base = None, "", 0
            self._published = None
            if isinstance(e, JournalDamaged):
                raise
            raise JournalDamaged(e.segment, e.offset, e.detail) from None

    def _catch_up(self) -> None:
        h = self._head.read()
        if h is None:
            # another writer may have grown the table into a new file (the old one is marked, so
            # it reads as not checking): looked for only then, not on every contended append
            try:
                if self._head.replaced():
                    self._head.reopen()
                    h = self._head.read()
            except OSError as e:
                raise JournalWriteFailed(f"cannot open the head of journal {self.directory}: {e.strerror or e}; nothing was written") from None
        self._alone = 0
        self._local.clear()  # someone else wrote, and folded what this writer left unpublished
        if h is None or (self._fd is None and not self._head.valid_for_this_boot()) or not self._adopt(*h[:3]):
            self._rebuild()
        if self._cut:
            # record the repair at once, in its own batch, whatever the caller does next
            cut, self._cut = self._cut, []
            self._write([Item(JOURNAL_RUN, r, time.time_ns()) for r in cut], None)
            self.repaired.extend(cut)
        # No publish here: the head already shows what was adopted (a scan or a rebuild
        # published its own view), and this writer's next write publishes, since it is no
        # longer alone. Should it die between that write and the publish, the next writer
        # sees the segment longer than the head says (the lseek above) and scans it.

    def _adopt(self, base: int, end: int, last: int) -> bool:
        """Take the head's view; scan forward if a writer died after writing but before publishing.

        False if the head does not match the segments (then everything is rescanned). A writer
        opening the journal also checks the current segment's bytes against the head's running
        CRC: damage to records already written is found before anything is appended after it."""
        opening = self._fd is None
        if base != self._base or self._fd is None:
            try:
                self._open_segment(fmt.segment_name(base), base)
            except (FileNotFoundError, CorruptRecord):
                return False
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size < end or end < fmt.HEADER_LEN or (size > end and not fmt.frame_starts(self._fd, end)):
            return False
        self._end, self._last_seq = end, last
        crc = self._head.segment_crc(base, end)
        self._crc = self._checked_crc(crc) if crc is None or opening else crc
        if size > self._end:
            self._scan_current()
            self._publish()
        return True

    def _rebuild(self) -> None:
        """Rebuild the head from every segment: first open, a reboot, or a head that does not match."""
        try:
            if self._head.replaced():
                self._head.reopen()
            self._head.reserve()  # see segments.create_head
        except OSError as e:
            raise JournalWriteFailed(f"cannot prepare journal {self.directory} for writing: {e.strerror}; nothing was recorded") from None
        self._head.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._segment = None, ""
        first = chain.start(self._dfd)  # CorruptRecord if the journal lost its start
        if first is None:  # a new journal: chained from its first record
            self._last_seq = 0
            self._create_segment(1, hashchain.GENESIS)
            self._publish()
            return
        base, name = first
        self._last_seq = base - 1  # 0, or the last sequence archived before the live journal
        self._open_segment(name, base)
        self._scan_current()
        stray = [n for b, n in chain.segments(self._dfd) if b > self._last_seq + 1 or (b > base and n > self._segment)]
        if stray:
            raise CorruptRecord(stray[0], 0, f"segment is not reachable from {self._segment}, which ends at sequence {self._last_seq}")
        self._publish()

    def _publish(self) -> None:
        """Put this writer's view in the head: its runs' sequences in the table, then the end."""
        store = self._head.store
        for run_id, rs in self._local.items():
            store(run_id, rs, self._last_seq)
        self._local.clear()
        self._unpublished = 0
        self._published = self._head.write(self._base, self._end, self._last_seq, self._owner, self._crc)

    def _checked_crc(self, expected: int | None) -> int:
        """The CRC-32 of the current segment up to ``_end``, read from the file. Where it is
        not ``expected`` (the bytes changed since they were written, or the head had no CRC for
        this end), the records themselves are read: CorruptRecord names the damage. (Damage a
        reader takes for a torn tail, a last batch that does not check, is treated as one: the
        view stops before it, and the scan that follows cuts it, as after a crash.)"""
        crc = _crc_of(self._fd, HEADER_LEN, self._end, 0)
        if crc != expected and self._check_records():
            crc = _crc_of(self._fd, HEADER_LEN, self._end, 0)
        return crc

    def _check_records(self) -> bool:
        """Read the current segment's records up to ``_end``, checking frames and sequences;
        True if they stop at a tail before it (``_end`` and ``_last_seq`` are set back to it)."""
        end = self._end
        seq, reached = self._base - 1, HEADER_LEN
        scanner = fmt.SegmentScanner(self._fd, self._segment, HEADER_LEN)
        for batch in scanner.batches():
            start = batch.offset if batch.__class__ is fmt.Hole else batch[0][0]
            if start >= end:
                reached = start  # (only links lie between the last batch and this one)
                break  # past the end the head gave: read by the scan that follows
            if batch.__class__ is fmt.Hole:
                seq = fmt.hole_fits(batch, seq + 1, self._segment) - 1
            for off, payload in batch:
                seq += 1
                try:
                    head = head_decoder.decode(payload)
                except DECODE_ERRORS as e:
                    raise CorruptRecord(self._segment, off, f"record does not decode: {why_undecodable(payload, e)}") from None
                if head.seq != seq:
                    raise CorruptRecord(self._segment, off, f"sequence {head.seq} where {seq} was expected")
            reached = scanner.offset
        else:
            reached = scanner.offset
            if scanner.end.state == "tail" and reached == scanner.end.offset and reached < end:
                self._end, self._last_seq = reached, seq
                return True
        if reached != end or seq != self._last_seq:
            raise CorruptRecord(self._segment, reached, "the committed records do not end where the journal's end was last written")
        return False

    def _current(self, run_id: str) -> int:
        """A run's last sequence: from what this writer wrote since it last published, or from
        the head's table (rebuilt from the segments first if it does not check; read from the
        segments only if the table could not grow once and so may have lost the run)."""
        seq = self._local.get(run_id)
        if seq is not None:
            return seq
        try:
            seq = self._head.lookup(run_id, self._last_seq)
        except HeadDamaged:  # a checksum of the head failed: nothing it says is used
            self.head_rebuilds += 1
            self._rebuild()
            seq = self._local.get(run_id)
            if seq is None:
                seq = self._head.lookup(run_id, self._last_seq)
        if seq is None:
            seq = 0
            for head in self._heads_from_start():
                if head.run_id == run_id:
                    seq = head.run_seq
            self._head.store(run_id, seq, self._last_seq)
        return seq

    def _heads_from_start(self):
        for name, batch in chain.first_batches(self._dfd):
            for off, payload in batch:
                try:
                    yield head_decoder.decode(payload)
                except DECODE_ERRORS as e:
                    raise CorruptRecord(name, off, f"record does not decode: {why_undecodable(payload, e)}") from None

    def _open_segment(self, name: str, base: int) -> None:
        fd, chained = segments.open_for_append(self._dfd, name, base)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._segment, self._base, self._chained = fd, name, base, chained
        self._end, self._crc = fmt.HEADER_LEN, 0

    def _scan_current(self) -> None:
        """Read batches past ``_end``, following seals into later segments; record run sequences."""
        found: dict[str, tuple[int, int]] = {}
        try:
            while True:
                scanner = fmt.SegmentScanner(self._fd, self._segment, self._end)
                seq = self._last_seq
                for batch in scanner.batches():
                    if batch.__class__ is fmt.Hole:
                        seq = fmt.hole_fits(batch, seq + 1, self._segment) - 1
                    for off, payload in batch:
                        try:
                            head = head_decoder.decode(payload)
                        except DECODE_ERRORS as e:
                            raise CorruptRecord(self._segment, off, f"record does not decode: {why_undecodable(payload, e)}") from None
                        seq += 1
                        if head.seq != seq:
                            raise CorruptRecord(self._segment, off, f"sequence {head.seq} where {seq} was expected")
                        found[head.run_id] = (head.run_seq, seq)
                self._last_seq = seq
                end = scanner.end
                if end.state != "sealed":  # the segment stays current: its CRC runs on
                    self._crc = _crc_of(self._fd, self._end, scanner.offset, self._crc)
                self._end = scanner.offset
                if end.state == "tail":
                    following = chain.later(self._dfd, self._segment)
                    if following:
                        raise chain.tail_after(self._segment, end, following)
                    self._cut_tail(end.offset, end.detail)
                    return
                if end.state == "open":
                    return
                # sealed: continue in the next segment, creating it if its creator crashed first
                nxt = chain.after_seal(self._segment, end, self._last_seq + 1)
                if exists_at(self._dfd, nxt):
                    self._open_segment(nxt, self._last_seq + 1)
                else:
                    self._create_segment(self._last_seq + 1, scanner.link if self._chained else None)
                    return
        finally:
            store = self._head.store
            for run_id, (run_seq, seq) in found.items():
                store(run_id, run_seq, seq)

    def _cut_tail(self, offset: int, detail: str) -> None:
        """Cut a crashed writer's unfinished batch off the segment, keeping a copy."""
        self._cut.append(segments.cut_tail(self._dfd, self._fd, self._segment, offset))
        self._end = offset
        self._head.forget_synced()  # the sequences cut off are to be written again

    def _create_segment(self, base: int, chain_in: bytes | None) -> None:
        """Start the segment based at ``base``: chained, beginning at ``chain_in``, unless that is None."""
        try:
            fd = segments.create(self._dfd, base, chain_in)
        except JournalWriteFailed as e:
            raise JournalWriteFailed(f"{e} (in {self.directory})") from None
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._segment, self._base = fd, fmt.segment_name(base), base
        self._end, self._crc, self._chained = fmt.HEADER_LEN, 0, chain_in is not None
        if chain_in is not None:
            frame = fmt.encode_link(chain_in)
            self._end, self._crc = fmt.HEADER_LEN + len(frame), zlib.crc32(frame)
            self._link, self._link_at = chain_in, (base, self._end)

    def _roll(self) -> None:
        """Seal the current segment (durably) and start the next one, chained if this one is."""
        chain_in = self._chain_at(self._end) if self._chained else None
        segments.seal(self._fd, self._segment, self._end)
        self._create_segment(self._last_seq + 1, chain_in)
        self._dirty = False

    def _first_frame(self) -> int:
        """Where the current segment's first record goes: after its header, and its starting link."""
        return fmt.HEADER_LEN + fmt.FRAME_LEN + hashchain.SIZE if self._chained else fmt.HEADER_LEN

    def _chain_at(self, end: int) -> bytes:
        """The hash chain at ``end``, a batch boundary of the current (chained) segment: known
        if this writer wrote or read it last, else the last bytes of the link frame ending there."""
        if self._link_at == (self._base, end):
            return self._link
        if end < self._first_frame():
            raise JournalDamaged(self._segment, end, "chained segment without the link it starts with")
        link = os.pread(self._fd, hashchain.SIZE, end - hashchain.SIZE)
        if len(link) != hashchain.SIZE:
            raise JournalDamaged(self._segment, end, "chained segment ends before its last link")
        self._link, self._link_at = link, (self._base, end)
        return link

    def _write(self, batch: Sequence[Item], expected: dict[str, int] | None, origin: str | None = None) -> list[Record]:
        if expected:
            for run_id, want in expected.items():
                have = self._current(run_id)
                if have != want:
                    raise SequenceConflict(run_id, want, have)
        seq = self._last_seq
        if len(batch) == 1 and origin is None:  # the common case, kept short
            run_id, event, ts = batch[0]
            rs = self._local.get(run_id)
            rs = (self._current(run_id) if rs is None else rs) + 1
            if rs != 1 and type(event) is RunStarted:
                raise started_twice(run_id, rs)
            seq += 1
            rec = Record(seq, run_id, rs, ts, event)
            records, next_run, boundary = [rec], None, event.boundary
            try:
                payload = encoder.encode(rec)
            except OverflowError:
                raise _out_of_range(records) from None
            if len(payload) > MAX_PAYLOAD:
                raise BadInput(f"an event of {len(payload)} bytes is larger than the journal's limit of {MAX_PAYLOAD}")
            payloads = [payload]
            data = None if self._chained else encode_frame(payload, False)
        else:
            records = []
            next_run: dict[str, int] = {}
            boundary = False
            for run_id, event, ts in batch:
                seq += 1
                rs = next_run.get(run_id) or self._current(run_id)
                rs += 1
                if rs != 1 and type(event) is RunStarted:
                    raise started_twice(run_id, rs)
                next_run[run_id] = rs
                records.append(Record(seq, run_id, rs, ts, event, origin if not records else None))
                boundary = boundary or event.boundary
            try:
                payloads = [encoder.encode(r) for r in records]
            except OverflowError:
                raise _out_of_range(records) from None
            if max(map(len, payloads)) > fmt.MAX_PAYLOAD:
                raise BadInput(f"an event is larger than the journal's limit of {fmt.MAX_PAYLOAD} bytes; nothing was written")
            data = None if self._chained else fmt.encode_batch(payloads)
        start = self._end
        if data is None:  # a chained segment: the batch ends with its link
            size = sum(map(len, payloads)) + fmt.FRAME_LEN * (len(payloads) + 1) + hashchain.link_size(len(payloads))
        else:
            size = len(data)
        if start > self._first_frame() and start + size > self.segment_bytes:
            self._roll()
            start = self._end
        if self._chained:
            link, chained = hashchain.link_payload(self._chain_at(start), payloads)
            data = fmt.encode_linked_batch(payloads, link)
            self._put(data, start, size)
            self._link, self._link_at = chained, (self._base, start + size)
        else:  # (a roll keeps the segment's kind: ``data`` is as the new segment needs it)
            self._put(data, start, size)
        self._end = start + size
        self._last_seq = seq
        # While this writer has been the only one for a while, the head is brought up to date
        # only every PUBLISH_EVERY appends: another writer that finds it behind reads the few
        # records past it (as after a crash), so nothing depends on publishing every time.
        # Under contention every append publishes, so the next writer has nothing to read.
        if next_run is None:
            self._local[run_id] = rs
        else:
            self._local.update(next_run)
        self._unpublished += 1
        if self._unpublished >= PUBLISH_EVERY or boundary or self._alone < ALONE_AFTER:
            self._publish()
        if self.durability != "none":  # made durable once the lock is let go (``_settle``)
            self._owe, self._owe_boundary = seq, self._owe_boundary or boundary
        return records

    def _put(self, data: bytes, start: int, size: int) -> None:
        """Write a frame or batch at ``start``, the segment's end: all of it, or nothing and JournalWriteFailed."""
        try:
            n = os.write(self._fd, data)
            if n != size:
                write_all(self._fd, data[n:])  # finishes, or the OS says why not (ENOSPC, EFBIG)
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # the next lock holder cuts it as a torn tail
            raise JournalWriteFailed(
                f"cannot append to {os.path.join(self.directory, self._segment)}: {e.strerror or e}; "
                "nothing from this append was recorded"
            ) from None
        self._crc = zlib.crc32(data, self._crc)

    def _settle(self) -> None:
        """After the lock is let go, with the mutex held: make what this writer wrote durable
        now (``always``, a boundary event, a sync a second old, ``flush``), sharing the
        fdatasync with other writers (``journal.commit``), or leave it to the flusher."""
        seq, boundary = self._owe, self._owe_boundary
        self._owe, self._owe_boundary = 0, False
        if self.durability == "always" or boundary or time.monotonic() - self._last_sync >= BATCH_SYNC_INTERVAL:
            self._commit.durable(self._head, self._fd, seq, self._base)
            self._dirty = False
            self._last_sync = time.monotonic()
        else:
            self._dirty = True
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="runjournal-flush", daemon=True)
                self._flusher.start()

    def _sync(self) -> None:
        """Under the lock, where an order on disk matters (a spill merged, a hole recorded)."""
        if self._fd is not None:
            os.fdatasync(self._fd)
            self._head.mark_synced(self._last_seq)
        self._dirty = False
        self._owe, self._owe_boundary = 0, False
        self._last_sync = time.monotonic()

    def _flush_loop(self) -> None:
        # batch durability: nothing stays unsynced for much longer than a second. No mutex:
        # an append waiting for a busy lock holds it, and must not hold this sync back
        while not self._closed.wait(BATCH_SYNC_INTERVAL):
            fd = self._fd
            if self._dirty and fd is not None:
                self._dirty = False  # an append after this point marks it again
                try:
                    os.fdatasync(fd)
                    self._last_sync = time.monotonic()
                except OSError:
                    self._dirty = True  # closed under us (then synced by close) or failing: next tick

    # -- pending (spilled) batches -----------------------------------------------------

    def _spill(self, batch: Sequence[Item]) -> str:
        """Keep a batch the lock would not take, durably, for the next lock holder to merge."""
        try:
            payloads = spill.encode(batch)
        except OverflowError:
            raise _out_of_range([spill.Spilled(run_id, ts, event) for run_id, event, ts in batch]) from None
        self._spill_clock = max(self._spill_clock + 1, time.time_ns())
        self._spill_counter += 1
        kept = spill.write(self._dfd, f"{self._spill_clock:020d}-{os.getpid()}-{self._spill_counter:06d}.rjp", payloads)
        self._spilled_here = True
        self.spills += 1
        return os.path.join(self.directory, kept)

    def _merge_pending(self) -> None:
        """Append every spilled batch, oldest first (under the lock, before this writer's own)."""
        try:
            self._merge_spills()
        except OSError as e:  # pending/ made a link, or unreadable: say where, as for any write
            where = f"{e.filename}: " if e.filename else ""
            raise JournalWriteFailed(
                f"cannot merge the spilled batches of journal {self.directory} ({where}{e.strerror or e}); nothing more was written"
            ) from None

    def _merge_spills(self) -> None:
        self._last_merge_check = time.monotonic()
        names = spill.names(self._dfd)
        for name in names:
            if name.endswith(".merging"):  # a merge that died: its batch may be in already
                self._finish_merge(name, maybe_merged=True)
        for name in names:
            if name.endswith(".rjp"):
                spill.rename(self._dfd, name, name + ".merging")
                self._finish_merge(name + ".merging", maybe_merged=False)
        self._spilled_here = False

    def _finish_merge(self, name: str, maybe_merged: bool) -> None:
        """Append one pending file's events, unless a crash left them already appended."""
        origin = name.removesuffix(".merging")
        if spill.foreign(self._dfd, name):
            spill.set_aside(self._dfd, name, "foreign")
            return
        if maybe_merged and spill.merged_before(self._dfd, origin):
            spill.remove(self._dfd, name)
            return
        try:
            items = [Item(*item) for item in spill.read(self._dfd, name)]
        except CorruptRecord:
            spill.set_aside(self._dfd, name)
            return
        try:
            self._write(items, None, origin=origin)
        except HistoryViolation:
            spill.set_aside(self._dfd, name, "refused")
            return
        self._sync()
        spill.remove(self._dfd, name)


def _crc_of(fd: int, start: int, stop: int, crc: int) -> int:
    """``crc`` run on over the bytes of ``fd`` from ``start`` to ``stop``."""
    while start < stop:
        chunk = os.pread(fd, min(fmt.READ_CHUNK, stop - start), start)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc


def _out_of_range(items: Sequence[msgspec.Struct]) -> BadInput:
    """The error for a batch the encoder refused with OverflowError: which integer, and where."""
    for i, item in enumerate(items):
        found = int_out_of_range(item)
        if found is not None:
            where = f"event {i + 1} of {len(items)}: " if len(items) > 1 else ""
            return BadInput(f"{where}{found}; nothing was written")
    return BadInput("an event holds an integer msgpack cannot hold (outside 64 bits); nothing was written")
