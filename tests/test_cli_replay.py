"""`runjournal replay RUN_ID`: the timeline, --at a point (time travel), --speed re-play."""

from __future__ import annotations

import json
import time

from helpers import assert_one_error_line
from helpers.histories import SECOND, RunScript, every_point_of_life, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture

from runjournal.journal import read_records


def small_run() -> RunScript:
    run = RunScript(make_run_id(1), stages=2)
    run.start_stage(1, gap=1).output(1, b"compiled 12 files\n", gap=0.5).finish_stage(1, gap=0.5)
    run.start_stage(2).fail_stage(2, exit_code=3, stderr="3 tests failed\n").fail("stage-2 failed")
    return run


def test_timeline_text(tmp_path, invoke):
    populate(tmp_path, small_run().items)
    code, out, err = invoke("replay", make_run_id(1))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"run {make_run_id(1)} (task default), started 2025-12-01T09:37:11.576Z, 8 records",
        "    ELAPSED       SEQ  RUN# EVENT",
        "    +0.000s         1  #1    run started: pipeline diagnostics attempt 1",
        "    +1.000s         2  #2    stage 1 stage-1 started",
        "    +1.500s         3  #3    stage 1 stdout: compiled 12 files",
        "    +2.000s         4  #4    stage 1 stage-1 succeeded (exit 0)",
        "    +2.100s         5  #5    stage 2 stage-2 started",
        "    +2.300s         6  #6    error in stage 2 stage-2: command failed",
        "    +2.301s         7  #7    stage 2 stage-2 failed (exit 3)",
        "    +2.401s         8  #8    run failed: stage-2 failed",
    ]


def test_timeline_json(tmp_path, invoke):
    populate(tmp_path, small_run().items)
    code, out, _ = invoke("replay", make_run_id(1), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["run_id"], doc["task_id"], doc["records"]) == (make_run_id(1), "default", 8)
    assert doc["steps"][2] == {
        "seq": 3,
        "run_seq": 3,
        "ts": small_run().items[2].ts,
        "elapsed": 1.5,
        "type": "output",
        "stage_index": 1,
        "stream": "stdout",
        "excerpt": "compiled 12 files\n",
        "time": "2025-12-01T09:37:13.076Z",
        "text": "stage 1 stdout: compiled 12 files",
    }
    assert [(s["type"], s.get("exit_code")) for s in doc["steps"] if "exit_code" in s] == [("stage_finished", 0), ("error", 3), ("stage_failed", 3)]


def test_at_a_sequence_a_time_and_an_offset(tmp_path, invoke):
    populate(tmp_path, small_run().items)
    rid = make_run_id(1)

    def at(point: str) -> dict:
        code, out, err = invoke("replay", rid, "--at", point)
        assert (code, err) == (0, ""), point
        return json.loads(out)

    assert [c["status"] for c in at("2")["commands"]] == ["running", "pending"]
    assert [c["status"] for c in at("+2.2s")["commands"]] == ["succeeded", "running"]
    assert at("2025-12-01T09:37:13.600Z")["commands"][0]["status"] == "succeeded"  # 2.024 s in
    final = at("8")
    assert final["status"] == "failed"
    # the manifest at the end of the journal is the file the projector writes
    assert invoke("project")[0] == 0
    path = tmp_path / ".runs" / "default" / "cli" / rid / "manifest.json"
    code, out, _ = invoke("replay", rid, "--at", str(len(small_run().items)))
    assert out.encode() == path.read_bytes()


def test_at_before_the_run_and_bad_points(tmp_path, invoke):
    items, _ = every_point_of_life()
    populate(tmp_path, items)
    first_of_run_2 = next(r.seq for r in read_records(str(tmp_path / ".runs" / "default" / "journal")) if r.run_id == make_run_id(2))
    code, out, err = invoke("replay", make_run_id(2), "--at", str(first_of_run_2 - 1))
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"run {make_run_id(2)} had not started at sequence {first_of_run_2 - 1}")
    code, out, err = invoke("replay", make_run_id(2), "--at", "yesterday")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "Invalid value for '--at': 'yesterday' is not a sequence number, +SECONDS or an ISO-8601 time")
    code, _, err = invoke("replay", make_run_id(2), "--at", "3", "--speed", "2")
    assert code == 2
    assert_one_error_line(err, "--at and --speed do not go together")
    code, _, err = invoke("replay", make_run_id(2), "--speed", "0")
    assert code == 2
    code, _, err = invoke("replay", make_run_id(99))
    assert code == 2
    assert_one_error_line(err, f"no run {make_run_id(99)} in any task")


def test_speed_replays_with_the_gaps_divided(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=1)
    run.start_stage(1, gap=0.4).output(1, b"one\ntwo\n", gap=0.4).finish_stage(1, gap=0.4).complete(gap=0)
    populate(tmp_path, run.items)
    started = time.monotonic()
    code, out, err = invoke("replay", run.run_id, "--speed", "4")
    took = time.monotonic() - started
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "    +0.000s  run started: pipeline diagnostics attempt 1",
        "    +0.400s  stage 1 stage-1 started",
        "    +0.800s  stdout| one",
        "    +0.800s  stdout| two",
        "    +1.200s  stage 1 stage-1 succeeded (exit 0)",
        "    +1.200s  run succeeded",
    ]
    assert took >= 1.2 / 4  # 1.2 s of history at 4x: at least 0.3 s
    code, out, _ = invoke("replay", run.run_id, "--speed", "1000", "--format", "json")
    steps = [json.loads(line) for line in out.splitlines()]
    assert [s["type"] for s in steps] == ["run_started", "stage_started", "output", "stage_finished", "run_completed"]
    assert steps[2]["elapsed"] == 0.8 and steps[2]["ts"] - steps[0]["ts"] == 8 * SECOND // 10
