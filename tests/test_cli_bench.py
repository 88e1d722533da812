"""`runjournal bench`: every measure repeated, its spread reported, a busy machine warned about."""

from __future__ import annotations

import json

from runjournal.cli.bench import DISAGREE, REPS, _spread, busy


def test_spread_is_min_median_max():
    assert _spread([300.4, 100.2, 200.6]) == {"min": 100, "median": 201, "max": 300, "reps": 3}
    assert _spread([0.6581, 0.637, 0.7249], digits=3) == {"min": 0.637, "median": 0.658, "max": 0.725, "reps": 3}


def test_busy_by_load_average_or_by_repetitions_that_disagree():
    steady = {"rebuild_events_per_s": _spread([100, 150, 199])}
    assert busy(1.5, 2.0, 2, steady) == []
    assert busy(None, None, 2, steady) == []  # no load average on this system: only the spread speaks
    assert busy(2.5, 1.0, 2, steady) == ["load average 2.5 at the start, above the 2 core(s)"]
    assert busy(0.1, 4.0, 2, steady) == ["load average 4.0 at the end, above the 2 core(s)"]
    apart = {"rebuild_events_per_s": _spread([1878, 50000, 223479])}  # the two runs
    assert busy(0.1, 0.1, 2, apart) == ["rebuild_events_per_s repetitions disagree by 119.0x (1878 to 223479)"]
    assert busy(0.1, 0.1, 2, {"runner_stages.seconds": _spread([0.5, 0.6, 0.5 * DISAGREE + 0.01], digits=3)}) != []


def test_a_small_run_reports_spread_and_the_machine(run_cli):
    code, out, err = run_cli("bench", "--events", "1000", "--writers", "2", "--format", "json", timeout=600)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["spread"]) == {
        "raw_append_per_s", "append_per_s.none", "append_per_s.batch", "raw_fsync_per_s", "append_per_s.always",
        "concurrent.events_per_s", "concurrent.raw_events_per_s", "concurrent_always.events_per_s",
        "concurrent_always.raw_events_per_s", "runner_stages.seconds", "rebuild_events_per_s", "live_latency_ms.p50",
    }  # fmt: skip
    for name, s in doc["spread"].items():
        assert s["reps"] == REPS and s["min"] <= s["median"] <= s["max"], name
    assert doc["spread"]["raw_append_per_s"]["median"] == doc["raw_append_per_s"]
    assert doc["spread"]["rebuild_events_per_s"]["median"] == doc["rebuild_events_per_s"]
    assert doc["concurrent"]["lost"] == doc["concurrent"]["corrupt"] == 0
    machine = doc["machine"]
    assert machine["busy"] == bool(machine["warnings"])
    assert machine["warnings"] == busy(machine["load_start"], machine["load_end"], machine["cores"], doc["spread"])
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warned == ([f"warning: the machine looked busy, so these figures may not be its own: {'; '.join(machine['warnings'])}"] if machine["busy"] else [])
