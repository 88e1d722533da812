"""`runjournal project`: catch up once, --rebuild byte for byte, never a duplicated metrics line."""

from __future__ import annotations

import json
import shutil

from helpers import assert_one_error_line
from helpers.histories import RunScript, every_point_of_life, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture
from helpers.trees import projection_tree

from runjournal.journal import read_records
from runjournal.journal import events as ev


def metrics_keys(root, task="default") -> list[tuple[str, int]]:
    lines = (root / ".runs" / task / "metrics.json").read_text().splitlines()
    return [(d["run_id"], d["attempt"]) for d in map(json.loads, lines)]


def test_project_then_again_then_rebuild(tmp_path, invoke):
    items, _ = every_point_of_life()
    populate(tmp_path, items)
    code, out, err = invoke("project", "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["rebuild"] is False
    [task] = doc["tasks"]
    # the queued run (from 2025) is silent far past its stale limit: the catch-up records it stale
    assert (task["task_id"], task["applied"], task["next_seq"], task["stale_marked"]) == ("default", len(items) + 1, len(items) + 2, 1)
    first = projection_tree(tmp_path)
    assert task["files"] >= len(first)  # the stale mark rewrote some of them

    code, out, err = invoke("project")
    assert (code, out, err) == (0, "task default: 0 new events, 0 files written\n", "")
    assert projection_tree(tmp_path) == first

    code, out, err = invoke("project", "--rebuild", "--format", "json")
    assert code == 0
    assert json.loads(out)["tasks"][0]["applied"] == len(items) + 1
    assert projection_tree(tmp_path) == first  # byte for byte


def test_text_output_names_what_was_done(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=1).stage(1).complete()
    populate(tmp_path, run.items)
    code, out, err = invoke("project")
    assert (code, err) == (0, "")
    # manifest, .heartbeat, one log, metrics.json, summary.json, state.json
    assert out == f"task default: {len(run.items)} new events, 6 files written\n"
    code, out, _ = invoke("project", "--rebuild")
    assert code == 0
    # over the same files: each holds its bytes already, none is written again
    assert out.startswith(f"task default: rebuilt from {len(run.items)} events, 0 files written in ")
    (tmp_path / ".runs" / "default" / "metrics.json").unlink()
    code, out, _ = invoke("project", "--rebuild")
    assert (code, out.split(" in ")[0]) == (0, f"task default: rebuilt from {len(run.items)} events, 1 files written")


def test_metrics_lines_are_never_duplicated(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=2).stage(1).stage(2, exit_code=1).fail()
    run.resume("accepted").skip_stage(1).stage(2).complete()
    run.complete()  # a repeated end event for the same attempt replaces its line
    other = RunScript(make_run_id(2), stages=1).stage(1).complete()
    journal_dir = populate(tmp_path, sorted(run.items + other.items, key=lambda i: i.ts))
    for args in (["project"], ["project"], ["project", "--rebuild"], ["project"]):
        assert invoke(*args)[0] == 0
        keys = metrics_keys(tmp_path)
        assert sorted(keys) == sorted([(run.run_id, 1), (run.run_id, 2), (other.run_id, 1)])
    lines = [json.loads(line) for line in (tmp_path / ".runs" / "default" / "metrics.json").read_text().splitlines()]
    first, second = (d for d in lines if d["run_id"] == run.run_id)
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert (first["commands_failed"], second["commands_passed"]) == (1, 1)
    assert sum(r.run_id == run.run_id and isinstance(r.event, ev.RunCompleted) for r in read_records(journal_dir)) == 2


def test_every_task_unless_one_is_chosen(tmp_path, invoke, monkeypatch):
    for n, task in enumerate(("default", "nightly", "weekly"), 1):
        populate(tmp_path, RunScript(make_run_id(n), task=task).items, task=task)
    code, out, _ = invoke("project", "--format", "json")
    assert [t["task_id"] for t in json.loads(out)["tasks"]] == ["default", "nightly", "weekly"]
    code, out, _ = invoke("project", "--rebuild", "--task", "nightly", "--format", "json")
    assert [t["task_id"] for t in json.loads(out)["tasks"]] == ["nightly"]
    monkeypatch.setenv("RUNJOURNAL_TASK", "weekly")
    code, out, _ = invoke("project", "--format", "json")
    assert [t["task_id"] for t in json.loads(out)["tasks"]] == ["weekly"]


def test_silent_runs_are_recorded_stale(tmp_path, invoke):
    run = RunScript(make_run_id(1))  # heartbeats from 2025: silent for far longer than 30 s
    run.start_stage(1).heartbeat()
    journal_dir = populate(tmp_path, run.items)
    code, out, _ = invoke("project")
    # 5 files for the run as journaled, then the 3 of them the stale mark changes (the stage's
    # log and the heartbeat file hold the same bytes: not written again)
    assert (code, out) == (0, f"task default: {len(run.items) + 1} new events, 8 files written, 1 run(s) marked stale\n")
    stale = [r for r in read_records(journal_dir) if isinstance(r.event, ev.RunStale)]
    assert [(r.run_id, r.event.last_heartbeat_ts) for r in stale] == [(run.run_id, run.ts)]
    manifest = json.loads((tmp_path / ".runs" / "default" / "cli" / run.run_id / "manifest.json").read_bytes())
    assert manifest["status_detail"].startswith("stale: ")
    # a rebuild records nothing: it reproduces the journal's projections only
    assert invoke("project", "--rebuild")[0] == 0
    assert len(list(read_records(journal_dir))) == len(run.items) + 1


def test_no_journals_is_not_an_error(tmp_path, invoke):
    assert invoke("project") == (0, f"no task journals under {tmp_path / '.runs'}\n", "")
    assert invoke("project", "--format", "json") == (0, '{\n  "rebuild": false,\n  "tasks": []\n}\n', "")


def test_bad_or_missing_task(tmp_path, invoke):
    code, out, err = invoke("project", "--task", "nope")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "no journal for task nope at", str(tmp_path / ".runs" / "nope" / "journal"))
    code, out, err = invoke("project", "--task", "../up")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "task id '../up' must not contain")


def test_deleted_projections_come_back_identical(tmp_path, invoke):
    items, _ = every_point_of_life()
    populate(tmp_path, items)
    assert invoke("project")[0] == 0
    before = projection_tree(tmp_path)
    shutil.rmtree(tmp_path / ".runs" / "default" / "cli")
    (tmp_path / ".runs" / "default" / "metrics.json").unlink()
    assert invoke("project", "--rebuild")[0] == 0
    assert projection_tree(tmp_path) == before


def test_a_journal_made_anew_is_projected_anew_and_a_restored_one_resumes(tmp_path, invoke):
    root, fresh, saved = tmp_path / "root", tmp_path / "fresh", tmp_path / "saved"
    journal = root / ".runs" / "default" / "journal"
    populate(root, RunScript(make_run_id(1), stages=1).stage(1).complete().items)
    assert invoke("project", root=root)[0] == 0

    # deleted and made anew: the checkpoint describes another journal, so it starts over, and
    # what the old journal's projections showed goes with it
    shutil.rmtree(journal)
    populate(root, RunScript(make_run_id(2), stages=2).stage(1).items)
    code, out, err = invoke("project", "--format", "json", root=root)
    assert code == 0, err
    assert json.loads(out)["tasks"][0]["applied"] == len(list(read_records(str(journal))))
    shutil.copytree(journal, fresh / ".runs" / "default" / "journal")
    assert invoke("project", "--rebuild", root=fresh)[0] == 0
    assert projection_tree(root) == projection_tree(fresh)

    # the same journal restored from a copy (same first record): the checkpoint still fits
    shutil.copytree(journal, saved)
    shutil.rmtree(journal)
    shutil.copytree(saved, journal)
    code, out, _ = invoke("project", "--format", "json", root=root)
    assert json.loads(out)["tasks"][0]["applied"] == 0
    assert projection_tree(root) == projection_tree(fresh)
