"""Seeking by sequence and by time (journal/seek.py): where it lands, and what it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from runjournal.journal import Item, Journal, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal import seek
from runjournal.journal.events import Record, encoder

T0 = 1_767_225_600 * 10**9
MS = 1_000_000


def chained_journal(d: Path, stamps: list[int], batch: int = 3, segment_bytes: int = 600) -> None:
    """A format-3 journal of one record per stamp (record i stamped ``stamps[i - 1]``), in
    batches of ``batch``, small segments."""
    with Journal(str(d), durability="none", segment_bytes=segment_bytes) as j:
        for start in range(0, len(stamps), batch):
            j.append_batch([Item(f"run-{i % 3}", ev.Heartbeat(), ts) for i, ts in enumerate(stamps[start : start + batch], start)])


def v1_journal(d: Path, stamps: list[int], per_segment: int) -> None:
    """A format-1 journal (no links) written byte by byte: ``per_segment`` one-record batches a
    segment, every segment but the last sealed. Fast enough for 1,000 segments."""
    d.mkdir(parents=True)
    for base in range(1, len(stamps) + 1, per_segment):
        seqs = range(base, min(len(stamps) + 1, base + per_segment))
        data = fmt.encode_header(base, ev.SCHEMA_VERSION) + b"".join(
            fmt.encode_batch([encoder.encode(Record(s, "old-run", s, stamps[s - 1], ev.Heartbeat()))]) for s in seqs
        )
        sealed = seqs[-1] < len(stamps)
        (d / fmt.segment_name(base)).write_bytes(data + (fmt.seal_frame() if sealed else b""))


def segment_count(d: Path) -> int:
    return len(fmt.list_segments(str(d)))


def first_stamped(stamps: list[int], ts: int) -> int | None:
    return next((i for i, s in enumerate(stamps, 1) if s >= ts), None)


@pytest.fixture
def scans(monkeypatch) -> list[str]:
    """The segments every SegmentScanner made from here on reads, in order."""
    seen: list[str] = []
    real = fmt.SegmentScanner

    class Counting(real):
        def __init__(self, fd, segment, offset, chunk=fmt.READ_CHUNK):
            seen.append(segment)
            super().__init__(fd, segment, offset, chunk)

    monkeypatch.setattr(fmt, "SegmentScanner", Counting)
    return seen


# -- by sequence -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["chained", "v1"])
def test_a_read_from_any_sequence_starts_exactly_there(tmp_path: Path, make: str):
    d = tmp_path / "journal"
    stamps = [T0 + i * MS for i in range(40)]
    chained_journal(d, stamps) if make == "chained" else v1_journal(d, stamps, per_segment=4)
    assert segment_count(d) >= 5
    for seq in range(1, 42):  # every record, segment boundaries included, and one past the end
        assert [r.seq for r in read_records(str(d), seq)] == list(range(seq, 41))


def test_a_position_is_a_batch_boundary_in_the_segment_holding_the_sequence(tmp_path: Path):
    d = tmp_path / "journal"
    chained_journal(d, [T0 + i * MS for i in range(40)], batch=3)
    for seq in range(1, 41):
        segment, offset, next_seq = seek.position(str(d), seq)
        base = fmt.segment_base(segment)
        assert base <= next_seq <= seq < next_seq + 3  # the batch holding seq, never past it
        assert (offset == fmt.HEADER_LEN) == (next_seq == base)


def test_an_empty_journal_has_nowhere_to_seek(tmp_path: Path):
    d = tmp_path / "journal"
    d.mkdir()
    assert seek.position(str(d), 1) is None
    assert seek.first_at(str(d), T0) is None
    assert list(read_records(str(d), 5)) == []


def test_damage_before_the_sequence_sought_is_still_reported(tmp_path: Path):
    d = tmp_path / "journal"
    v1_journal(d, [T0 + i * MS for i in range(8)], per_segment=8)
    path = d / fmt.segment_name(1)
    data = bytearray(path.read_bytes())
    data[fmt.HEADER_LEN + 20] ^= 0xFF  # the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(fmt.CorruptRecord, match="payload checksum mismatch"):
        list(read_records(str(d), 6))


# -- by time -----------------------------------------------------------------------------------


def test_a_time_seek_finds_the_first_record_at_or_after_the_time(tmp_path: Path):
    d = tmp_path / "journal"
    stamps = [T0 + (i // 2) * MS for i in range(40)]  # ties: two records a millisecond
    chained_journal(d, stamps)
    assert segment_count(d) >= 5
    for ts in sorted({T0 - MS, *stamps, *(s + 1 for s in stamps)}):
        assert seek.first_at(str(d), ts) == first_stamped(stamps, ts), ts


def test_a_clock_stepped_back_still_lands_where_the_stamps_cross_the_time(tmp_path: Path):
    d = tmp_path / "journal"
    # a clock stepped back 30 ms at record 21, and 5 ms within several segments
    stamps = [T0 + i * MS for i in range(20)] + [T0 + (i - 30) * MS for i in range(20, 40)]
    stamps[7], stamps[25] = stamps[7] - 5 * MS, stamps[25] - 5 * MS
    v1_journal(d, stamps, per_segment=4)
    for ts in sorted({T0 - 40 * MS, *stamps, *(s + 1 for s in stamps)}):
        found = seek.first_at(str(d), ts)
        if found is None:  # no crossing after the segment the search chose
            assert stamps[-1] < ts
            continue
        assert stamps[found - 1] >= ts
        # the search chose a segment whose first record is stamped before ts (or the first
        # segment): the record's own, or the one before if the record is a segment's first
        base = (found - 1) // 4 * 4 + 1
        chosen = base if base == 1 or stamps[base - 1] < ts else base - 4
        assert chosen == 1 or stamps[chosen - 1] < ts
        # and everything from there up to the record is stamped before ts
        assert all(s < ts for s in stamps[chosen - 1 : found - 1])


def test_with_stamps_that_never_go_back_a_time_seek_is_exact_in_a_v1_journal(tmp_path: Path):
    d = tmp_path / "journal"
    stamps = [T0 + i * MS for i in range(30)]
    v1_journal(d, stamps, per_segment=1)
    for ts in [T0 - 1, *stamps, stamps[-1] + 1]:
        assert seek.first_at(str(d), ts) == first_stamped(stamps, ts)


# -- what a seek reads ---------------------------------------------------------------------------


def test_a_seek_near_the_end_reads_a_bounded_number_of_segments(tmp_path: Path, scans: list[str]):
    d = tmp_path / "journal"
    stamps = [T0 + i * MS for i in range(2000)]
    v1_journal(d, stamps, per_segment=2)
    assert segment_count(d) == 1000
    assert [r.seq for r in read_records(str(d), 1996)] == [1996, 1997, 1998, 1999, 2000]
    assert len(scans) <= 4  # the seek's walk of one segment, then the reader's segments
    scans.clear()
    assert seek.first_at(str(d), stamps[1995]) == 1996
    assert len(scans) <= 2 + 11  # log2(1000) first records, then the segment itself
    scans.clear()
    assert [r.seq for r in read_records(str(d), 2)] == list(range(2, 2001))
    assert len(scans) == 1001  # a read from the start reads everything, once
