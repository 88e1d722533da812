"""The EventStore contract: what every backend does, proven against each through one factory.

``StoreContract`` holds the tests; a backend's class gives ``make_store`` (a store on a fresh,
empty place), ``url`` (what another process passes to ``open_store``) and ``make_anew`` (drop
a task's journal so that it starts again). File-only behaviour (torn tails, bit flips, spills,
the head) is tested in the test_journal_* files; a second backend proves itself by passing
this file unchanged.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DEADLINE, HELPERS, clean_env, pg, wait_until
from helpers.strategies import small_events
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from runjournal.journal import (
    EventStore,
    FileStore,
    InvalidId,
    Item,
    JournalNotFound,
    Record,
    SequenceConflict,
    WriterStats,
    open_store,
)
from runjournal.journal import events as ev
from runjournal.journal.transfer import export_lines, import_records, parse_export

RUN_A = "2025-12-01T09-37-11-576Z-0000000a"
RUN_B = "2025-12-01T09-37-11-576Z-0000000b"
TS = 1_764_581_831_576_000_000


def beat(n: int) -> ev.OutputChunk:
    return ev.OutputChunk(index=n, stream="stdout", data=b"%d" % n)


class StoreContract:
    """Every EventStore passes these."""

    def make_store(self, place: Path, unit_bytes: int | None = None) -> EventStore:
        """A store on ``place``; ``unit_bytes``: the most an archived unit holds (a segment's size)."""
        raise NotImplementedError

    def url(self, place: Path) -> str:
        raise NotImplementedError

    def make_anew(self, store: EventStore, task: str) -> None:
        raise NotImplementedError

    def cleanup(self, place: Path) -> None:
        """Remove what ``make_store(place)`` left outside ``place`` (a database schema)."""

    @pytest.fixture
    def store(self, tmp_path: Path):
        with self.make_store(tmp_path) as store:
            yield store

    # -- appends and reads ----------------------------------------------------------------

    def test_appends_get_gapless_sequences_and_read_back_the_same(self, store: EventStore):
        first = store.append("t", RUN_A, beat(1))
        batch = store.append_batch("t", [Item(RUN_B, beat(2), TS), Item(RUN_A, beat(3), TS + 1)])
        assert [(r.seq, r.run_id, r.run_seq) for r in [first, *batch]] == [(1, RUN_A, 1), (2, RUN_B, 1), (3, RUN_A, 2)]
        assert batch[0].ts == TS
        assert list(store.records("t")) == [first, *batch]
        assert [r.seq for r in store.records("t", 2)] == [2, 3]
        assert list(store.records("t", 4)) == []
        assert (store.last_seq("t"), store.run_seq("t", RUN_A), store.run_seq("t", "2025-12-01T09-37-11-576Z-00000000")) == (3, 2, 0)
        assert store.run_seqs("t", [RUN_A, RUN_B]) == {RUN_A: 2, RUN_B: 1}

    def test_an_empty_batch_appends_nothing(self, store: EventStore):
        assert store.append_batch("t", []) == []
        assert store.last_seq("t") == 0

    def test_tasks_are_separate_journals(self, store: EventStore):
        store.append("b", RUN_A, beat(1))
        store.append("a", RUN_A, beat(1))
        store.append("a", RUN_A, beat(2))
        assert store.tasks() == ["a", "b"]
        assert (store.exists("a"), store.exists("c")) == (True, False)
        assert [(r.seq, r.run_seq) for r in store.records("b")] == [(1, 1)]
        assert store.last_seq("a") == 2

    def test_a_task_without_a_journal_is_not_found_and_a_bad_task_id_is_refused(self, store: EventStore):
        with pytest.raises(JournalNotFound):
            list(store.records("nothing-here"))
        assert store.identity("nothing-here") is None
        for bad in ("../x", "", ".hidden", "a/b"):
            with pytest.raises(InvalidId):
                store.append(bad, RUN_A, beat(1))
        assert store.tasks() == []

    def test_a_run_id_that_cannot_name_a_path_is_refused_and_nothing_is_written(self, store: EventStore):
        store.append("t", RUN_A, beat(1))
        for bad in ("../../outside/x", "/etc/passwd", "", ".hidden", "a\x1b[2Jb", "x" * 201):
            with pytest.raises(InvalidId):
                store.append("t", bad, beat(2))
            with pytest.raises(InvalidId):
                store.append_batch("t", [Item(RUN_B, beat(2)), Item(bad, beat(3))])
        assert store.last_seq("t") == 1

    # -- expected sequences -----------------------------------------------------------------

    def test_an_append_that_expects_another_sequence_fails_and_writes_nothing(self, store: EventStore):
        store.append("t", RUN_A, beat(1))
        assert store.append("t", RUN_A, beat(2), expected_seq=1).run_seq == 2
        with pytest.raises(SequenceConflict, match=f"run {RUN_A} is at sequence 2, not 1 as expected"):
            store.append("t", RUN_A, beat(3), expected_seq=1)
        with pytest.raises(SequenceConflict):
            store.append_batch("t", [Item(RUN_B, beat(3)), Item(RUN_A, beat(4))], expected={RUN_B: 0, RUN_A: 5})
        assert store.last_seq("t") == 2  # the whole batch was refused, RUN_B's part too
        assert store.append_batch("t", [Item(RUN_B, beat(3))], expected={RUN_B: 0})[0].seq == 3

    # -- resuming a read ----------------------------------------------------------------------

    def test_a_read_resumes_from_its_hint_and_a_hint_that_does_not_fit_is_ignored(self, store: EventStore):
        store.append_batch("t", [Item(RUN_A, beat(n)) for n in range(1, 6)])
        reading = store.records("t")
        assert [r.seq for r in reading] == [1, 2, 3, 4, 5]
        hint = reading.hint
        store.append("t", RUN_B, beat(6))
        assert [r.seq for r in store.records("t", 6, hint)] == [6]
        assert [r.seq for r in store.records("t", 3, hint)] == [3, 4, 5, 6]  # the sequence wins over the hint
        for bogus in ("nonsense", "seg-00000000000000000001.rjl:999999", ":", "x" * 300):
            assert [r.seq for r in store.records("t", 5, bogus)] == [5, 6]

    # -- reopening and identity ---------------------------------------------------------------

    def test_another_store_on_the_same_place_sees_the_same_journal(self, store: EventStore, tmp_path: Path):
        written = store.append_batch("t", [Item(RUN_A, beat(1)), Item(RUN_B, beat(2))])
        identity = store.identity("t")
        assert identity
        with open_store(self.url(tmp_path)) as other:
            assert list(other.records("t")) == written
            assert other.identity("t") == identity
            assert other.append("t", RUN_A, beat(3)).seq == 3
        assert store.append("t", RUN_A, beat(4)) == Record(4, RUN_A, 3, store.records("t", 4).__next__().ts, beat(4))

    def test_a_journal_made_anew_has_another_identity(self, store: EventStore):
        store.append("t", RUN_A, beat(1), expected_seq=0)
        before = store.identity("t")
        self.make_anew(store, "t")
        assert store.identity("t") is None
        store.append("t", RUN_B, beat(1))
        assert store.identity("t") not in (before, None, "")

    # -- following ----------------------------------------------------------------------------

    def test_follow_yields_what_is_appended_after_it_started(self, store: EventStore):
        store.append("t", RUN_A, beat(1))
        stop = threading.Event()
        seen: list[int] = []

        def follower():
            for rec in store.follow("t", 1, stop):
                seen.append(rec.seq)

        thread = threading.Thread(target=follower)
        thread.start()
        try:
            wait_until(lambda: seen == [1], "the first record")
            for n in range(2, 6):
                store.append("t", RUN_A, beat(n))
                wait_until(lambda n=n: seen[-1:] == [n], f"record {n} followed")
        finally:
            stop.set()
            thread.join(DEADLINE)
        assert seen == [1, 2, 3, 4, 5]

    def test_wait_wakes_on_an_append_and_times_out_without_one(self, store: EventStore):
        store.append("t", RUN_A, beat(1))
        assert store.wait("t", 1, 0.05) is False
        woke = []
        thread = threading.Thread(target=lambda: woke.append(store.wait("t", 1, DEADLINE)))
        thread.start()
        wait_until(lambda: thread.is_alive(), "the waiter")
        store.append("t", RUN_A, beat(2))
        thread.join(DEADLINE)
        assert woke == [True]

    def test_a_subscriber_hears_of_appends_to_any_task_new_ones_too(self, store: EventStore):
        heard: list[str] = []
        store.append("old", RUN_A, beat(1))
        subscription = store.subscribe(heard.append)
        try:
            store.append("old", RUN_A, beat(2))
            wait_until(lambda: "old" in heard, "a notification for task old")
            store.append("new", RUN_A, beat(1))
            wait_until(lambda: "new" in heard, "a notification for a task made after subscribing")
        finally:
            subscription.stop()

    # -- checking, statistics, moving runs ------------------------------------------------------

    def test_a_clean_journal_checks_ok_and_writer_stats_are_reported(self, store: EventStore):
        store.append_batch("t", [Item(RUN_A, beat(1)), Item(RUN_B, beat(2))])
        report = store.check("t")
        assert (report.ok, report.records, report.runs) == (True, 2, 2)
        assert store.repair("t").ok
        assert isinstance(store.writer_stats("t"), WriterStats)

    def test_export_then_import_round_trips_and_a_second_import_adds_nothing(self, store: EventStore, tmp_path: Path):
        store.append_batch("src", [Item(RUN_A, beat(1), TS), Item(RUN_B, beat(2), TS + 1), Item(RUN_A, beat(3), TS + 2)])
        exported = tmp_path / "x.jsonl"
        exported.write_bytes(b"".join(export_lines(store, "src")))
        with exported.open("rb") as f:
            records = parse_export(f, "x.jsonl")
        assert import_records(store, "dst", records) == 3
        assert import_records(store, "dst", records) == 0
        strip = [(r.run_id, r.run_seq, r.ts, r.event) for r in store.records("src")]
        assert [(r.run_id, r.run_seq, r.ts, r.event) for r in store.records("dst")] == strip

    # -- real processes ---------------------------------------------------------------------------

    def test_concurrent_processes_keep_order_gapless_and_lose_nothing_when_one_is_killed(self, tmp_path: Path):
        writers, count = 6, 60
        url = self.url(tmp_path)
        acks = {k: tmp_path / f"w{k}.acks" for k in range(writers)}
        with contextlib.ExitStack() as stack:
            procs = {}
            for k in range(writers):
                p = subprocess.Popen(
                    [sys.executable, str(HELPERS / "store_writer.py"), url, "t", str(k), str(count if k else 10_000), str(acks[k])],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env(),
                )  # fmt: skip
                stack.callback(_reap, p)
                procs[k] = p
            for p in procs.values():  # the barrier: every writer starts appending at once
                p.stdin.write("go\n")
                p.stdin.flush()
            wait_until(lambda: acks[0].exists() and len(acks[0].read_text().splitlines()) >= 30, "writer 0 to have 30 acknowledged events")
            procs[0].send_signal(signal.SIGKILL)  # writer 0 would append 10,000: it dies mid-stream
            assert procs[0].wait(DEADLINE) == -signal.SIGKILL
            for k in range(1, writers):
                assert procs[k].communicate(timeout=DEADLINE * 2)[0] == "done\n"
        with self.make_store(tmp_path) as store:
            records = list(store.records("t"))
            assert [r.seq for r in records] == list(range(1, len(records) + 1))  # gapless, in commit order
            by_run: dict[str, list[int]] = {}
            for r in records:
                by_run.setdefault(r.run_id, []).append(r.run_seq)
            assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_run.values())
            stored = {(r.run_id, r.run_seq, r.seq) for r in records}
            for k in range(writers):
                acked = {tuple(int(x) if i else x for i, x in enumerate(line.split())) for line in acks[k].read_text().splitlines()}
                assert acked <= stored, f"writer {k}: an acknowledged event is missing"
            assert store.check("t").ok

    def test_first_at_finds_where_the_stamps_reach_a_time_without_reading_from_the_start(self, tmp_path: Path):
        with self.make_store(tmp_path, unit_bytes=1024) as store:
            for n in range(200):  # stamps 10 apart, in many segments
                store.append_batch("t", [Item(RUN_A, beat(n), TS + 10 * n)])
            for n in (0, 1, 57, 58, 199):
                assert store.first_at("t", TS + 10 * n) == n + 1
                assert store.first_at("t", TS + 10 * n - 3) == n + 1
            assert store.first_at("t", TS - 1000) == 1
            assert store.first_at("t", TS + 10 * 199 + 1) is None

    # -- retention ----------------------------------------------------------------------------

    def test_archive_moves_the_oldest_units_of_archived_runs_each_record_once(self, tmp_path: Path):
        run_c = "2025-12-01T09-37-11-576Z-0000000c"
        with self.make_store(tmp_path, unit_bytes=2048) as store:
            chunk = lambda n: ev.OutputChunk(index=1, stream="stdout", data=b"%04d" % n + b"x" * 150)  # noqa: E731
            for n in range(30):
                store.append("t", RUN_A, chunk(n))
            store.record("t", ev.RunsArchived(runs=(), state=b"earlier"))
            for n in range(30):
                store.append("t", RUN_B, chunk(n))
                store.append("t", run_c if n >= 20 else RUN_B, chunk(n))  # C, still open, begins inside B
            covered = store.record("t", ev.RunsArchived(runs=(RUN_A, RUN_B), state=b"now")).seq
            store.append("t", run_c, chunk(99))
            everything = list(store.records("t"))
            reading = store.records("t")
            first = next(reading)  # a read begun before the archive reads on across it

            moved = store.archive("t", covered, {RUN_A, RUN_B})

            assert moved and moved[0].first == 1, moved
            assert all(b.first == a.last + 1 for a, b in zip(moved, moved[1:])), moved
            assert all(set(u.runs) <= {RUN_A, RUN_B, ""} and u.stored_bytes < u.bytes for u in moved), moved
            assert store.archive_units("t") == moved
            live = list(store.records("t"))
            assert live[0].seq == moved[-1].last + 1 and live[-1].seq == everything[-1].seq
            assert run_c not in {r.run_id for r in everything if r.seq <= moved[-1].last}
            archived = list(store.archived_records("t", {RUN_A, RUN_B, ""}))
            assert archived + live == everything  # each record once, as it was
            assert [first, *reading] == everything
            assert list(store.records("t", 5)) == everything[4:]  # a cursor inside what moved: read from the archive
            assert RUN_A in store.archived_runs("t") <= {RUN_A, RUN_B}
            assert list(store.archived_records("t", {run_c})) == []
            report = store.check("t")
            assert report.ok and report.archived == len(moved), report.problems
            assert store.archive("t", covered, {RUN_A, RUN_B}) == []  # nothing more to move

            store.prune_archive("t", {moved[0].name})
            units = store.archive_units("t")
            assert [u.pruned for u in units] == [True] + [False] * (len(moved) - 1)
            assert [r.seq for r in store.archived_records("t", {RUN_A, RUN_B, ""})] == [r.seq for r in archived if r.seq > moved[0].last]
            report = store.check("t")
            assert report.ok and report.pruned == 1, report.problems
            store.append("t", run_c, chunk(100))  # appends go on after it all
            assert store.check("t").ok


def _reap(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(DEADLINE)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()


class TestFileStore(StoreContract):
    def make_store(self, place: Path, unit_bytes: int | None = None) -> EventStore:
        return FileStore(str(place / "runs"), durability="none", segment_bytes=unit_bytes)

    def url(self, place: Path) -> str:
        return str(place / "runs")

    def make_anew(self, store: EventStore, task: str) -> None:
        store.close()  # its writer holds the old journal open
        shutil.rmtree(store.journal_dir(task))


class TestPostgresStore(StoreContract):
    """The same contract on a PostgreSQL server (``helpers.pg``): each test in a schema of its own."""

    @pytest.fixture(autouse=True)
    def _schema(self, tmp_path: Path):
        pg.server_url()  # skips (fails under CI) without a server
        yield
        self.cleanup(tmp_path)

    def cleanup(self, place: Path) -> None:
        pg.drop_schema(str(place))

    def make_store(self, place: Path, unit_bytes: int | None = None) -> EventStore:
        store = open_store(self.url(place), durability="none")
        if unit_bytes is not None:
            store.archive_unit_bytes = unit_bytes
        return store

    def url(self, place: Path) -> str:
        return pg.store_url(str(place))

    def make_anew(self, store: EventStore, task: str) -> None:
        store.drop_task(task)


# -- the stateful model, for every backend ---------------------------------------------------

run_ids = st.sampled_from([RUN_A, RUN_B, "2025-12-01T09-37-11-576Z-0000000c"])
items = st.lists(st.tuples(run_ids, small_events()), min_size=1, max_size=4)


def store_machine(contract: StoreContract):
    """Two stores on one place (as two processes would be) against a model: a list of records."""

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            import tempfile

            self.place = Path(tempfile.mkdtemp(prefix="runjournal-contract-"))
            self.stores = [contract.make_store(self.place), contract.make_store(self.place)]
            self.model: list[tuple[str, int]] = []  # (run id, run seq) of every record, in order
            self.hint: tuple[int, str | None] = (1, None)

        def teardown(self):
            for s in self.stores:
                s.close()
            contract.cleanup(self.place)
            shutil.rmtree(self.place, ignore_errors=True)

        def _run_seq(self, run_id: str) -> int:
            return sum(1 for r, _ in self.model if r == run_id)

        @rule(which=st.integers(0, 1), batch=items)
        def append(self, which, batch):
            records = self.stores[which].append_batch("t", [Item(r, e) for r, e in batch])
            for run_id, _ in batch:
                self.model.append((run_id, self._run_seq(run_id) + 1))
            assert [(r.run_id, r.run_seq) for r in records] == self.model[len(self.model) - len(batch) :]

        @rule(which=st.integers(0, 1), run_id=run_ids, off=st.integers(-1, 1), event=small_events())
        def append_expecting(self, which, run_id, off, event):
            expected = self._run_seq(run_id) + off
            if off == 0:
                rec = self.stores[which].append("t", run_id, event, expected_seq=expected)
                self.model.append((run_id, expected + 1))
                assert rec.seq == len(self.model)
            else:
                with pytest.raises(SequenceConflict):
                    self.stores[which].append("t", run_id, event, expected_seq=expected)

        @rule(which=st.integers(0, 1))
        def reopen(self, which):
            self.stores[which].close()
            self.stores[which] = contract.make_store(self.place)

        @rule(which=st.integers(0, 1), data=st.data())
        def read_from(self, which, data):
            start = data.draw(st.integers(1, len(self.model) + 1), label="from_seq")
            got = [(r.run_id, r.run_seq) for r in self.stores[which].records("t", start)] if self.model else []
            assert got == self.model[start - 1 :]

        @rule(which=st.integers(0, 1))
        def resume_with_the_hint(self, which):
            if not self.model:
                return
            start, hint = self.hint
            reading = self.stores[which].records("t", start, hint)
            got = [(r.run_id, r.run_seq) for r in reading]
            assert got == self.model[start - 1 :]
            self.hint = (len(self.model) + 1, reading.hint or hint)

        @invariant()
        def run_seqs_agree(self):
            if self.model:
                for run_id in {r for r, _ in self.model}:
                    assert self.stores[0].run_seq("t", run_id) == self._run_seq(run_id)

    return StoreMachine


@pytest.mark.parametrize("contract", [TestFileStore(), TestPostgresStore()], ids=["file", "postgres"])
def test_the_store_follows_the_model(contract: StoreContract):
    if isinstance(contract, TestPostgresStore):
        pg.server_url()
    machine = store_machine(contract)
    machine.TestCase.settings = settings(max_examples=settings().max_examples // 5 or 1, stateful_step_count=20, deadline=None)
    machine.TestCase().runTest()
