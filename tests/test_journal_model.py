"""The journal against a model: a list of acknowledged records.

Two writers (as two processes would hold two ``Journal`` objects) append single events,
batches, and appends with an expected run sequence; they are reopened; a writer killed
mid-append or mid-rollover is simulated by leaving exactly the bytes it would have left.
After every step, the records read back are the acknowledged ones, in order.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from helpers.strategies import run_ids, small_events
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from runjournal.journal import (
    Item,
    Journal,
    JournalReader,
    Record,
    SequenceConflict,
    check,
    read_records,
)
from runjournal.journal import format as fmt, hashchain
from runjournal.journal.events import JOURNAL_RUN, TailRepaired, encoder

SEGMENT_BYTES = 4096

items = st.tuples(run_ids(), small_events())


class JournalMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="runjournal-model-")
        self.dir = os.path.join(self.tmp, "journal")
        self.acked: list[Record] = []  # every acknowledged user record, in commit order
        self.run_seqs: dict[str, int] = {}
        self.torn = False  # bytes of a killed writer's append are at the end of the journal
        self.crashes = 0  # simulated crashes that left bytes to cut
        self.writers: list[Journal] = []
        self.reader: JournalReader | None = None
        self.position = None
        self.followed: list[Record] = []

    @initialize()
    def open_writers(self):
        self.writers = [self._open(), self._open()]
        self.reader = JournalReader(self.dir)

    def _open(self) -> Journal:
        return Journal(self.dir, durability="none", segment_bytes=SEGMENT_BYTES)

    def teardown(self):
        for w in self.writers:
            w.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model ------------------------------------------------------------------

    def _acknowledge(self, batch: list[tuple[str, object]], records: list[Record]) -> None:
        assert len(records) == len(batch)
        first = records[0].seq
        assert [r.seq for r in records] == list(range(first, first + len(records)))
        assert first > (self.acked[-1].seq if self.acked else 0)
        for (run_id, event), rec in zip(batch, records):
            self.run_seqs[run_id] = self.run_seqs.get(run_id, 0) + 1
            assert (rec.run_id, rec.run_seq, rec.event) == (run_id, self.run_seqs[run_id], event)
        self.acked.extend(records)
        self.torn = False

    # -- rules ----------------------------------------------------------------------

    @rule(w=st.integers(0, 1), item=items)
    def append(self, w, item):
        run_id, event = item
        self._acknowledge([item], [self.writers[w].append(run_id, event)])

    @rule(w=st.integers(0, 1), batch=st.lists(items, min_size=1, max_size=6), ts=st.none() | st.integers(0, 2**63 - 1))
    def append_batch(self, w, batch, ts):
        records = self.writers[w].append_batch([Item(r, e, ts) for r, e in batch])
        if ts is not None:
            assert {r.ts for r in records} == {ts}
        self._acknowledge(batch, records)

    @rule(w=st.integers(0, 1), item=items)
    def append_expected(self, w, item):
        run_id, event = item
        rec = self.writers[w].append(run_id, event, expected_seq=self.run_seqs.get(run_id, 0))
        self._acknowledge([item], [rec])

    @rule(w=st.integers(0, 1), item=items, off=st.integers(-3, 3).filter(bool))
    def append_expected_wrong(self, w, item, off):
        run_id, event = item
        have = self.run_seqs.get(run_id, 0)
        want = have + off if have + off >= 0 else have + 1
        with pytest.raises(SequenceConflict, match=f"run {run_id} is at sequence {have}, not {want} as expected"):
            self.writers[w].append(run_id, event, expected_seq=want)
        self.torn = False  # the writer looked at the end under the lock, and cut any torn tail

    @rule(w=st.integers(0, 1), batch=st.lists(items, min_size=2, max_size=5), data=st.data())
    def append_batch_one_expectation_wrong(self, w, batch, data):
        runs = sorted({r for r, _ in batch})
        wrong = data.draw(st.sampled_from(runs))
        expected = {r: self.run_seqs.get(r, 0) for r in runs}
        expected[wrong] += 1
        with pytest.raises(SequenceConflict, match=f"run {wrong} is at sequence"):
            self.writers[w].append_batch(batch, expected)
        self.torn = False

    @rule(w=st.integers(0, 1), run_id=run_ids())
    def run_seq(self, w, run_id):
        assert self.writers[w].run_seq(run_id) == self.run_seqs.get(run_id, 0)
        self.torn = False

    @rule(w=st.integers(0, 1))
    def flush(self, w):
        self.writers[w].flush()
        self.torn = False

    @rule(w=st.integers(0, 1))
    def reopen(self, w):
        self.writers[w].close()
        self.writers[w] = self._open()

    @rule()
    def follow(self):
        """A reader resuming from its last position sees exactly the records added since."""
        self.followed.extend(self.reader.records(self.position))
        self.position = self.reader.position if self.reader.position.segment else None
        assert self.followed == list(read_records(self.dir))

    # -- crashes: the bytes a writer killed at that instant leaves behind ---------------

    def _last_segment(self) -> str:
        return os.path.join(self.dir, fmt.list_segments(self.dir)[-1][1])

    def _can_crash(self) -> bool:
        # one crash at a time (every writer cuts a torn tail before it writes), and only
        # into a segment holding a record: a writer never seals an empty segment
        if self.torn or not os.path.isdir(self.dir) or not fmt.list_segments(self.dir):
            return False
        return os.path.getsize(self._last_segment()) > fmt.HEADER_LEN + fmt.FRAME_LEN + hashchain.SIZE  # past its starting link

    def _leave(self, data: bytes) -> None:
        with open(self._last_segment(), "ab") as f:
            f.write(data)
        self.torn = True
        self.crashes += 1

    @precondition(_can_crash)
    @rule(batch=st.lists(items, min_size=1, max_size=4), cut=st.floats(0, 1, exclude_max=True))
    def crash_mid_append(self, batch, cut):
        seq = len(list(read_records(self.dir)))
        counts = dict(self.run_seqs)
        payloads = []
        for run_id, event in batch:
            seq += 1
            counts[run_id] = counts.get(run_id, 0) + 1
            payloads.append(encoder.encode(Record(seq, run_id, counts[run_id], 0, event)))
        data = fmt.encode_batch(payloads)
        self._leave(data[: 1 + int(cut * (len(data) - 1))])  # 1 .. len-1 bytes: never the whole batch

    @precondition(_can_crash)
    @rule(cut=st.just(fmt.FRAME_LEN) | st.integers(1, fmt.FRAME_LEN - 1))
    def crash_mid_rollover(self, cut):
        """Killed while sealing a full segment: part of the seal, or all of it and no next segment."""
        self._leave(fmt.seal_frame()[:cut])

    # -- what must hold after every step ------------------------------------------------

    @invariant()
    def read_back_is_acknowledged(self):
        if not self.writers:
            return
        records = list(read_records(self.dir))
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert [r for r in records if r.run_id != JOURNAL_RUN] == self.acked
        repairs = [r.event for r in records if r.run_id == JOURNAL_RUN]
        assert all(isinstance(e, TailRepaired) and e.bytes_cut > 0 for e in repairs)
        assert len(repairs) <= self.crashes
        for e in repairs:
            assert os.path.getsize(os.path.join(self.dir, e.copy)) == e.bytes_cut

    @invariant()
    def check_finds_only_a_torn_tail(self):
        if not self.writers:
            return
        report = check(self.dir)
        assert report.records == len(list(read_records(self.dir)))
        assert {p.kind for p in report.problems} <= ({"torn-tail"} if self.torn else set()), report.problems


TestJournalModel = JournalMachine.TestCase
