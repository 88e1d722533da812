"""Replay: the timeline of a run, time travel to any point, and paced re-play."""

from __future__ import annotations

import pytest
from helpers.histories import SECOND, RunScript, every_point_of_life, make_run_id

from runjournal.journal import BadInput, FileStore, InvalidId
from runjournal.journal.writer import Journal
from runjournal.projections import Projector, RunNotFound, paced, state_at, timeline
from runjournal.projections import render


def test_state_at_every_sequence_is_the_manifest_that_was_on_disk(tmp_path):
    """Project one record at a time; after each, every manifest on disk equals time travel to that seq."""
    items, _ = every_point_of_life()
    runs_dir = tmp_path / ".runs"
    journal_dir = runs_dir / "default" / "journal"
    projector = Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False)
    store, paths = FileStore(str(runs_dir)), render.Paths(str(runs_dir), str(tmp_path / "out"), "default")
    compared = 0
    with Journal(str(journal_dir), durability="none") as journal:
        for item in items:
            rec = journal.append_batch([item])[0]
            projector.catch_up()
            for path in (runs_dir / "default" / "cli").glob("*/manifest.json"):
                doc = state_at(store, "default", path.parent.name, paths, seq=rec.seq)
                assert render.dumps(doc) == path.read_bytes(), (path.parent.name, rec.seq)
                compared += 1
    assert compared > 200


def test_state_at_a_time_and_before_the_start(tmp_path):
    run = RunScript(make_run_id(1), stages=1)
    run.start_stage(1, gap=10).finish_stage(1, gap=10).complete(gap=10)
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    with Journal(str(journal_dir), durability="none") as journal:
        journal.append_batch(run.items)
    start = run.items[0].ts
    store, paths = FileStore(str(tmp_path / ".runs")), render.Paths(str(tmp_path / ".runs"), str(tmp_path / "out"), "default")
    assert state_at(store, "default", run.run_id, paths, ts_ns=start + 15 * SECOND)["commands"][0]["status"] == "running"
    assert state_at(store, "default", run.run_id, paths, ts_ns=start + 25 * SECOND)["status"] == "in_progress"
    assert state_at(store, "default", run.run_id, paths)["status"] == "succeeded"
    with pytest.raises(RunNotFound, match="had not started at that time"):
        state_at(store, "default", run.run_id, paths, ts_ns=start - 1)
    with pytest.raises(RunNotFound, match="had not started at sequence 0"):
        state_at(store, "default", run.run_id, paths, seq=0)
    with pytest.raises(InvalidId, match="must not contain"):
        state_at(store, "default", "../etc", paths)


def test_timeline_steps(tmp_path):
    run = RunScript(make_run_id(1), stages=2)
    run.start_stage(1, gap=1).output(1, b"hello\nworld\n", gap=0.5).finish_stage(1, gap=0.5)
    run.start_stage(2).fail_stage(2, exit_code=3, stderr="bad\n").fail("stage-2 failed")
    other = RunScript(make_run_id(2)).start_stage(1)
    journal_dir = tmp_path / "t" / "journal"
    with Journal(str(journal_dir), durability="none") as journal:
        journal.append_batch(sorted(run.items + other.items, key=lambda i: i.ts))
    store = FileStore(str(tmp_path))
    steps = timeline(store, "t", run.run_id)
    assert [s.type for s, _ in steps] == [
        "run_started", "stage_started", "output", "stage_finished", "stage_started", "error", "stage_failed", "run_failed",
    ]
    assert all(rec.run_id == run.run_id for _, rec in steps)
    assert [s.elapsed for s, _ in steps[:4]] == [0.0, 1.0, 1.5, 2.0]
    out = steps[2][0]
    assert (out.stage_index, out.stream, out.excerpt) == (1, "stdout", "hello\nworld\n")
    assert (steps[3][0].stage_id, steps[3][0].exit_code) == ("stage-1", 0)
    assert (steps[6][0].exit_code, steps[7][0].excerpt) == (3, "stage-2 failed")
    with pytest.raises(RunNotFound, match="no run 2025-12-01T09-37-11-576Z-00000009"):
        timeline(store, "t", make_run_id(9))


def test_paced_divides_the_original_gaps(tmp_path):
    run = RunScript(make_run_id(1))
    run.start_stage(1, gap=2).heartbeat(5).heartbeat(0.5)
    with Journal(str(tmp_path / "j"), durability="none") as journal:
        records = journal.append_batch(run.items)
    assert [d for d, _ in paced(records, 10)] == [0.0, 0.2, 0.5, 0.05]
    assert [d for d, _ in paced(records, 0.5)] == [0.0, 4.0, 10.0, 1.0]
    with pytest.raises(BadInput, match="speed must be positive"):
        list(paced(records, 0))
