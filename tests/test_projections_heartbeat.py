"""Heartbeats alone rewrite a manifest at most once per 30 s of event time; .heartbeat always has the newest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.histories import SECOND, RunScript, make_run_id

from runjournal.journal import iso_utc
from runjournal.journal import events as ev
from runjournal.journal.writer import Journal
from runjournal.projections import Projector, projector as projector_module


@pytest.fixture
def writes(monkeypatch):
    """Every file the projector writes, in order."""
    written: list[str] = []
    real = projector_module.atomic_write

    def recording(path, data, mode=0o644, sync=True, dir_fd=None):
        written.append(path)
        real(path, data, mode, sync, dir_fd)

    monkeypatch.setattr(projector_module, "atomic_write", recording)
    return written


def test_heartbeats_alone_rewrite_the_manifest_at_most_every_30_s(tmp_path, writes):
    run = RunScript(make_run_id(1))
    run.start_stage(1)
    runs_dir = tmp_path / ".runs"
    manifest = str(runs_dir / "default" / "cli" / run.run_id / "manifest.json")
    beat_file = runs_dir / "default" / "cli" / run.run_id / ".heartbeat"
    projector = Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False)
    rewrites: list[int] = []  # event time of each heartbeat that rewrote the manifest
    with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
        journal.append_batch(run.items)
        projector.catch_up()
        last_change = run.ts
        for n in range(60):  # five minutes of heartbeats, 4.9 to 5.1 s apart
            run.heartbeat(5.0 + (n % 3 - 1) / 10)
            journal.append_batch([run.items[-1]])
            writes.clear()
            projector.catch_up()
            assert beat_file.read_text() == iso_utc(run.ts) + "\n"  # always the newest
            if manifest in writes:
                rewrites.append(run.ts)
        assert rewrites, "the manifest's heartbeat_at never moved"
        for before, after in zip([last_change, *rewrites], rewrites):
            assert after - before >= 30 * SECOND
        assert len(rewrites) <= 300 // 30
        doc = json.loads(Path(manifest).read_bytes())
        assert doc["heartbeat_at"] == iso_utc(rewrites[-1])

        # a status change is written at once, and carries the newest heartbeat with it
        run.finish_stage(1, gap=1.0)
        journal.append_batch([run.items[-1]])
        writes.clear()
        projector.catch_up()
        assert manifest in writes
        doc = json.loads(Path(manifest).read_bytes())
        assert doc["commands"][0]["status"] == "succeeded"
        assert doc["heartbeat_at"] == iso_utc(run.ts - SECOND)
        assert doc["updated_at"] == iso_utc(run.ts)


def test_throttle_is_by_event_time_not_by_batching(tmp_path):
    """One catch-up for all heartbeats or one per heartbeat: the same manifest."""
    run = RunScript(make_run_id(1))
    run.start_stage(1)
    for _ in range(20):
        run.heartbeat(7.0)
    out = []
    for name, batch in (("one", len(run.items)), ("each", 1)):
        runs_dir = tmp_path / name / ".runs"
        projector = Projector(str(runs_dir), str(tmp_path / name / "out"), "default", sync=False)
        with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
            for i in range(0, len(run.items), batch):
                journal.append_batch(run.items[i : i + batch])
                projector.catch_up()
        out.append((runs_dir / "default" / "cli" / run.run_id / "manifest.json").read_bytes())
    assert out[0] == out[1]
    # the stage started 0.1 s after the run (heartbeat_at = start); then beats 35, 70, 105 and 140 s in
    assert json.loads(out[0])["heartbeat_at"] == iso_utc(run.items[1].ts + 140 * SECOND)


def test_heartbeat_gaps_reach_the_summary(tmp_path):
    run = RunScript(make_run_id(1))
    run.start_stage(1).heartbeat(5).heartbeat(45).heartbeat(5)
    runs_dir = tmp_path / ".runs"
    with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
        journal.append_batch(run.items)
    Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False).catch_up()
    summary = json.loads((runs_dir / "default" / "metrics" / "summary.json").read_bytes())
    assert summary["heartbeats"]["max_gap_seconds"] == 45.0
    assert summary["heartbeats"]["gaps_over_stale_limit"] == 1
    assert summary["updated_at"] == iso_utc(run.ts - 5 * SECOND)  # the newest record that changed the summary
    assert isinstance(ev.Heartbeat(), ev.Event)
