"""Lock-free readers: iterate committed records, resume from a position, follow the tail.

A reader never takes the lock. It yields only complete, checksummed batches and stops
quietly at an unfinished one (a writer is in the middle of it, or crashed: the next
writer cuts it). Damage with data after it raises CorruptRecord with segment and offset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import NamedTuple

from . import archive, chain, seek
from . import format as fmt
from .errors import CorruptRecord, JournalNotFound, UnknownEventType
from .events import DECODE_ERRORS, Record, record_decoder, unknown_type_of, why_undecodable


class Position(NamedTuple):
    """Where a reader stands: the next frame to read and the sequence it will carry."""

    segment: str
    offset: int
    next_seq: int


class JournalReader:
    """Reads a journal directory without locking. ``position`` is just after the last record yielded."""

    def __init__(self, directory: str):
        if not os.path.isdir(directory):
            raise JournalNotFound(f"no journal at {directory}")
        self.directory = directory
        self._segment = ""
        self._offset = 0
        self._next_seq = 1

    @property
    def position(self) -> Position:
        return Position(self._segment, self._offset, self._next_seq)

    def records(self, start: Position | None = None, start_seq: int = 1) -> Iterator[Record]:
        """Committed records from ``start`` (or from ``start_seq``) to the current end."""
        if start is not None and start.segment:
            segment, offset, next_seq = start
            skip_to = next_seq
        else:
            found = seek.position(self.directory, start_seq)  # the segment by name, the batch by its frames
            if found is None:
                return
            segment, offset, next_seq = found
            if 1 < start_seq < next_seq:  # a cursor in records archived since: read them from there
                entry = archive.holding(self.directory, start_seq)
                if entry is not None:
                    segment, offset, next_seq = entry.segment, fmt.HEADER_LEN, entry.base
            skip_to = max(start_seq, next_seq)
        self._segment, self._offset, self._next_seq = segment, offset, next_seq
        looked_again = False
        while True:
            try:
                fd, _ = fmt.open_segment(self.directory, segment)
            except FileNotFoundError:
                fd = archive.open_archived(self.directory, segment)  # archived since: read from there
                if fd is None:
                    if start is not None and segment == start.segment:
                        raise CorruptRecord(segment, offset, "segment to resume from no longer exists") from None
                    return
            try:
                header = fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), segment)
                if offset == fmt.HEADER_LEN and header.base_seq != next_seq:
                    raise CorruptRecord(segment, 0, f"segment starts at sequence {header.base_seq}, expected {next_seq}")
                scanner = fmt.SegmentScanner(fd, segment, offset)
                decode = record_decoder.decode
                frame_len = fmt.FRAME_LEN
                for batch in scanner.batches():
                    if batch.__class__ is fmt.Hole:  # a region set aside: its sequences are gone
                        next_seq = fmt.hole_fits(batch, next_seq, segment)
                        self._offset, self._next_seq = batch.offset + batch.size, next_seq
                    for off, payload in batch:
                        seq = next_seq
                        next_seq += 1
                        self._offset = off + frame_len + len(payload)
                        self._next_seq = next_seq
                        if seq < skip_to:
                            continue
                        try:
                            rec = decode(payload)
                        except DECODE_ERRORS:
                            rec = decode_record(payload, segment, off)  # raises, naming what is wrong
                        if rec.seq != seq:
                            raise CorruptRecord(segment, off, f"sequence {rec.seq} where {seq} was expected")
                        yield rec
                    self._offset = scanner.offset  # past the batch's link, if it has one
                end = scanner.end
            finally:
                os.close(fd)
            if end.state == "tail":
                following = chain.later(self.directory, segment)
                if following:  # a tail is only ever at the end of the newest segment ...
                    if not looked_again:
                        # ... but it may have been a batch being written, finished and sealed since,
                        # and the next segment created: what this scan saw is not final; look again
                        looked_again = True
                        offset = scanner.offset
                        continue
                    raise chain.tail_after(segment, end, following)
            if end.state != "sealed":
                return
            nxt = chain.after_seal(segment, end, next_seq)
            if not os.path.exists(os.path.join(self.directory, nxt)) and nxt not in archive.held(self.directory):
                return  # (one archived since this read began is read from the archive)
            segment, offset, looked_again = nxt, fmt.HEADER_LEN, False
            self._segment, self._offset = segment, offset


def decode_record(payload, segment: str, offset: int) -> Record:
    """A record's payload decoded; CorruptRecord (or UnknownEventType) naming what is wrong."""
    try:
        return record_decoder.decode(payload)
    except DECODE_ERRORS as e:
        name = unknown_type_of(bytes(payload))
        if name is not None:
            raise UnknownEventType(segment, offset, name) from None
        raise CorruptRecord(segment, offset, f"record does not decode: {why_undecodable(payload, e)}") from None


def read_records(directory: str, start_seq: int = 1) -> Iterator[Record]:
    """Every committed record of a journal from ``start_seq`` on."""
    return JournalReader(directory).records(start_seq=start_seq)


def follow(
    directory: str,
    start_seq: int = 1,
    stop: threading.Event | None = None,
    poll: float = 0.05,
) -> Iterator[Record]:
    """Yield records as they are committed, forever or until ``stop`` is set."""
    stop = stop or threading.Event()
    while not os.path.isdir(directory):
        if stop.wait(poll):
            return
    reader = JournalReader(directory)
    position: Position | None = None
    while True:
        for rec in reader.records(position, start_seq):
            yield rec
        position = reader.position if reader.position.segment else None
        if stop.wait(poll):
            return


def chained_records(directory: str) -> Iterator[tuple[Record, bytes | None, bytes | None]]:
    """Every committed record with the hash chain before and after it (``journal.hashchain``),
    computed over the bytes as they are stored; None where it cannot be known (after a region
    set aside, or a missing segment, until the next link a segment stores). For ``export``."""
    from . import hashchain

    value: bytes | None = hashchain.GENESIS
    expected = 1
    for base, name in chain.segments(directory):
        if base != expected:
            value = None
        fd, _ = fmt.open_segment(directory, name)
        try:
            header = fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), name)
            scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN)
            if header.chained:
                scanner.links = []
            for batch in scanner.batches():
                stored = None
                for _, link, n in scanner.links or ():
                    if n:
                        stored = link
                    elif value is None:
                        value = hashchain.head_of(link)
                if scanner.links:
                    scanner.links.clear()
                if batch.__class__ is fmt.Hole:
                    value, expected = None, batch.next
                    continue
                for off, payload in batch:
                    rec = decode_record(payload, name, off)
                    before = value
                    value = hashchain.step(value, payload) if value is not None else None
                    expected = rec.seq + 1
                    yield rec, before, value
                if value is None and stored is not None:
                    value = hashchain.head_of(stored)
            end = scanner.end
        finally:
            os.close(fd)
        if end.state != "sealed":
            return
