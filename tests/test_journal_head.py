"""The head cache: every part a writer's decision depends on is checked on use, and its run
table grows instead of forgetting runs (so a new run's first append reads no history)."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runjournal.journal import Journal, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import head as hd
from runjournal.journal.writer import HEAD

RUNS = [f"2025-12-01T09-37-11-576Z-{n:08x}" for n in range(12)]
NEW = "2025-12-01T09-37-11-576Z-feedf00d"


def seeded(directory: Path) -> None:
    """A journal whose runs have different lengths (run n has n + 1 events)."""
    with Journal(str(directory), durability="none") as j:
        for n, run in enumerate(RUNS):
            for _ in range(n + 1):
                j.append(run, ev.Heartbeat())


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("head") / "journal"
    seeded(d)
    return d


def used_bits(directory: Path) -> list[int]:
    """The bit positions of the head's header, table header and every bucket in use."""
    data = (directory / HEAD).read_bytes()
    bits = list(range(hd.TABLE_AT * 8))
    for off in range(hd.TABLE_AT, len(data), hd.BUCKET_SIZE):
        if any(data[off : off + hd.BUCKET_SIZE]):
            bits += range(off * 8, (off + hd.BUCKET_SIZE) * 8)
    return bits


def flip(path: Path, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(bit // 8)
        byte = f.read(1)[0]
        f.seek(bit // 8)
        f.write(bytes([byte ^ (1 << bit % 8)]))


def appends_after(directory: Path) -> None:
    """One more event for every run, one with the run sequence it expects, and a new run."""
    with Journal(str(directory), durability="none") as j:
        for n, run in enumerate(RUNS):
            if n % 2:
                j.append(run, ev.Heartbeat(), expected_seq=n + 1)
            else:
                j.append(run, ev.Heartbeat())
        j.append(NEW, ev.Heartbeat(), expected_seq=0)
        assert j.run_seqs(RUNS) == {run: n + 2 for n, run in enumerate(RUNS)}


def assert_every_sequence_right(directory: Path) -> None:
    report = check(str(directory))
    assert report.ok, report.problems
    by_run: dict[str, list[int]] = {}
    for r in read_records(str(directory)):
        by_run.setdefault(r.run_id, []).append(r.run_seq)
    assert by_run == {**{run: list(range(1, n + 3)) for n, run in enumerate(RUNS)}, NEW: [1]}


@settings(max_examples=settings().max_examples * 4)
@given(data=st.data())
def test_a_flipped_bit_anywhere_in_the_head_never_leads_to_a_wrong_sequence(pristine: Path, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("flip") / "journal"
    shutil.copytree(pristine, d)
    bit = data.draw(st.sampled_from(used_bits(d)), label="bit")
    flip(d / HEAD, bit)
    appends_after(d)
    assert_every_sequence_right(d)


@pytest.mark.slow
def test_every_bit_of_the_head_in_use(pristine: Path, tmp_path: Path):
    for bit in used_bits(pristine):
        d = tmp_path / str(bit) / "journal"
        shutil.copytree(pristine, d)
        flip(d / HEAD, bit)
        appends_after(d)
        assert_every_sequence_right(d)
        shutil.rmtree(d.parent)


def test_a_damaged_slot_is_noticed_on_use_and_rebuilt_from_the_segments(pristine: Path, tmp_path: Path):
    d = tmp_path / "journal"
    shutil.copytree(pristine, d)
    data = (d / HEAD).read_bytes()
    key = hd.run_key(RUNS[5])
    slots = [b + w * hd.SLOT.size for b in range(hd.TABLE_AT, len(data), hd.BUCKET_SIZE) for w in range(hd.WAYS)]
    off = next(o for o in slots if struct.unpack_from("<Q", data, o)[0] == key)
    flip(d / HEAD, (off + 8) * 8 + 1)  # run seq 6 -> 4: the value a writer would use next
    with Journal(str(d), durability="none") as j:
        assert j.run_seq(RUNS[5]) == 6
        assert j.head_rebuilds == 1
    appends_after(d)
    assert_every_sequence_right(d)


def test_the_table_grows_instead_of_forgetting_runs(tmp_path: Path):
    d = tmp_path / "journal"
    runs = [f"2025-12-01T09-37-11-576Z-{n:08x}" for n in range(hd.INITIAL_BUCKETS * hd.WAYS + 500)]
    with Journal(str(d), durability="none") as j:
        j.append_batch([(r, ev.Heartbeat()) for r in runs])
        inode = os.stat(d / HEAD).st_ino
        other = Journal(str(d), durability="none")  # mapped the grown head? it will find out
        try:
            j.append_batch([(r, ev.Heartbeat()) for r in runs])
            assert os.stat(d / HEAD).st_size > hd.SIZE
            other.append(runs[0], ev.Heartbeat())
            assert other.run_seqs(runs[-3:]) == {r: 2 for r in runs[-3:]}
        finally:
            other.close()
    del inode
    with open(d / HEAD, "rb") as f:
        f.seek(hd.TABLE_HEADER_AT)
        buckets, complete, _ = hd.TABLE_HEADER.unpack(f.read(hd.TABLE_HEADER.size))
    assert complete == 1 and buckets > hd.INITIAL_BUCKETS
    assert check(str(d)).ok


def test_a_writer_that_opened_before_the_head_was_made_never_publishes_a_table_it_lacks(tmp_path: Path):
    # B maps the head while it is still all zeros; A then makes it and appends; B's next pass
    # under the lock must take the table as it is now, not drop what it stores
    d = tmp_path / "journal"
    run = RUNS[0]
    late = Journal(str(d), durability="none")
    early = Journal(str(d), durability="none")
    try:
        early.append(run, ev.RunStarted(task_id="t", pipeline_id="p"))
        for _ in range(100):
            early.append(run, ev.Heartbeat())
        late.recover()
        assert early.append(run, ev.Heartbeat()).run_seq == 102
        assert late.append(run, ev.Heartbeat()).run_seq == 103
    finally:
        early.close()
        late.close()
    assert check(str(d)).ok


def test_two_bits_flipped_in_the_header_are_noticed(pristine: Path, tmp_path: Path):
    # the same bit of two words cancelled out in a check made by xor
    d = tmp_path / "journal"
    shutil.copytree(pristine, d)
    for word in (1, 2):  # end offset and last sequence
        flip(d / HEAD, (hd.HEADER_AT + 8 * word) * 8 + 1)
    appends_after(d)
    assert_every_sequence_right(d)
