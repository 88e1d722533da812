"""The file store: one journal directory per task under a runs directory (the embedded default).

``<runs>/<task>/journal/`` holds the segments, lock and head (docs/journal-format.md).
A task's writer (``Journal``) is opened on its first append and kept open; reads use the
lock-free reader and never create anything, so they work on a journal the user can only
read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

from . import archive, chain, seek
from . import format as fmt
from .verify import Report, check, repair
from .errors import BadInput, CorruptRecord, JournalNotFound
from .events import DECODE_ERRORS, AnyEvent, Record, head_decoder
from .lock import DEFAULT_TIMEOUT
from .naming import validate_task_id
from .reader import JournalReader, Position, chained_records, decode_record
from .store import ArchiveUnit, EventStore, Reading, Subscription, WriterStats
from .writer import Journal

JOURNAL_DIR = "journal"
#: how often ``wait`` looks at the newest segment
WAIT_POLL = 0.02
#: bytes read to look at one batch (a hint's, the first record's) instead of a scan's 1 MiB
LOOK_CHUNK = seek.LOOK_CHUNK


class FileStore(EventStore):
    """Task journals under ``runs_dir``. Thread-safe; keep one for a process's life."""

    def __init__(
        self, runs_dir: str, durability: str = "batch", lock_timeout: float | None = None, root: str | None = None, segment_bytes: int | None = None
    ):
        """``root``: the directory the user named that holds ``runs_dir`` (default: the runs
        dir itself); below it, no journal is written through a link. ``segment_bytes``: where
        a segment is sealed and the next begun (the writer's default if None); also the unit
        of an archive."""
        self.segment_bytes = segment_bytes
        self.url = self.runs_dir = runs_dir
        self.root = runs_dir if root is None else root
        self.durability = durability
        self.lock_timeout = DEFAULT_TIMEOUT if lock_timeout is None else lock_timeout
        self._writers: dict[str, Journal] = {}
        self._mutex = threading.Lock()
        #: journal dir -> (next sequence, segment, offset) where a read of it last reached the end
        self._ends: dict[str, tuple[int, str, int]] = {}

    def journal_dir(self, task: str) -> str:
        """Where a task's journal is (the task id validated first: it becomes a path)."""
        return os.path.join(self.runs_dir, validate_task_id(task), JOURNAL_DIR)

    def writer(self, task: str) -> Journal:
        """The task's open writer (opened, and the journal created, on first use)."""
        journal = self._writers.get(task)  # the common case: one dict lookup, no lock
        if journal is not None:
            return journal
        with self._mutex:
            journal = self._writers.get(task)
            if journal is None:
                # below the runs dir, nothing is followed through a link (Journal's root)
                sized = {} if self.segment_bytes is None else {"segment_bytes": self.segment_bytes}
                journal = Journal(self.journal_dir(task), durability=self.durability, lock_timeout=self.lock_timeout, root=self.root, **sized)
                self._writers[task] = journal
            return journal

    # -- writing ------------------------------------------------------------------------

    def append(self, task: str, run_id: str, event: AnyEvent, expected_seq: int | None = None) -> Record:
        journal = self._writers.get(task) or self.writer(task)
        return journal.append(run_id, event, expected_seq)

    def append_batch(self, task: str, items: Iterable, expected: dict[str, int] | None = None) -> list[Record]:
        journal = self._writers.get(task) or self.writer(task)
        return journal.append_batch(items, expected)

    def record(self, task: str, event: AnyEvent, expected: dict[str, int] | None = None) -> Record:
        return self.writer(task).record(event, expected)

    def append_records(self, task: str, records) -> None:
        journal = self._writers.get(task) or self.writer(task)
        journal.append_records(records)

    def prepare(self, task: str) -> None:
        self.writer(task)

    def flush(self, task: str) -> None:
        self.writer(task).flush()

    # -- reading ------------------------------------------------------------------------

    def tasks(self) -> list[str]:
        try:
            names = os.listdir(self.runs_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in sorted(names):
            try:
                if os.path.isdir(self.journal_dir(name)) and not os.path.islink(os.path.join(self.runs_dir, name)):
                    found.append(name)
            except BadInput:  # not a valid task id: made by hand, it cannot be named with --task either
                continue
        return found

    def where(self, task: str) -> str:
        return self.journal_dir(task)

    def last_seq(self, task: str) -> int:
        # the newest segment's base and its committed frames: framing only, nothing decoded
        directory = self.journal_dir(task)
        if not os.path.isdir(directory):
            return 0
        found = chain.segments(directory)
        if not found:
            return 0
        base, name = found[-1]
        fd, _ = fmt.open_segment(directory, name)  # a FIFO named like a segment is an error, never a hang
        try:
            last = base - 1
            for batch in fmt.SegmentScanner(fd, name, fmt.HEADER_LEN).batches():
                last = batch.next - 1 if batch.__class__ is fmt.Hole else last + len(batch)
            return last
        finally:
            os.close(fd)

    def exists(self, task: str) -> bool:
        return os.path.isdir(self.journal_dir(task))

    def run_seq(self, task: str, run_id: str) -> int:
        return self.writer(task).run_seq(run_id)

    def run_seqs(self, task: str, run_ids: Iterable[str]) -> dict[str, int]:
        return self.writer(task).run_seqs(run_ids)

    def records(self, task: str, from_seq: int = 1, hint: str | None = None) -> Reading:
        directory = self.journal_dir(task)
        return _FileReading(directory, from_seq, hint, lambda end: self._ends.__setitem__(directory, end))

    def first_at(self, task: str, ts: int) -> int | None:
        return seek.first_at(self.journal_dir(task), ts)  # segments by their first record, then one walked

    def identity(self, task: str) -> str | None:
        # the first record's run id and time: read with one small read of the first segment
        directory = self.journal_dir(task)
        if not os.path.isdir(directory):
            return None
        archived = archive.manifest(directory).identity  # its first segment archived: kept there
        if archived:
            return archived
        first = chain.start(directory)
        if first is None:
            return ""
        name = first[1]
        try:
            fd, _ = fmt.open_segment(directory, name)
        except FileNotFoundError:
            return ""
        try:
            first = next((b for b in fmt.SegmentScanner(fd, name, fmt.HEADER_LEN, chunk=LOOK_CHUNK).batches() if b), None)
        finally:
            os.close(fd)
        if not first:
            return ""
        offset, payload = first[0]
        rec = decode_record(payload, name, offset)
        return f"{rec.run_id}@{rec.ts}"

    def wait(self, task: str, after_seq: int, timeout: float) -> bool:
        # Every commit grows the newest segment (or makes a new one). Where a read of this
        # store last reached the end is known, so waiting costs a listing and a stat, not a
        # read; only a wait on a place no read has reached starts with one.
        directory = self.journal_dir(task)
        end = self._ends.get(directory)
        if end is None or end[0] != after_seq + 1:
            if next(self.records(task, after_seq + 1), None) is not None:
                return True
            end = self._ends.get(directory)
        deadline = time.monotonic() + timeout
        while not _grown_past(directory, end):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(WAIT_POLL, left))
        return True

    def subscribe(
        self,
        on_change: Callable[[str], None],
        task: str | None = None,
        poll: float | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Subscription:
        from .files_watch import FileSubscription  # imports watchdog: only a live daemon needs it

        return FileSubscription(self, on_change, task, poll, warn)

    # -- checking -----------------------------------------------------------------------

    def check(self, task: str, pins: dict[int, bytes] | None = None) -> Report:
        return check(self.journal_dir(task), pins)

    def upgrade(self, task: str) -> tuple[str, bytes] | None:
        return self.writer(task).upgrade()

    def archive(self, task: str, before_seq: int, runs: set[str]) -> list[ArchiveUnit]:
        return [_unit(e) for e in archive.move(self.writer(task), before_seq, runs)]

    def archive_units(self, task: str) -> list[ArchiveUnit]:
        directory = self.journal_dir(task)
        if not os.path.isdir(directory):
            return []
        return [_unit(e) for e in archive.manifest(directory).segments]

    def prune_archive(self, task: str, names: set[str]) -> None:
        archive.prune(self.writer(task), names)

    def archived_records(self, task: str, runs: set[str]):
        return archive.records(self.journal_dir(task), runs)

    def chained_records(self, task: str):
        directory = self.journal_dir(task)
        if not os.path.isdir(directory):
            raise JournalNotFound(f"no journal for task {task} at {directory}")
        return chained_records(directory)

    def repair(self, task: str, quarantine: bool = False) -> Report:
        return repair(self.journal_dir(task), root=self.root, quarantine=quarantine)

    def writer_stats(self, task: str) -> WriterStats:
        journal = self._writers.get(task)
        if journal is None:
            return WriterStats()
        return WriterStats(journal.lock_retries, journal.lock_timeouts, journal.spills)

    def close(self) -> None:
        with self._mutex:
            writers, self._writers = list(self._writers.values()), {}
        for journal in writers:
            journal.close()


def _unit(entry: archive.Entry) -> ArchiveUnit:
    return ArchiveUnit(entry.segment, entry.base, entry.last, tuple(entry.runs), entry.bytes, entry.file_bytes, entry.pruned)


class _FileReading(Reading):
    """A lock-free read of one journal; ``hint`` is ``segment:offset`` after the last record."""

    def __init__(self, directory: str, from_seq: int, hint: str | None, at_end: Callable[[tuple[int, str, int]], None]):
        self._reader = JournalReader(directory)
        start = _position(directory, from_seq, hint)
        self._records = self._through(self._reader.records(start, start_seq=from_seq), at_end)

    def _through(self, records, at_end):
        yield from records  # delegated in C: a loop over the reading costs what the reader does
        pos = self._reader.position
        if pos.segment:
            at_end((pos.next_seq, pos.segment, pos.offset))

    def __iter__(self):
        return self._records

    def __next__(self) -> Record:
        return next(self._records)

    @property
    def hint(self) -> str | None:
        pos = self._reader.position
        return f"{pos.segment}:{pos.offset}" if pos.segment else None


def _position(directory: str, from_seq: int, hint: str | None) -> Position | None:
    """The reader's start from a hint, if it still fits: the segment is there, the offset is
    inside it, and the record there (if one is there yet) carries ``from_seq``."""
    if not hint:
        return None
    segment, _, offset_text = hint.rpartition(":")
    base = fmt.segment_base(segment)
    if base is None or not offset_text.isdigit() or base > from_seq:
        return None
    offset = int(offset_text)
    try:
        fd, size = fmt.open_segment(directory, segment)
    except (OSError, CorruptRecord):
        return None
    try:
        if offset < fmt.HEADER_LEN or offset > size:
            return None
        first = next(iter(fmt.SegmentScanner(fd, segment, offset, chunk=LOOK_CHUNK).batches()), None)
        if first.__class__ is fmt.Hole:
            return None  # a region set aside: the reader starts before it
        if first:
            try:
                if head_decoder.decode(first[0][1]).seq != from_seq:
                    return None
            except DECODE_ERRORS:  # damage there: the hint does not fit; the reader will say what is wrong
                return None
        elif offset == fmt.HEADER_LEN and base != from_seq:
            return None
    except CorruptRecord:
        return None
    finally:
        os.close(fd)
    return Position(segment, offset, from_seq)


def _grown_past(directory: str, end: tuple[int, str, int] | None) -> bool:
    """Whether the journal has bytes past where a read reached the end (None: it had no segment)."""
    try:
        found = chain.segments(directory)
    except FileNotFoundError:
        return False
    if not found:
        return False
    if end is None:
        return True
    _, segment, offset = end
    newest = found[-1][1]
    if newest != segment:
        return newest > segment
    try:
        return os.stat(os.path.join(directory, segment)).st_size > offset
    except OSError:
        return False
