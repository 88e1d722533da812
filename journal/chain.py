"""The segment chain: which segments a journal has, in what order, and where the chain ends.

Every reader of segments asks here (the reader, the writer's catch-up and head rebuild,
``check``, the file store): the rules of docs/journal-format.md section 5 are written once.

- The chain starts at the segment based at sequence 1, or, once segments were archived
  (``journal.archive``), at the sequence after the archive (or an archived segment's base,
  while its move is unfinished); a journal whose lowest segment has another base has lost
  its start.
- A scan of a segment ends ``open`` (the chain ends here, for now), ``sealed`` (the chain
  goes on in the segment based at the sequence after its last record, which its writer
  creates next) or ``tail`` (an unfinished batch: only ever at the end of the newest
  segment; followed by a later segment it is damage).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator

from . import archive
from . import format as fmt
from .errors import CorruptRecord
from .fsutil import Where


def segments(directory: Where) -> list[tuple[int, str]]:
    """(base sequence, name) of every file named like a segment, oldest first."""
    return fmt.list_segments(directory)


def start(directory: Where) -> tuple[int, str] | None:
    """The chain's first segment; None while the journal has none. CorruptRecord if the lowest
    segment is not where the journal begins (sequence 1, or after the archive: see the module)
    (a segment based at 0 is never part of the chain)."""
    found = segments(directory)
    if not found:
        return None
    chain = [seg for seg in found if seg[0] >= 1]
    if not chain or chain[0][0] != 1:
        base, name = (chain or found)[0]
        if base > 1 and base in archive.starts(directory):
            return chain[0]
        raise CorruptRecord(name, 0, fmt.missing_start(base) if base > 1 else "segment starts at sequence 0, before the journal's first record (1)")
    return chain[0]


def containing(directory: Where, seq: int) -> tuple[int, str] | None:
    """The segment of the chain where reading from ``seq`` starts (the last based at or before it)."""
    first = start(directory)
    if first is None:
        return None
    found = segments(directory)
    i = bisect.bisect_right(found, seq, key=lambda seg: seg[0])  # by name: no segment is read
    return found[i - 1] if i and found[i - 1][0] >= first[0] else first


def later(directory: Where, segment: str) -> str | None:
    """The first segment after ``segment``, if any: what makes a tail in ``segment`` damage."""
    return next((name for _, name in segments(directory) if name > segment), None)


def after_seal(segment: str, end: fmt.ScanEnd, next_seq: int) -> str:
    """The segment the chain goes on in after ``segment`` was sealed (scan ``end``), its records
    ending just before ``next_seq``. CorruptRecord if the seal came before any record."""
    name = fmt.segment_name(next_seq)
    if name == segment:
        raise CorruptRecord(segment, end.offset, "segment is sealed without any record")
    return name


def tail_after(segment: str, end: fmt.ScanEnd, following: str) -> CorruptRecord:
    """The error for an unfinished batch in ``segment`` that ``following`` comes after."""
    return CorruptRecord(segment, end.offset, f"{end.detail}, but segment {following} follows")


def first_batches(directory: Where) -> Iterator[tuple[str, list]]:
    """(segment, batch) of every committed batch of every segment, in name order: for searches
    that need no sequence checks (the records' own fields say what they are)."""
    for _, name in segments(directory):
        fd, _ = fmt.open_segment(directory, name)
        try:
            for batch in fmt.SegmentScanner(fd, name, fmt.HEADER_LEN).batches():
                yield name, batch
        finally:
            os.close(fd)
