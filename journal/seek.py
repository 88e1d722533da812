"""Seeking: where a read from a sequence number, or from a time, starts.

No index file: a sequence is found by the segments' names (``chain.containing``, a binary
search over one directory listing) and then, in that one segment, by walking its frames
without decoding a record; a time by a binary search over the segments' first records (one
small read each, O(log n) of them) and then the same walk. So a seek reads one segment
whatever the journal's length: for a given segment size (16 MiB by default) the cost is the
same at 1 segment and at 1,000 (``benchmarks/seek.py``; docs/benchmarks.md). Nothing here writes, and nothing is trusted that was not
read from the segments themselves; damage is never skipped here but left where the reader
meets it and says what it is.

Record times are the writers' clocks and may go backwards (an NTP step, two hosts): see
``first_at`` for what a time seek then finds.
"""

from __future__ import annotations

import os

from . import chain
from . import format as fmt
from .errors import CorruptRecord
from .events import DECODE_ERRORS, head_decoder
from .fsutil import Where

__all__ = ["first_at", "position", "segment_start"]

#: bytes read to look at a segment's first record (a scan reads 1 MiB at a time)
LOOK_CHUNK = 4096




def position(directory: Where, seq: int) -> tuple[str, int, int] | None:
    """(segment, offset, sequence there): where a reader that wants records from ``seq`` on
    starts: the batch holding ``seq`` in
    the segment that holds it (its start if ``seq`` is before the journal's first record).
    None while the journal has no segment. Where the walk meets damage, a hole or a header that
    does not fit, the position is the last good place before it: the reader reads on from
    there and reports what is wrong exactly as a read from the start would."""
    chosen = chain.containing(directory, seq)
    if chosen is None:
        return None
    base, name = chosen
    at = (name, fmt.HEADER_LEN, base)
    try:
        fd, _ = fmt.open_segment(directory, name)
    except (OSError, CorruptRecord):
        return at
    try:
        if fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), name).base_seq != base:
            return at
        scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN)
        next_seq = base
        for batch in scanner.batches():
            if batch.__class__ is fmt.Hole or next_seq + len(batch) > seq:
                return at
            next_seq += len(batch)
            at = (name, scanner.offset, next_seq)  # just past the batch (and its link)
        return at
    except CorruptRecord:
        return at
    finally:
        os.close(fd)


def segment_start(directory: Where, name: str) -> tuple[int, int] | None:
    """(sequence, time) of a segment's first record, read with one small read; None if it has
    none yet, or it cannot be read (the reader reports why when it gets there)."""
    try:
        fd, _ = fmt.open_segment(directory, name)
    except (OSError, CorruptRecord):
        return None
    try:
        scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN, chunk=LOOK_CHUNK)
        first = next((b for b in scanner.batches() if b), None)
        if first is None or first.__class__ is fmt.Hole:
            return None
        head = head_decoder.decode(first[0][1])
        return head.seq, head.ts
    except (CorruptRecord, *DECODE_ERRORS):
        return None
    finally:
        os.close(fd)


def first_at(directory: Where, ts: int) -> int | None:
    """The sequence of the first record stamped at or after ``ts`` (ns), None if none is.

    The segment is found by a binary search over the segments' first records: the last
    segment whose first record is stamped before ``ts`` (the first segment if none is), then
    that segment and the next ones are read in sequence order for the first record stamped at
    or after ``ts``. While stamps never go backwards this is exactly the first record stamped
    at or after ``ts``. Where a clock stepped back it is still a record where the journal's
    stamps cross ``ts`` — everything from the first record of the segment the search chose up
    to it is stamped before ``ts`` — but an earlier crossing, in a segment the search did not
    read, may exist: a caller that needs the very first one in every case reads from the start.

    A segment whose first record cannot be read (a hole, damage) counts as stamped before
    ``ts``, so the search never skips past it: the reader reports it."""
    found = chain.segments(directory)
    first = chain.start(directory)
    if first is None:
        return None
    found = [seg for seg in found if seg[0] >= first[0]]
    lo, hi = 0, len(found) - 1  # the answer is in found[lo:]; found[lo] is the first, or stamped before ts
    while lo < hi:
        mid = (lo + hi + 1) // 2
        stamp = segment_start(directory, found[mid][1])
        if stamp is None or stamp[1] < ts:
            lo = mid
        else:
            hi = mid - 1
    from .reader import JournalReader, Position  # the reader checks every record it yields

    for rec in JournalReader(directory).records(Position(found[lo][1], fmt.HEADER_LEN, found[lo][0])):
        if rec.ts >= ts:
            return rec.seq
    return None
