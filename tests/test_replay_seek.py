"""`state_at` starting near the run's first record (found by the time in its id) gives the
manifest the fold from sequence 1 gives: for every kind of run, point and lying id."""

from __future__ import annotations

import pytest
from helpers.histories import SECOND, T0, RunScript, interleave, lifecycle, make_run_id
from helpers.invoke import invoke  # noqa: F401 - a fixture
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import FileStore
from runjournal.journal import events as ev
from runjournal.journal.writer import Item, Journal
from runjournal.projections import RunNotFound, TaskState, render, replay, state_at
from runjournal.projections.replay import _fold, _from_run_start, id_time

MINUTE = 60 * SECOND
TASK = "default"


def full_fold(store: FileStore, run_id: str, paths: render.Paths, seq: int | None = None, ts_ns: int | None = None) -> bytes | None:
    """The manifest by the fold from sequence 1 (what state_at did before it seeked), None if the run had not started."""
    state = TaskState(task_id=TASK)
    _fold(state, store.records(TASK), run_id, seq, ts_ns)
    run = state.runs.get(run_id)
    return None if run is None else render.dumps(render.manifest(state, run, paths))


def seeked(store: FileStore, run_id: str, paths: render.Paths, seq: int | None = None, ts_ns: int | None = None) -> bytes | None:
    try:
        return render.dumps(state_at(store, TASK, run_id, paths, seq=seq, ts_ns=ts_ns))
    except RunNotFound:
        return None


def many_runs() -> tuple[list[Item], dict[str, RunScript]]:
    """Forty runs started two minutes apart (ids naming their start), each busy for five
    minutes; among them a parent with a child, a resumed run, a stale one, one whose id names
    no time, one whose id says an hour after its start and one a day before it, and one that
    links a run that started long before it as its child."""
    scripts: dict[str, RunScript] = {}
    for n in range(40):
        start = T0 + n * 2 * MINUTE
        rid = {7: "build-seven", 11: make_run_id(n, start + 60 * MINUTE), 13: make_run_id(n, start - 24 * 60 * MINUTE)}.get(n, make_run_id(n, start))
        if n == 20:
            parent = RunScript(rid, start_ts=start, stages=2, kinds=["command", "subpipeline"]).stage(1)
            parent.start_stage(2)
            child = RunScript(make_run_id(99, parent.ts + SECOND), start_ts=parent.ts + SECOND, pipeline="child", stages=1, parent=rid)
            parent.link_child(2, child.run_id, gap=1.5)
            for _ in range(20):
                child.heartbeat(5)
            child.stage(1).complete()
            parent.ts = child.ts
            parent.finish_stage(2).complete()
            scripts[rid], scripts[child.run_id] = parent, child
            continue
        s = RunScript(rid, start_ts=start, stages=2).stage(1)
        for _ in range(50):
            s.heartbeat(5)
        if n == 25:
            s.stage(2, exit_code=1).fail().resume("accepted", gap=10).skip_stage(1).stage(2).complete()
        elif n == 30:
            s.start_stage(2).stale(60)
        elif n == 35:
            s.link_child(2, make_run_id(3, T0 + 6 * MINUTE)).stage(2).complete()
        else:
            s.stage(2).complete()
        scripts[rid] = s
    return interleave(scripts.values()), scripts


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    """The runs of ``many_runs`` in a journal of a few hundred small segments."""
    root = tmp_path_factory.mktemp("seek")
    items, scripts = many_runs()
    with Journal(str(root / ".runs" / TASK / "journal"), durability="none", segment_bytes=2048) as j:
        for start in range(0, len(items), 7):
            j.append_batch(items[start : start + 7])
    store = FileStore(str(root / ".runs"))
    paths = render.Paths(str(root / ".runs"), str(root / "out"), TASK)
    records = list(store.records(TASK))
    assert len({f for f in (root / ".runs" / TASK / "journal").iterdir() if f.name.startswith("seg-")}) > 50
    return store, paths, scripts, records


def points(records, run_id: str) -> list[int]:
    """Sequences around the run's life: before it, its first record, a few inside, the end."""
    seqs = [r.seq for r in records if r.run_id == run_id]
    inside = seqs[:: max(1, len(seqs) // 5)]
    return sorted({seqs[0] - 1, seqs[0], *inside, seqs[-1], records[-1].seq})


@pytest.mark.parametrize("n", [0, 1, 3, 7, 11, 13, 20, 25, 30, 35, 39, 99])
def test_every_kind_of_run_at_sequences_and_times_is_the_full_fold(journal, n):
    store, paths, scripts, records = journal
    rid = next(r for r in scripts if r.endswith(f"{n:08x}")) if n != 7 else "build-seven"
    for seq in points(records, rid):
        assert seeked(store, rid, paths, seq=seq) == full_fold(store, rid, paths, seq=seq), seq
        ts = records[seq - 1].ts if seq else T0 - 1
        for at in (ts - 1, ts, ts + SECOND // 3):
            assert seeked(store, rid, paths, ts_ns=at) == full_fold(store, rid, paths, ts_ns=at), at
    assert seeked(store, rid, paths) == full_fold(store, rid, paths)


def test_the_seek_is_taken_where_it_can_be_and_left_where_it_cannot(journal):
    """Runs whose id names their start are folded from near it; the others from sequence 1."""
    store, _, scripts, records = journal
    last = records[-1].seq
    starts = {rid: next(r.seq for r in records if r.run_id == rid) for rid in scripts}
    for rid, start in starts.items():
        state = _from_run_start(store, TASK, rid, last, None)
        # no time in the id, an hour late, a day early, at the journal's start (seek: 1)
        if rid == "build-seven" or rid.endswith(("0000000b", "0000000d")) or start < 10:
            assert state is None, rid
        elif not rid.endswith("00000023"):  # run 35: its child began before it (below)
            assert state is not None and rid in state.runs, rid
            # just before it began: known without the fold from 1 (its first record is read)
            before = _from_run_start(store, TASK, rid, start - 1, None)
            assert before is not None and rid not in before.runs, rid
            before = _from_run_start(store, TASK, rid, None, records[start - 1].ts - 1)
            assert before is not None and rid not in before.runs, rid
    parent = make_run_id(20, T0 + 40 * MINUTE)
    assert _from_run_start(store, TASK, parent, last, None).runs[parent].children  # its child began after it
    late_parent = make_run_id(35, T0 + 70 * MINUTE)
    link = next(r.seq for r in records if r.run_id == late_parent and type(r.event) is ev.ChildRunLinked)
    assert _from_run_start(store, TASK, late_parent, link - 1, None) is not None
    assert _from_run_start(store, TASK, late_parent, link, None) is None  # the child's start is not read


def test_a_fold_from_later_than_the_start_of_the_run_is_refused(journal, monkeypatch):
    store, paths, scripts, records = journal
    rid = make_run_id(30, T0 + 60 * MINUTE)
    assert rid in scripts
    start = next(r.seq for r in records if r.run_id == rid)
    monkeypatch.setattr(replay, "_seek_start", lambda *a: start + 1)
    assert _from_run_start(store, TASK, rid, records[-1].seq, None) is None
    monkeypatch.setattr(replay, "_seek_start", lambda *a: start)
    assert _from_run_start(store, TASK, rid, records[-1].seq, None) is not None
    assert seeked(store, rid, paths) == full_fold(store, rid, paths)


@given(st.data())
def test_drawn_runs_and_points(journal, data):
    store, paths, scripts, records = journal
    rid = data.draw(st.sampled_from(sorted(scripts)), label="run")
    seq = data.draw(st.integers(0, records[-1].seq + 1), label="seq")
    assert seeked(store, rid, paths, seq=seq) == full_fold(store, rid, paths, seq=seq)
    ts = data.draw(st.integers(T0 - MINUTE, records[-1].ts + MINUTE), label="ts")
    assert seeked(store, rid, paths, ts_ns=ts) == full_fold(store, rid, paths, ts_ns=ts)


def test_a_record_stamped_ahead_before_the_run_does_not_hide_it(tmp_path):
    """A writer whose clock is a day ahead, long before the run: it does not end the fold of
    the run (records before the run's first one never do), with the seek or without it."""
    runs = [lifecycle(make_run_id(n, T0 + n * 10 * MINUTE), start_ts=T0 + n * 10 * MINUTE) for n in range(12)]
    items = interleave(runs)
    items.insert(5, Item("ahead", ev.Heartbeat(), T0 + 24 * 60 * MINUTE))
    with Journal(str(tmp_path / ".runs" / TASK / "journal"), durability="none", segment_bytes=4096) as j:
        for start in range(0, len(items), 3):
            j.append_batch(items[start : start + 3])
    store = FileStore(str(tmp_path / ".runs"))
    paths = render.Paths(str(tmp_path / ".runs"), str(tmp_path / "out"), TASK)
    last = runs[-1]
    at = last.items[2].ts
    assert _from_run_start(store, TASK, last.run_id, None, at) is not None  # the seek is taken
    assert seeked(store, last.run_id, paths, ts_ns=at) == full_fold(store, last.run_id, paths, ts_ns=at) is not None
    assert state_at(store, TASK, last.run_id, paths, ts_ns=at)["status"] == "in_progress"
    with pytest.raises(RunNotFound, match="had not started at that time"):
        state_at(store, TASK, last.run_id, paths, ts_ns=last.items[0].ts - 1)
    assert seeked(store, last.run_id, paths, seq=len(items)) == full_fold(store, last.run_id, paths, seq=len(items)) is not None


def test_archived_runs_and_the_runs_after_them(tmp_path, invoke):  # noqa: F811 - the fixture
    """After `runjournal archive`, an archived run is put back by the runs_archived record (the
    fold from 1: its first record is not live), and a live run is folded from near its start."""
    runs = [lifecycle(make_run_id(n, T0 + n * 10 * MINUTE), start_ts=T0 + n * 10 * MINUTE) for n in range(12)]
    with Journal(str(tmp_path / ".runs" / TASK / "journal"), durability="none", segment_bytes=1500) as j:
        for item in interleave(runs):
            j.append_batch([item])
    code, _, err = invoke("archive", "--keep-last", "2")
    assert code == 0, err
    store = FileStore(str(tmp_path / ".runs"))
    paths = render.Paths(str(tmp_path / ".runs"), str(tmp_path / "out"), TASK)
    archived = store.archived_runs(TASK)
    assert runs[0].run_id in archived and runs[-1].run_id not in archived
    records = list(store.records(TASK))
    for run in (runs[0], runs[5], runs[-2], runs[-1]):
        for seq in (records[0].seq, records[len(records) // 2].seq, records[-1].seq, None):
            assert seeked(store, run.run_id, paths, seq=seq) == full_fold(store, run.run_id, paths, seq=seq), (run.run_id, seq)
    assert full_fold(store, runs[0].run_id, paths) is not None
    assert _from_run_start(store, TASK, runs[0].run_id, None, None) is None
    assert _from_run_start(store, TASK, runs[-1].run_id, None, None) is not None


def test_id_time():
    assert id_time("2025-12-01T09-37-11-576Z-1a60ebea") == T0
    assert id_time(make_run_id(3, T0 + 1_234_000_000)) == T0 + 1_234_000_000
    for rid in ("build-seven", "2025-13-01T09-37-11-576Z-1a60ebea", "0000-01-01T00-00-00-000Z-00000000", "2025-12-01T09:37:11.576Z"):
        assert id_time(rid) is None, rid


def test_first_record(journal):
    store, _, scripts, records = journal
    for rid in scripts:
        assert replay.first_record(store, TASK, rid) == next(r for r in records if r.run_id == rid), rid
    assert replay.first_record(store, TASK, make_run_id(77, T0 + 30 * MINUTE)) is None
