"""Damage in the middle: writers refuse to append after it; `verify --quarantine` sets it aside.

Issue 12, finding 5: a writer that appended after a flipped bit put its events where no
reader could reach them. Now a writer opening the journal checks the current segment against
the head's running CRC (and every writer that reads over damage refuses), and the documented
repair replaces the damaged batches by a hole frame, keeping everything before the damage
and making everything after it readable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import clean_env
from hypothesis import given, settings
from hypothesis import strategies as st

from runjournal.journal import CorruptRecord, Item, Journal, JournalDamaged, LockTimeout, check, read_records, repair
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.events import JOURNAL_RUN, RegionQuarantined

SEGMENT_BYTES = 900


def build(directory: Path) -> list[list[ev.Record]]:
    """Three or four segments of batches of one to three records; the batches, as written."""
    batches = []
    with Journal(str(directory), durability="none", segment_bytes=SEGMENT_BYTES) as j:
        for i in range(24):
            items = [Item(f"run-{k}", ev.OutputChunk(index=1, stream="stdout", data=b"d" * (5 + i + 7 * k))) for k in range(1 + i % 3)]
            batches.append(j.append_batch(items))
    return batches


@pytest.fixture(scope="module")
def pristine():
    tmp = tempfile.mkdtemp(prefix="runjournal-quarantine-")
    d = Path(tmp) / "journal"
    batches = build(d)
    yield d, batches
    shutil.rmtree(tmp)


def copy_of(pristine: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="runjournal-quarantine-")) / "journal"
    shutil.copytree(pristine, d)
    return d


def regions_of(d: Path) -> list[RegionQuarantined]:
    return [r.event for r in read_records(str(d)) if isinstance(r.event, RegionQuarantined)]


def batch_spans(segment: bytes) -> list[tuple[int, int]]:
    """(start, end) of every batch of a segment's bytes."""
    spans, pos, first = [], fmt.HEADER_LEN, None
    while pos < len(segment):
        word = fmt.WORD.unpack_from(segment, pos)[0]
        end = pos + fmt.FRAME_LEN + (word & fmt.LEN_MASK)
        first = pos if first is None else first
        if not word & fmt.CONTINUES and not word & fmt.SEAL:
            spans.append((first, end))
            first = None
        pos = end
    return spans


def segments(d: Path) -> list[str]:
    return [name for _, name in fmt.list_segments(str(d))]


def flip(d: Path, segment: str, offset: int, xor: int = 0x10) -> None:
    with open(d / segment, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ xor]))


def snapshot(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in segments(d)}


def user_records(d: Path) -> list[ev.Record]:
    return [r for r in read_records(str(d)) if r.run_id != JOURNAL_RUN]


# -- the writer refuses ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_writer_opening_the_journal_refuses_to_append_after_damage_in_the_current_segment(pristine, data):
    source, _ = pristine
    d = copy_of(source)
    try:
        last = segments(d)[-1]
        size = (d / last).stat().st_size
        # not the last frame: damage there, followed by nothing, is a torn tail (cut, not refused)
        last_frame = max(off for off in frame_offsets(d / last))
        offset = data.draw(st.integers(fmt.HEADER_LEN, last_frame - 1), label="offset")
        flip(d, last, offset, data.draw(st.integers(1, 255), label="xor"))
        before = snapshot(d)
        with Journal(str(d)) as j:
            for attempt in range(2):  # and again on the same open journal
                with pytest.raises(JournalDamaged) as caught:
                    j.append("run-new", ev.Heartbeat())
                assert caught.value.segment == last
                assert fmt.HEADER_LEN <= caught.value.offset <= offset < size
                assert "verify --quarantine" in str(caught.value)
        assert snapshot(d) == before  # nothing appended, nothing cut
        assert not (d / "pending").exists() or not os.listdir(d / "pending")
    finally:
        shutil.rmtree(d.parent)


def frame_offsets(segment: Path) -> list[int]:
    data = segment.read_bytes()
    pos, out = fmt.HEADER_LEN, []
    while pos < len(data):
        word = fmt.WORD.unpack_from(data, pos)[0]
        if not word & fmt.LINK:  # records' frames only
            out.append(pos)
        pos += fmt.FRAME_LEN + (word & fmt.LEN_MASK)
    return out


def test_an_unchanged_journal_opens_without_reading_its_records(tmp_path: Path, monkeypatch):
    """The open check is one CRC over the current segment: the records are read only on a mismatch."""
    d = tmp_path / "journal"
    build(d)
    scans = []
    real = fmt.SegmentScanner.batches

    def counting(self):
        scans.append(self.offset)
        return real(self)

    monkeypatch.setattr(fmt.SegmentScanner, "batches", counting)
    with Journal(str(d)) as j:
        j.append("run-0", ev.Heartbeat())
    assert scans == []
    flip(d, segments(d)[-1], fmt.HEADER_LEN + 20)
    with Journal(str(d)) as j, pytest.raises(JournalDamaged):
        j.append("run-0", ev.Heartbeat())
    assert scans  # the mismatch made it read the records, to say where the damage is


# -- quarantine -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_quarantine_keeps_every_batch_before_the_damage_and_makes_those_after_it_readable(pristine, data):
    source, batches = pristine
    d = copy_of(source)
    try:
        names = segments(d)
        segment = data.draw(st.sampled_from(names), label="segment")
        size = (d / segment).stat().st_size
        start = data.draw(st.integers(fmt.HEADER_LEN, size - 1), label="offset")
        length = data.draw(st.sampled_from([1, 1, 1, 5, 40]), label="bytes damaged")
        original = (d / segment).read_bytes()
        garbage = bytes(b ^ 0x5A for b in original[start : start + length])
        with open(d / segment, "r+b") as f:
            f.seek(start)
            f.write(garbage)
        report = repair(str(d), quarantine=True)
        assert report.ok, report.problems
        assert check(str(d)).ok

        kept = {r.seq: r for r in user_records(d)}
        written = [[r for r in batch] for batch in batches]
        lost = [batch for batch in written if batch[0].seq not in kept]
        for batch in written:  # a batch is kept whole, exactly as written, or lost whole
            present = [r.seq in kept for r in batch]
            assert all(present) or not any(present), batch
            if all(present):
                assert [kept[r.seq] for r in batch] == batch
        # what is lost is the batches the damage touched and at most one more (the one after a
        # damaged frame head); everything before the damage is kept
        touched = [b for b in batch_spans(original) if b[0] < start + length and start < b[1]]
        assert len(lost) <= len(touched) + 1, (len(lost), touched)
        regions = regions_of(d)
        for region in regions:
            assert region.segment == segment
            assert region.offset <= start
            copy = (d / region.copy).read_bytes()
            now_damaged = original[: start] + garbage + original[start + length :]
            assert copy == now_damaged[region.offset : region.offset + len(copy)]  # the bytes as they were found
            gone = [r.seq for b in lost for r in b if region.first_lost_seq <= r.seq < region.next_seq]
            assert gone == list(range(region.first_lost_seq, region.next_seq))
        first_lost = min((b[0].seq for b in lost), default=None)
        if first_lost is not None:
            assert all(seq in kept for seq in range(1, first_lost))

        # appends go on, and are read after everything that was kept
        with Journal(str(d), segment_bytes=SEGMENT_BYTES) as j:
            rec = j.append("run-0", ev.Heartbeat())
        assert user_records(d)[-1] == rec
        assert check(str(d)).ok
    finally:
        shutil.rmtree(d.parent)


def test_events_appended_after_damage_in_a_sealed_segment_are_readable_once_it_is_set_aside(tmp_path: Path):
    """The finding's case: the damage is in a segment the writer does not read again, so it
    appends; replay and export could not reach those events. After the quarantine they can."""
    d = tmp_path / "journal"
    build(d)
    first = segments(d)[0]
    flip(d, first, fmt.HEADER_LEN + 30)
    with Journal(str(d), segment_bytes=SEGMENT_BYTES) as j:  # the head is valid: the sealed segment is not read
        late = j.append_batch([Item("late", ev.RunStarted(task_id="t", pipeline_id="p")), Item("late", ev.Heartbeat())])
    assert not check(str(d)).ok
    report = repair(str(d), quarantine=True)
    assert report.ok and report.quarantined
    late_read = [r for r in read_records(str(d)) if r.run_id == "late"]
    assert late_read == late


def test_an_interrupted_quarantine_keeps_the_original_bytes_and_finishes_next_time(tmp_path: Path):
    """SIGKILL in the middle of writing the hole: the next run finds the region damaged
    again, keeps the first copy (the bytes before any hole) and finishes."""
    d = tmp_path / "journal"
    build(d)
    segment = segments(d)[1]
    original = (d / segment).read_bytes()
    offset = frame_offsets(d / segment)[1] + 15
    flip(d, segment, offset)
    damaged = (d / segment).read_bytes()
    code = f"""
import os, signal
from runjournal.journal import quarantine, repair
real = quarantine.write_all_at
def half(fd, data, at):
    if at == 0:  # the header's 32 bytes (one pwrite, within a sector): as they are
        return real(fd, data, at)
    os.pwrite(fd, data[: len(data) // 2], at)
    os.fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)
quarantine.write_all_at = half
repair({str(d)!r}, quarantine=True)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (d / segment).read_bytes() != damaged  # half a hole was written
    copies = os.listdir(d / "quarantine")
    assert len(copies) == 1
    report = repair(str(d), quarantine=True)
    assert report.ok, report.problems
    assert os.listdir(d / "quarantine") == copies
    region = next(r.event for r in read_records(str(d)) if isinstance(r.event, RegionQuarantined))
    copy = (d / region.copy).read_bytes()
    assert copy == damaged[region.offset : region.offset + len(copy)]
    assert copy != original[region.offset : region.offset + len(copy)]


def test_what_cannot_be_set_aside_is_refused_and_nothing_changes(tmp_path: Path):
    d = tmp_path / "journal"
    build(d)
    flip(d, segments(d)[1], 3)  # the segment header's magic
    before = snapshot(d)
    from runjournal.journal.errors import NotQuarantinable

    with pytest.raises(NotQuarantinable) as caught:
        repair(str(d), quarantine=True)
    assert segments(d)[1] in str(caught.value)
    assert snapshot(d) == before
    assert not (d / "quarantine").exists()


def test_a_batch_whose_last_frame_fails_at_the_end_of_the_file_is_cut_whole(tmp_path: Path):
    """A torn multi-frame batch whose last frame is all there but fails its checksum: the tail
    starts at the batch's first frame. (It was reported at the failing frame, and cutting there
    left the batch's first frames to be read with the next writer's batch.)"""
    d = tmp_path / "journal"
    with Journal(str(d)) as j:
        j.append("a", ev.Heartbeat())
        j.append_batch([Item("a", ev.Heartbeat()), Item("b", ev.Heartbeat()), Item("c", ev.Heartbeat())])
    segment = segments(d)[0]
    spans = batch_spans((d / segment).read_bytes())
    flip(d, segment, spans[-1][1] - 1)  # the last byte of the last frame's payload
    (d / "head2").unlink()  # as after a reboot: the writer reads the segment
    with Journal(str(d)) as j:
        j.append("d", ev.Heartbeat())
    assert check(str(d)).ok
    assert [(r.seq, r.run_id) for r in user_records(d)] == [(1, "a"), (3, "d")]  # 2: the tail_repaired record
    assert (d / "torn" / f"{segment}.{spans[-1][0]}.torn").exists()


# -- the command line --------------------------------------------------------------------


def test_the_cli_refuses_to_run_on_a_damaged_journal_and_runs_again_after_the_quarantine(run_cli, tmp_path: Path):
    for _ in range(2):
        code, out, err = run_cli("exec", "--", "echo", "hello")
        assert code == 0, err
    journal = tmp_path / ".runs" / "default" / "journal"
    segment = segments(journal)[0]
    flip(journal, segment, 200)
    before = snapshot(journal)
    tokens = sorted(os.listdir(tmp_path / ".runs" / "default" / ".tokens"))

    code, out, err = run_cli("exec", "--", "echo", "refused")
    assert code == 1
    assert segment in err and "verify --quarantine" in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert snapshot(journal) == before
    assert sorted(os.listdir(tmp_path / ".runs" / "default" / ".tokens")) == tokens  # no run left behind

    code, out, err = run_cli("verify")
    assert code == 1 and "corrupt" in out
    code, out, err = run_cli("verify", "--quarantine", "--format", "json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] and len(report["quarantined"]) == 1 and report["repaired"]

    code, out, err = run_cli("exec", "--", "echo", "after")
    assert code == 0, err
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run ") and "started" in line)
    code, out, err = run_cli("export", "--run", run_id)
    assert code == 0, err
    exported = [json.loads(line) for line in out.splitlines()]
    assert [e["event"]["type"] for e in exported][:2] == ["run_started", "stage_started"]
    assert "run_completed" in [e["event"]["type"] for e in exported]
    code, out, err = run_cli("replay", run_id, "--format", "json")
    assert code == 0, err
    code, out, err = run_cli("verify")
    assert code == 0 and "quarantined:" in out


# -- what a review found (each failed on the first version of the quarantine) -----------------


def small_journal(d: Path, n: int = 6) -> Path:
    with Journal(str(d), durability="none") as j:
        for _ in range(n):
            j.append("r", ev.OutputChunk(index=1, stream="stdout", data=b"d" * 10))
    return d / fmt.segment_name(1)


def test_a_hole_at_the_end_of_the_newest_segment_never_gives_a_committed_sequence_again(tmp_path: Path):
    d = tmp_path / "journal"
    seg = small_journal(d)
    flip(d, seg.name, frame_offsets(seg)[4] + 1)  # the head of record 5; record 6 is intact after it
    repair(str(d), quarantine=True)
    with Journal(str(d)) as j:
        rec = j.append("r", ev.Heartbeat())
    seqs = [r.seq for r in read_records(str(d))]
    # 5 was committed and is lost: never given again (6 is kept where the region ends before it)
    assert seqs[:4] == [1, 2, 3, 4] and 5 not in seqs and seqs == sorted(set(seqs)) and seqs[-1] >= 7, seqs
    assert rec.seq == seqs[-1]
    assert check(str(d)).ok


def test_a_writer_killed_between_the_two_stores_of_a_publish_leaves_no_false_damage(tmp_path: Path):
    d = tmp_path / "journal"
    d.mkdir()
    child = f"""
import os, runjournal.journal.head as hd
from runjournal.journal import Journal, events as ev
calls = []
real = hd.Head.write
def write(self, base, end, last, owner, crc):
    calls.append(1)
    if len(calls) == 2:  # the segment check stored, the header not yet
        hd.SEGMENT_CHECK.pack_into(self._mm, hd.SEGMENT_CHECK_AT, base, end, crc, hd.SEGMENT_TAG | hd.zlib.crc32(hd.SEGMENT_CHECK.pack(base, end, crc, 0)))
        os.kill(os.getpid(), 9)
    return real(self, base, end, last, owner, crc)
hd.Head.write = write
Journal({str(d)!r}, durability="none").append("r", ev.Heartbeat())
"""
    proc = subprocess.run([sys.executable, "-c", child], env=clean_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Journal(str(d)) as j:
        assert j.append("r", ev.Heartbeat()).seq == 2
    assert check(str(d)).ok


def test_what_follows_damage_with_an_earlier_sequence_is_refused_before_anything_is_written(tmp_path: Path):
    d = tmp_path / "journal"
    small_journal(d, 8)
    (d / fmt.segment_name(5)).write_bytes(fmt.encode_header(5, 1))  # a stray segment based inside the history
    before = snapshot(d)
    from runjournal.journal.errors import NotQuarantinable

    with pytest.raises(NotQuarantinable):
        repair(str(d), quarantine=True)
    assert snapshot(d) == before
    assert [r.seq for r in read_records(str(d))] == list(range(1, 9))


def test_a_quarantine_killed_after_its_hole_records_the_region_next_time(tmp_path: Path):
    d = tmp_path / "journal"
    seg = small_journal(d, 8)
    flip(d, seg.name, frame_offsets(seg)[2] + 20)
    code = f"""
import os, signal
import runjournal.journal.quarantine as q
from runjournal.journal import repair
real = q.set_aside
def then_die(*args):
    real(*args)
    os.kill(os.getpid(), signal.SIGKILL)
q.set_aside = then_die
repair({str(d)!r}, quarantine=True)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not regions_of(d)
    report = repair(str(d), quarantine=True)
    assert report.ok and report.repaired
    [region] = regions_of(d)
    assert (region.segment, region.first_lost_seq, region.next_seq) == (seg.name, 3, 4)
    assert repair(str(d), quarantine=True).repaired == []  # once


def test_a_segment_with_a_hole_says_so_in_its_header(tmp_path: Path):
    """A runjournal that does not know holes refuses the segment (format 2) instead of
    reading the hole as a seal."""
    d = tmp_path / "journal"
    seg = small_journal(d)
    flip(d, seg.name, frame_offsets(seg)[2] + 20)
    repair(str(d), quarantine=True)
    assert fmt.decode_header(seg.read_bytes()[: fmt.HEADER_LEN], seg.name).format == fmt.HOLE_FORMAT


def test_a_hole_that_does_not_begin_at_the_next_sequence_is_corruption(tmp_path: Path):
    from runjournal.journal.events import Record, encoder

    d = tmp_path / "journal"
    seg = small_journal(d, 4)
    with open(seg, "ab") as f:
        f.write(fmt.encode_hole(fmt.HOLE_MIN, 1, 2, False) + fmt.encode_frame(encoder.encode(Record(2, "r", 5, 1, ev.Heartbeat())), False))
    (d / "head2").unlink()
    report = check(str(d))
    assert [p.kind for p in report.problems][:1] == ["corrupt"]
    with pytest.raises(CorruptRecord):
        list(read_records(str(d)))
    with Journal(str(d)) as j, pytest.raises(JournalDamaged):
        j.append("r", ev.Heartbeat())


def test_a_spill_merge_cut_short_is_settled_across_a_hole(tmp_path: Path):
    import fcntl

    d = tmp_path / "journal"
    seg = small_journal(d)
    flip(d, seg.name, frame_offsets(seg)[2] + 20)
    repair(str(d), quarantine=True)
    lock = os.open(d / "lock", os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with Journal(str(d), lock_timeout=0.01) as j, pytest.raises(LockTimeout):
            j.append("r", ev.Heartbeat())
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    [name] = os.listdir(d / "pending")
    os.rename(d / "pending" / name, d / "pending" / f"{name}.merging")  # a merger killed mid-merge
    with Journal(str(d)) as j:
        j.append("r", ev.OutputChunk(index=1, stream="stdout", data=b"after"))
    assert check(str(d)).ok
    kinds = [type(r.event).__name__ for r in read_records(str(d))]
    assert kinds.count("Heartbeat") == 1


def test_after_a_hole_only_a_runs_first_record_may_skip_and_only_forward(tmp_path: Path):
    from runjournal.journal.events import Record, encoder

    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as j:
        for _ in range(4):
            j.append("a", ev.Heartbeat())
        j.append("c", ev.Heartbeat())
        j.append("c", ev.Heartbeat())
        j.append("a", ev.Heartbeat())
    seg = d / fmt.segment_name(1)
    flip(d, seg.name, frame_offsets(seg)[4] + 20)  # record 5, run c's first, set aside
    repair(str(d), quarantine=True)
    last = list(read_records(str(d)))[-1].seq
    with open(seg, "ab") as f:  # by hand: run a goes back; then c skips a second time
        for rec in (Record(last + 1, "a", 2, 1, ev.Heartbeat()), Record(last + 2, "c", 9, 1, ev.Heartbeat())):
            f.write(fmt.encode_frame(encoder.encode(rec), False))
    (d / "head2").unlink()
    problems = [(p.kind, p.detail) for p in check(str(d)).problems]
    assert problems == [
        ("run-sequence-gap", "run 'a' sequence 2 follows 5"),
        ("run-sequence-gap", "run 'c' sequence 9 follows 2"),
    ]
