"""`runjournal runs`: newest first, across tasks unless --task, filtered by status, limited."""

from __future__ import annotations

import json
import time

from helpers import assert_one_error_line
from helpers.histories import SECOND, T0, RunScript, every_point_of_life, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture

KEYS = ["run_id", "task_id", "pipeline_id", "status", "status_detail", "stale", "clock_skew_seconds", "attempt", "parent_run_id", "started_at", "completed_at", "duration_seconds", "manifest"]


def two_tasks(root):
    items, ends = every_point_of_life()
    populate(root, items)
    nightly = RunScript(make_run_id(20, T0 + 3600 * SECOND), task="nightly", start_ts=T0 + 3600 * SECOND, stages=1).stage(1).complete()
    populate(root, nightly.items, task="nightly")
    return ends, nightly


def test_json_lists_every_task_newest_first(tmp_path, invoke):
    ends, nightly = two_tasks(tmp_path)
    code, out, err = invoke("runs", "--format", "json")
    assert (code, err) == (0, "")
    docs = json.loads(out)
    # the child run (7) started after the queued one (8)
    assert [d["run_id"] for d in docs] == [nightly.run_id] + [make_run_id(n) for n in (7, 8, 6, 5, 4, 3, 2, 1)]
    assert [d["started_at"] for d in docs] == sorted((d["started_at"] for d in docs), reverse=True)
    assert all(list(d) == KEYS for d in docs)
    first = docs[0]
    assert first == {
        "run_id": nightly.run_id,
        "task_id": "nightly",
        "pipeline_id": "diagnostics",
        "status": "succeeded",
        "status_detail": "succeeded",
        "stale": False,
        "clock_skew_seconds": None,
        "attempt": 1,
        "parent_run_id": None,
        "started_at": "2025-12-01T10:37:11.576Z",
        "completed_at": "2025-12-01T10:37:13.176Z",
        "duration_seconds": 1.6,
        "manifest": str(tmp_path / ".runs" / "nightly" / "cli" / nightly.run_id / "manifest.json"),
    }
    by_id = {d["run_id"]: d for d in docs}
    assert {rid: by_id[rid]["status"] for rid in ends} == ends
    assert by_id[make_run_id(7)]["parent_run_id"] == make_run_id(6)
    assert by_id[make_run_id(4)]["stale"] is True and by_id[make_run_id(5)]["attempt"] == 2


def test_filters_and_limit(tmp_path, invoke):
    two_tasks(tmp_path)

    def ids(*args):
        code, out, _ = invoke("runs", "--format", "json", *args)
        assert code == 0
        return [d["run_id"] for d in json.loads(out)]

    assert ids("--status", "failed") == [make_run_id(2)]
    assert ids("--status", "cancelled") == [make_run_id(3)]
    # the queued run has been silent since 2025: the catch-up records it stale, like run 4
    assert ids("--status", "stale") == [make_run_id(8), make_run_id(4)]
    assert ids("--task", "nightly") == [make_run_id(20, T0 + 3600 * SECOND)]
    assert ids("--limit", "2") == [make_run_id(20, T0 + 3600 * SECOND), make_run_id(7)]
    assert ids("--task", "default", "--status", "succeeded", "--limit", "2") == [make_run_id(7), make_run_id(6)]


def test_since_and_pipeline(tmp_path, invoke):
    two_tasks(tmp_path)
    recent = RunScript(make_run_id(30, time.time_ns() - 3600 * SECOND), start_ts=time.time_ns() - 3600 * SECOND, pipeline="docs").complete()
    populate(tmp_path, recent.items, task="docs")

    def ids(*args):
        code, out, err = invoke("runs", "--format", "json", *args)
        assert (code, err) == (0, "")
        return [d["run_id"] for d in json.loads(out)]

    nightly = make_run_id(20, T0 + 3600 * SECOND)
    assert ids("--since", "2h") == [recent.run_id]  # started an hour ago
    assert ids("--since", "90m", "--pipeline", "diagnostics") == []
    assert ids("--since", "2025-12-01T10:00:00Z") == [recent.run_id, nightly]
    assert ids("--since", "2025-12-01T10:37:11.576") == [recent.run_id, nightly]  # at or after; UTC without a zone
    assert ids("--pipeline", "docs") == [recent.run_id]
    assert ids("--pipeline", "diagnostics", "--since", "2025-12-01T10:00:00Z") == [nightly]
    assert ids("--pipeline", "nothing-of-that-name") == []
    code, out, err = invoke("runs", "--since", "yesterday")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "Invalid value for '--since': 'yesterday' is neither an ISO-8601 time (2025-12-01, 2025-12-01T09:37Z) nor a duration (90s, 30m, 2h, 7d, 1w)")


def test_text_table(tmp_path, invoke):
    run = RunScript(make_run_id(1), stages=1).stage(1).complete()
    failed = RunScript(make_run_id(2), start_ts=T0 + SECOND, stages=1).stage(1, exit_code=2).fail()
    populate(tmp_path, sorted(run.items + failed.items, key=lambda i: i.ts))
    code, out, err = invoke("runs")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "RUN ID                             TASK     PIPELINE     STATUS     STARTED                   DURATION",
        "2025-12-01T09-37-11-576Z-00000002  default  diagnostics  failed     2025-12-01T09:37:12.576Z  1.6s",
        "2025-12-01T09-37-11-576Z-00000001  default  diagnostics  succeeded  2025-12-01T09:37:11.576Z  1.6s",
    ]


def test_nothing_to_list(tmp_path, invoke):
    assert invoke("runs") == (0, "no runs\n", "")
    assert invoke("runs", "--format", "json") == (0, "[]\n", "")


def test_bad_options(tmp_path, invoke):
    code, _, err = invoke("runs", "--status", "done")
    assert code == 2
    assert_one_error_line(err, "Invalid value for '--status'")
    code, _, err = invoke("runs", "--limit", "0")
    assert code == 2
    code, _, err = invoke("runs", "--task", "missing")
    assert code == 2
    assert_one_error_line(err, "no journal for task missing")
