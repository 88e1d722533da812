"""Clocks that lie: a wall clock stepped back mid-run, and a heartbeat stamped in the future.

A stepped clock never rewrites history: `replay --at TIME` folds in commit order and stops at
the first record stamped past TIME, and no duration is shown below 0 (the runner's monotonic
`duration_ns` where the events carry it). A heartbeat stamped further in the future than the
stale limit is shown as clock skew, and the run goes stale once an observer has seen no newer
heartbeat for the stale limit, by the observer's own clock.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from helpers import DEADLINE, clean_env, wait_until
from helpers.daemon import watching
from helpers.histories import SECOND, RunScript, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture
from helpers.trees import projection_tree

from runjournal.journal import events as ev
from runjournal.journal import iso_utc, read_records
from runjournal.projections.state import Run

# -- a wall clock stepped back (NTP) -------------------------------------------------------


def stepped(n: int, measured: bool) -> RunScript:
    """A run whose wall clock jumped back 60 s while stage 1 ran; ``measured``: its end events
    carry the runner's monotonic durations."""
    run = RunScript(make_run_id(n), stages=2)
    run.start_stage(1, gap=1).output(1, b"one\n", gap=0.5)  # +1.0 s, +1.5 s
    run.add(ev.StageFinished(index=1, stage_id="stage-1", summary="stage-1 ok", duration_ns=1_500_000_000 if measured else None), gap=-60)  # -58.5 s
    run.start_stage(2, gap=0.1)  # -58.4 s
    run.add(ev.StageFinished(index=2, stage_id="stage-2", summary="stage-2 ok", duration_ns=400_000_000 if measured else None), gap=0.4)
    return run.add(ev.RunCompleted(summary="all stages succeeded", duration_ns=2_200_000_000 if measured else None), gap=0.1)  # -57.9 s


def test_replay_at_a_time_stops_at_the_first_record_past_it(tmp_path, invoke):
    populate(tmp_path, stepped(1, measured=False).items)
    code, out, err = invoke("replay", make_run_id(1), "--at", "+0.5s")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    # only run_started had happened: what follows in the journal came after, whatever its stamp
    assert (doc["status"], [c["status"] for c in doc["commands"]]) == ("queued", ["pending", "pending"])
    doc = json.loads(invoke("replay", make_run_id(1), "--at", "+1.2s")[1])
    assert (doc["status"], [c["status"] for c in doc["commands"]]) == ("in_progress", ["running", "pending"])
    # past the output's stamp (+1.5 s) nothing is stamped later: the records after the step
    # (stamped a minute earlier) all follow, in commit order
    doc = json.loads(invoke("replay", make_run_id(1), "--at", "+1.6s")[1])
    assert (doc["status"], [c["status"] for c in doc["commands"]]) == ("succeeded", ["succeeded", "succeeded"])
    # a sequence number names a point exactly, whatever the clocks did
    doc = json.loads(invoke("replay", make_run_id(1), "--at", "5")[1])
    assert (doc["status"], [c["status"] for c in doc["commands"]]) == ("in_progress", ["succeeded", "running"])


def test_durations_are_never_negative_and_measured_ones_win(tmp_path, invoke):
    populate(tmp_path, stepped(1, measured=False).items + stepped(2, measured=True).items)
    code, out, err = invoke("runs")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "RUN ID                             TASK     PIPELINE     STATUS     STARTED                   DURATION",
        f"{make_run_id(2)}  default  diagnostics  succeeded  2025-12-01T09:37:11.576Z  2.2s",
        f"{make_run_id(1)}  default  diagnostics  succeeded  2025-12-01T09:37:11.576Z  0.0s",
    ]
    for n, stage_1, total in ((1, "0.0s", 0.0), (2, "1.5s", 2.2)):
        code, out, err = invoke("status", make_run_id(n))
        assert (code, err) == (0, "")
        assert out.splitlines()[-3:] == [
            "#  STAGE    STATUS     EXIT  DURATION  SUMMARY",
            f"1  stage-1  succeeded  0     {stage_1:<8}  stage-1 ok",
            "2  stage-2  succeeded  0     0.4s      stage-2 ok",
        ]
        doc = json.loads(invoke("status", make_run_id(n), "--format", "json")[1])
        assert doc["duration_seconds"] == total
        assert [c["duration_seconds"] for c in doc["commands"]] == [float(stage_1[:-1]), 0.4]

    assert invoke("project")[0] == 0
    task_dir = tmp_path / ".runs" / "default"
    metrics = [json.loads(line) for line in (task_dir / "metrics.json").read_text().splitlines()]
    assert [(m["run_id"], m["duration_seconds"]) for m in metrics] == [(make_run_id(1), 0.0), (make_run_id(2), 2.2)]
    state = json.loads((tmp_path / "out" / "default" / "state.json").read_bytes())
    assert [r["duration_seconds"] for r in state["runs"]] == [0.0, 2.2]
    summary = json.loads((task_dir / "metrics" / "summary.json").read_bytes())
    assert summary["duration_seconds"] == {"p50": 0.0, "p95": 2.2, "max": 2.2}
    before = projection_tree(tmp_path)
    assert invoke("project", "--rebuild")[0] == 0
    assert projection_tree(tmp_path) == before  # still a pure function of the journal


def test_a_resumed_run_spans_its_attempts_from_the_start_of_the_last(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=1).start_stage(1).fail_stage(1).fail()  # ends 0.401 s in
    run.resume("accepted", gap=30)  # 30.401 s in
    run.start_stage(1).add(ev.StageFinished(index=1, stage_id="stage-1", duration_ns=5 * SECOND), gap=-90)
    run.add(ev.RunCompleted(duration_ns=7 * SECOND), gap=0.1)
    populate(tmp_path, run.items)
    doc = json.loads(invoke("status", run.run_id, "--format", "json")[1])
    assert doc["duration_seconds"] == 37.401  # 30.401 s to the resume (event times), then 7 s measured
    assert doc["commands"][0]["duration_seconds"] == 5.0
    assert invoke("project")[0] == 0
    metrics = [json.loads(line) for line in (tmp_path / ".runs" / "default" / "metrics.json").read_text().splitlines()]
    assert [(m["attempt"], m["duration_seconds"]) for m in metrics] == [(1, 0.401), (2, 7.0)]


# -- a heartbeat from the future -----------------------------------------------------------


def skewed(stale_after: int = 30, ahead: int = 3600) -> RunScript:
    """A run started now, in stage 1, whose last heartbeat is stamped ``ahead`` seconds in the
    future (its runner's clock is that far ahead of this one, then it died)."""
    now = time.time_ns()
    return RunScript(make_run_id(1, now), start_ts=now, stages=1, stale_after=stale_after).start_stage(1, gap=0).heartbeat(ahead)


SKEW_NOTE = re.compile(r"running stage 1/1: stage-1 \(clock skew: its heartbeat is stamped (\d+) s ahead of this machine's clock\)")


def test_status_and_runs_show_a_heartbeat_from_the_future_as_clock_skew(tmp_path, invoke):
    run = skewed()
    populate(tmp_path, run.items)
    code, out, err = invoke("status", run.run_id, "--format", "json")
    assert (code, err) == (0, "")  # alive: this observer has only just seen that heartbeat
    doc = json.loads(out)
    assert (doc["status"], doc["stale"]) == ("in_progress", False)
    assert 3590 <= int(SKEW_NOTE.fullmatch(doc["status_detail"])[1]) <= 3600
    assert 3590 <= doc["clock_skew_seconds"] <= 3600
    code, out, _ = invoke("runs")
    assert (code, out.splitlines()[1]) == (0, f"{run.run_id}  default  diagnostics  in_progress (clock skew)  {iso_utc(run.items[0].ts)}  -")
    code, out, _ = invoke("status", run.run_id)
    assert "status:    in_progress (clock skew)" in out.splitlines()
    # the manifest a writer projects stays a function of the journal: no clock in it
    assert invoke("project")[0] == 0
    manifest = json.loads((tmp_path / ".runs" / "default" / "cli" / run.run_id / "manifest.json").read_bytes())
    assert manifest["status_detail"] == "running stage 1/1: stage-1"


def test_status_watch_sees_the_skewed_run_go_stale_after_the_limit_by_its_own_clock(tmp_path, run_cli):
    run = skewed(stale_after=2)
    journal_dir = populate(tmp_path, run.items)
    started = time.monotonic()
    code, out, err = run_cli("status", run.run_id, "--watch", timeout=DEADLINE)
    took = time.monotonic() - started
    assert (code, err) == (1, "")  # stale: presumed dead
    lines = out.splitlines()
    assert lines[3] == "status:    in_progress (clock skew)"
    assert SKEW_NOTE.fullmatch(lines[4].removeprefix("detail:    "))
    assert re.fullmatch(
        r"\S+  in_progress: stale: clock skew: its last heartbeat is stamped \S+, \d+ s ahead of the observer's clock, "
        r"and no newer one came for over 2 s after the observer first saw it; the runner is presumed dead: resume the run to continue it",
        lines[-1],
    ), lines[-1]
    assert took >= 2  # judged by how long this process saw nothing newer
    assert len(list(read_records(journal_dir))) == len(run.items)  # a read-only command records nothing


def test_watch_records_the_skewed_run_stale_once_it_has_seen_nothing_newer(tmp_path):
    run = skewed(stale_after=2)
    journal_dir = populate(tmp_path, run.items)
    manifest = tmp_path / ".runs" / "default" / "cli" / run.run_id / "manifest.json"

    def detail() -> str:
        try:
            return json.loads(manifest.read_bytes())["status_detail"]
        except (FileNotFoundError, ValueError):
            return ""

    with watching(tmp_path, "--task", "default") as daemon:
        wait_until(lambda: detail().startswith("stale: clock skew: "), "the watch to record the run stale")
        assert daemon.stop() == 0
    [stale] = [r for r in read_records(journal_dir) if isinstance(r.event, ev.RunStale)]
    assert stale.event.last_heartbeat_ts == run.ts and stale.ts < run.ts - 3500 * SECOND
    assert re.fullmatch(
        r"stale: clock skew: its last heartbeat is stamped \S+, 3\d\d\d s ahead of the observer's clock, and no newer one came for over 2 s "
        r"after the observer first saw it; the runner is presumed dead: resume the run to continue it",
        detail(),
    )
    before = projection_tree(tmp_path)
    done = subprocess.run([sys.executable, "-m", "runjournal", "--root", str(tmp_path), "project", "--rebuild"], env=clean_env(), capture_output=True, timeout=DEADLINE)
    assert done.returncode == 0
    assert projection_tree(tmp_path) == before  # what the observer saw is in the journal: rebuilt the same


def run_with_heartbeat(ts: int, stale_after: int = 30) -> Run:
    return Run(run_id="r", task_id="t", pipeline_id="p", pipeline_title="P", started_ts=ts - SECOND, heartbeat_ts=ts, hb_stale=stale_after)


def test_liveness_counts_silence_from_the_first_sight_of_a_heartbeat_from_the_future():
    from runjournal.projections import Sightings, liveness

    now = 1_000_000 * SECOND
    future = run_with_heartbeat(now + 3600 * SECOND)
    seen = Sightings()
    first = seen.look(future, now)
    assert (first.state, first.skew_ns, first.silent_ns) == ("alive", 3600 * SECOND, 0)
    assert seen.look(future, now + 30 * SECOND).alive  # 30 s: not over the limit
    later = seen.look(future, now + 31 * SECOND)
    assert (later.state, later.skew_ns, later.silent_ns) == ("stale", 3600 * SECOND, 31 * SECOND)
    # a newer heartbeat (still from the future) is a sign of life: it is counted from its own first sight
    future.heartbeat_ts += 5 * SECOND
    assert seen.look(future, now + 31 * SECOND).alive
    # without a memory of first sights (a one-shot look), a future heartbeat cannot be judged
    assert liveness(future, now + 3000 * SECOND).alive
    # a heartbeat in the past is judged by its time at once, whoever looks
    assert liveness(run_with_heartbeat(now - 31 * SECOND), now).stale
    assert Sightings().look(run_with_heartbeat(now - 31 * SECOND), now).stale
    # a skew within the limit is no skew: the heartbeat's own time still decides
    near = liveness(run_with_heartbeat(now + 20 * SECOND), now)
    assert (near.state, near.skew_ns) == ("alive", 0)
