"""Every manifest, at every point of a run's life, validates against Codex Orchestrator's schema."""

from __future__ import annotations

import json

import pytest
from helpers import compat_file
from helpers.histories import SECOND, RunScript, every_point_of_life, make_run_id

from runjournal.journal import events as ev
from runjournal.journal.writer import Journal
from runjournal.journal import FileStore
from runjournal.projections import Projector, render, state_at

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test dependency: pip install -e '.[test]'")

@pytest.fixture(scope="module")
def validator():
    schema = json.loads(compat_file("manifest.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def assert_valid(validator, doc: dict, where: str) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{where}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_manifest_after_every_record_validates(tmp_path, validator):
    items, ends = every_point_of_life()
    runs_dir = tmp_path / ".runs"
    projector = Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False)
    seen_statuses = set()
    with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
        for n, item in enumerate(items, 1):
            journal.append_batch([item])
            projector.catch_up()
            for path in sorted((runs_dir / "default" / "cli").glob("*/manifest.json")):
                doc = json.loads(path.read_bytes())
                assert_valid(validator, doc, f"{path.parent.name} after record {n}")
                seen_statuses.add(doc["status"])
                seen_statuses.update(f"command:{c['status']}" for c in doc["commands"])
    assert seen_statuses >= {"queued", "in_progress", "succeeded", "failed", "cancelled"}
    assert seen_statuses >= {"command:pending", "command:running", "command:succeeded", "command:failed", "command:skipped"}
    for run_id, status in ends.items():
        doc = json.loads((runs_dir / "default" / "cli" / run_id / "manifest.json").read_bytes())
        assert doc["status"] == status, run_id


def test_end_states_show_what_happened(tmp_path, validator):
    items, _ = every_point_of_life()
    runs_dir = tmp_path / ".runs"
    with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
        journal.append_batch(items)
    Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False).catch_up()

    def manifest(n: int) -> dict:
        return json.loads((runs_dir / "default" / "cli" / make_run_id(n) / "manifest.json").read_bytes())

    stale = manifest(4)
    assert stale["status"] == "in_progress"
    assert stale["status_detail"].startswith("stale: no heartbeat since 2025-12-01T09:37:19.676Z (over 30 s)")
    resumed = manifest(5)
    assert [(e["outcome"], e["actor"]) for e in resumed["resume_events"]] == [("blocked", "tester"), ("accepted", "tester")]
    assert [c["status"] for c in resumed["commands"]] == ["skipped", "succeeded"]
    assert resumed["resume_token"] == "sha256:0f1e2d3c"  # a fingerprint, never the token
    parent, child = manifest(6), manifest(7)
    assert parent["child_runs"] == [
        {"run_id": child["run_id"], "pipeline_id": "child", "status": "succeeded", "manifest": f".runs/default/cli/{child['run_id']}/manifest.json"}
    ]
    assert parent["commands"][1]["sub_run_id"] == child["run_id"]
    assert child["parent_run_id"] == parent["run_id"]
    for doc in (stale, resumed, parent, child):
        assert_valid(validator, doc, doc["run_id"])


def test_stale_as_observed_by_a_projector_and_cleared_by_a_heartbeat(tmp_path, validator):
    runs_dir = tmp_path / ".runs"
    run = RunScript(make_run_id(1))
    run.start_stage(1).heartbeat(5)
    journal_dir = runs_dir / "default" / "journal"
    with Journal(str(journal_dir), durability="none") as journal:
        journal.append_batch(run.items)
    projector = Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False)
    path = runs_dir / "default" / "cli" / run.run_id / "manifest.json"

    early = projector.catch_up(mark_stale=True, now_ns=run.ts + 30 * SECOND)  # exactly at the limit: alive
    assert early.stale_marked == 0
    marked = projector.catch_up(mark_stale=True, now_ns=run.ts + 31 * SECOND)
    assert marked.stale_marked == 1
    doc = json.loads(path.read_bytes())
    assert doc["status"] == "in_progress" and doc["status_detail"].startswith("stale:")
    assert_valid(validator, doc, "stale")
    assert projector.catch_up(mark_stale=True, now_ns=run.ts + 99 * SECOND).stale_marked == 0  # marked once

    with Journal(str(journal_dir), durability="none") as journal:
        journal.append_batch([(run.run_id, ev.Heartbeat(), run.ts + 100 * SECOND)])
    projector.catch_up()
    doc = json.loads(path.read_bytes())
    assert doc["status_detail"] == "running stage 1/3: stage-1"


def test_time_travel_manifests_validate_at_every_sequence(tmp_path, validator):
    items, _ = every_point_of_life()
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    with Journal(str(journal_dir), durability="none") as journal:
        records = journal.append_batch(items)
    store, paths = FileStore(str(tmp_path / ".runs")), render.Paths(str(tmp_path / ".runs"), str(tmp_path / "out"), "default")
    for rec in records:
        doc = state_at(store, "default", rec.run_id, paths, seq=rec.seq)
        assert_valid(validator, doc, f"{rec.run_id} at {rec.seq}")
