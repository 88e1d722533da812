"""Torn tails: what a writer killed mid-append (or mid-rollover) leaves, at every byte.

The reader returns exactly the committed records before it, ``check`` reports it as a
torn tail, ``repair`` cuts it (keeping a copy in ``torn/``) and the journal goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runjournal.journal import Item, Journal, check, read_records, repair
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.events import JOURNAL_RUN, TailRepaired
from runjournal.journal.writer import DURABILITY_MODES

SEG1 = fmt.segment_name(1)


def build(directory: Path, last_batch: int) -> tuple[list, int, bytes]:
    """Five single appends, then one batch of ``last_batch`` events: (records, batch offset, segment bytes)."""
    with Journal(str(directory), durability="none") as j:
        records = [j.append(f"run-{i % 2}", ev.StageStarted(index=i, stage_id=f"s{i}")) for i in range(5)]
        start = (directory / SEG1).stat().st_size
        j.append_batch([Item("run-0", ev.OutputChunk(index=i, stream="stdout", data=b"o" * (10 * i))) for i in range(last_batch)])
    return records, start, (directory / SEG1).read_bytes()


def torn_copy(tmp_path: Path, data: bytes, name: str) -> Path:
    """A journal holding only the segment ``data`` (no head cache: as another machine would see it)."""
    d = tmp_path / name / "journal"
    d.mkdir(parents=True)
    (d / SEG1).write_bytes(data)
    return d


@pytest.mark.parametrize("last_batch", [1, 3])
def test_torn_tail_at_every_byte_of_the_last_batch(tmp_path: Path, last_batch: int):
    committed, start, full = build(tmp_path / "base", last_batch)
    assert len(full) > start + last_batch * fmt.FRAME_LEN
    for cut in range(start + 1, len(full)):
        d = torn_copy(tmp_path, full[:cut], f"cut-{cut}")
        assert list(read_records(str(d))) == committed, cut

        report = check(str(d))
        assert [(p.segment, p.offset, p.kind) for p in report.problems] == [(SEG1, start, "torn-tail")], cut
        assert "verify --repair" in report.problems[0].detail

        fixed = repair(str(d))
        assert fixed.ok, (cut, fixed.problems)
        assert fixed.repaired == [f"cut {cut - start} bytes from {SEG1} at byte {start} (copy kept in torn/{SEG1}.{start}.torn)"]
        assert (d / "torn" / f"{SEG1}.{start}.torn").read_bytes() == full[start:cut]

        with Journal(str(d), durability="none") as j:
            new = j.append("run-1", ev.Heartbeat())
        records = list(read_records(str(d)))
        assert records[:5] == committed
        assert [(r.run_id, type(r.event)) for r in records[5:]] == [(JOURNAL_RUN, TailRepaired), ("run-1", ev.Heartbeat)]
        assert records[5].event == TailRepaired(segment=SEG1, offset=start, bytes_cut=cut - start, copy=f"torn/{SEG1}.{start}.torn")
        assert (new.seq, new.run_seq) == (7, 3)
        assert check(str(d)).ok
        shutil.rmtree(d.parent)


def test_the_next_writer_cuts_a_torn_tail_by_itself(tmp_path: Path):
    committed, start, full = build(tmp_path / "base", 2)
    d = torn_copy(tmp_path, full[: start + 20], "torn")
    with Journal(str(d), durability="none") as j:
        rec = j.append("run-0", ev.Heartbeat())
    assert rec.seq == 7 and rec.run_seq == 4
    assert [r.seq for r in read_records(str(d))] == list(range(1, 8))
    assert check(str(d)).ok


@pytest.mark.parametrize("durability", DURABILITY_MODES)
def test_a_writer_that_stays_open_cuts_what_a_crashed_peer_left(journal_dir: Path, durability: str):
    """The survivor learned the journal's end before the crash; it must not trust that view."""
    with Journal(str(journal_dir), durability=durability) as survivor:
        survivor.append("a", ev.Heartbeat())
        with open(journal_dir / SEG1, "ab") as f:  # the peer's write() stopped half-way
            f.write(fmt.encode_frame(b"\x93" * 30, continues=True)[:25])
        assert survivor.append("a", ev.Heartbeat()).seq == 3
    kinds = [(r.seq, r.run_id, type(r.event)) for r in read_records(str(journal_dir))]
    assert kinds == [(1, "a", ev.Heartbeat), (2, "", TailRepaired), (3, "a", ev.Heartbeat)]
    assert check(str(journal_dir)).ok


@pytest.mark.parametrize("zeros", [1, 11, 12, 13, 4096])
def test_zeros_after_the_end_are_a_torn_tail(tmp_path: Path, zeros: int):
    """Power loss can extend a file without its data: zeros where the last append was."""
    committed, start, full = build(tmp_path / "base", 1)
    d = torn_copy(tmp_path, full + bytes(zeros), "zeros")
    assert list(read_records(str(d)))[-1].seq == 6
    assert [(p.offset, p.kind) for p in check(str(d)).problems] == [(len(full), "torn-tail")]
    assert repair(str(d)).ok
    assert (d / SEG1).read_bytes()[: len(full)] == full


def test_a_last_frame_failing_its_checksum_at_the_very_end_is_a_tail(tmp_path: Path):
    """A complete-looking last frame whose payload checksum fails: a write the disk did not finish."""
    committed, start, full = build(tmp_path / "base", 1)
    damaged = bytearray(full)
    damaged[-1] ^= 0xFF
    d = torn_copy(tmp_path, bytes(damaged), "lastframe")
    assert list(read_records(str(d))) == committed
    assert [(p.offset, p.kind) for p in check(str(d)).problems] == [(start, "torn-tail")]
    assert repair(str(d)).ok


@pytest.mark.parametrize("seal_bytes", range(1, fmt.FRAME_LEN + 1))
def test_a_writer_killed_while_sealing_a_segment(tmp_path: Path, seal_bytes: int):
    """Part of the seal, or all of it with the next segment not yet created."""
    committed, start, full = build(tmp_path / "base", 1)
    d = torn_copy(tmp_path, full + fmt.seal_frame()[:seal_bytes], "sealing")
    assert len(list(read_records(str(d)))) == 6
    report = check(str(d))
    if seal_bytes < fmt.FRAME_LEN:
        assert [(p.offset, p.kind) for p in report.problems] == [(len(full), "torn-tail")]
    else:
        assert report.ok
    assert repair(str(d)).ok
    with Journal(str(d), durability="none") as j:
        rec = j.append("run-1", ev.Heartbeat())
    records = list(read_records(str(d)))
    assert records[-1] == rec
    assert [r.seq for r in records] == list(range(1, rec.seq + 1))
    assert check(str(d)).ok


@pytest.mark.parametrize("durability", DURABILITY_MODES)
def test_a_writer_that_stays_open_continues_after_a_peer_died_sealing(journal_dir: Path, durability: str):
    with Journal(str(journal_dir), durability=durability) as survivor:
        survivor.append("a", ev.Heartbeat())
        with open(journal_dir / SEG1, "ab") as f:
            f.write(fmt.seal_frame())  # sealed, then killed before creating the next segment
        rec = survivor.append("a", ev.Heartbeat())
    assert list(read_records(str(journal_dir)))[-1] == rec
    assert [b for b, _ in fmt.list_segments(str(journal_dir))] == [1, 2]
    assert check(str(journal_dir)).ok


def test_a_stray_temp_segment_from_a_killed_creator_is_ignored(journal_dir: Path):
    """A segment is created as a temp file and renamed; a kill before the rename leaves the temp."""
    with Journal(str(journal_dir), durability="none") as j:
        j.append("a", ev.Heartbeat())
    (journal_dir / f".{fmt.segment_name(2)}.4242.tmp").write_bytes(fmt.encode_header(2, 1)[:7])
    assert check(str(journal_dir)).ok
    with Journal(str(journal_dir), durability="none") as j:
        assert j.append("a", ev.Heartbeat()).seq == 2
    assert [r.seq for r in read_records(str(journal_dir))] == [1, 2]
