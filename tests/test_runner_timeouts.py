"""Timeouts: a stage past its timeoutSeconds (or the config's stageTimeoutSeconds) is stopped
like a cancel (TERM, the grace period, KILL) and fails; a pipeline's timeoutSeconds stops the
rest of the run. Stages that must be stopped sleep far longer than any bound used here."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.runner_support import FAST, cli, cmd, manifest, pipeline, read_pids, validate_manifest, write_config

from runjournal.journal import open_store
from runjournal.journal import events as ev

STUBBORN = "trap '' TERM; sleep 300 & echo $! $$ > pids; sleep 300"


def _events(root: Path, run_id: str, kind: type) -> list:
    with open_store(str(root / ".runs")) as store:
        return [r.event for r in store.records("default") if r.run_id == run_id and isinstance(r.event, kind)]


def _run_id(out: str) -> str:
    return out.splitlines()[0].split()[1]


def test_a_stage_past_its_timeout_fails_as_timed_out(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("slow", "sleep 300", timeoutSeconds=1), cmd("after", "true")), limits=FAST)
    began = time.monotonic()
    p = cli(tmp_path, "start")
    assert time.monotonic() - began < 30
    assert p.returncode == 1, p.stderr
    run_id = _run_id(p.stdout)
    lines = p.stdout.splitlines()
    assert "      failed: stage slow timed out after 1 s" in lines
    assert lines[-1] == f"run {run_id} failed: stage slow timed out after 1 s"
    doc = manifest(tmp_path, run_id)
    validate_manifest(doc)
    assert (doc["status"], doc["summary"]) == ("failed", "stage slow timed out after 1 s")
    assert [(c["status"], c["summary"]) for c in doc["commands"]] == [("failed", "timed out after 1 s"), ("pending", None)]
    [failed] = _events(tmp_path, run_id, ev.StageFailed)
    assert (failed.timed_out, failed.timeout_ms, failed.cancelled, failed.signal) == (True, 1000, False, "SIGTERM")
    assert 1_000_000_000 <= failed.duration_ns < 30_000_000_000


def test_a_stage_ignoring_term_is_killed_after_the_grace_period(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("stubborn", STUBBORN, timeoutSeconds=1)), limits=FAST)
    p = cli(tmp_path, "start")
    assert p.returncode == 1
    [failed] = _events(tmp_path, _run_id(p.stdout), ev.StageFailed)
    assert (failed.timed_out, failed.signal) == (True, "SIGKILL")
    assert failed.duration_ns >= 2_000_000_000  # 1 s timeout + 1 s grace
    from helpers.runner_support import alive

    assert not any(alive(pid) for pid in read_pids(tmp_path / "pids"))


def test_the_config_default_applies_and_a_stage_may_override_it(tmp_path: Path):
    limits = {**FAST, "stageTimeoutSeconds": 1}
    write_config(tmp_path, pipeline("p", cmd("quick", "sleep 1.5", timeoutSeconds=60), cmd("slow", "sleep 300")), limits=limits)
    p = cli(tmp_path, "start")
    assert p.returncode == 1
    doc = manifest(tmp_path, _run_id(p.stdout))
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "failed"]
    assert doc["summary"] == "stage slow timed out after 1 s"


def test_a_timed_out_stage_with_allow_failure_does_not_fail_the_run(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("slow", "sleep 300", timeoutSeconds=0.5, allowFailure=True), cmd("after", "echo on")), limits=FAST)
    p = cli(tmp_path, "start")
    assert p.returncode == 0, p.stdout
    assert "      timed out after 0.5 s, failure allowed" in p.stdout.splitlines()
    run_id = _run_id(p.stdout)
    [skipped] = _events(tmp_path, run_id, ev.StageSkipped)
    assert skipped.timed_out
    assert [c["status"] for c in manifest(tmp_path, run_id)["commands"]] == ["skipped", "succeeded"]


def test_a_pipeline_timeout_stops_the_rest_of_the_run(tmp_path: Path):
    doc = pipeline("p", cmd("one", "true"), cmd("two", "sleep 300"), cmd("three", "true"))
    doc["timeoutSeconds"] = 1.5
    write_config(tmp_path, doc, limits=FAST)
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    result = json.loads(p.stdout)
    run_id = result["run_id"]
    assert result["status"] == "failed"
    m = manifest(tmp_path, run_id)
    validate_manifest(m)
    assert m["summary"] == "timed out after 1.5 s (the pipeline's timeoutSeconds)"
    assert [c["status"] for c in m["commands"]] == ["succeeded", "failed", "pending"]
    assert m["commands"][1]["summary"] == "timed out after 1.5 s"
    [run_failed] = _events(tmp_path, run_id, ev.RunFailed)
    assert run_failed.timed_out
    [started] = _events(tmp_path, run_id, ev.RunStarted)
    assert started.timeout_ms == 1500 and [s.timeout_ms for s in started.stages] == [None, None, None]
    assert "stage two timed out after 1.5 s (the run's timeout)" in p.stderr
