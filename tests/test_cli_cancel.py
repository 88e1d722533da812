"""`runjournal cancel RUN`: from another process, a live run is cancelled by its own runner
(as on Ctrl-C) within a second; a run whose runner is dead is closed at once; an ended run is
not cancelled again. Real runners and stages; synchronised on files the stages write."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from helpers import wait_until
from helpers.runner_support import FAST, alive, cli, cmd, finish, manifest, output, pipeline, read_pids, spawn, validate_manifest, write_config

from runjournal.journal import open_store
from runjournal.journal import events as ev

STAGE = "sleep 300 & echo $! $$ > pids.tmp; mv pids.tmp pids; wait"


def _started(root: Path) -> tuple[str, list[int]]:
    pids = read_pids(wait_until(lambda: (root / "pids").exists() and root / "pids", "the stage to write its pids"))
    run_id = wait_until(lambda: output(root)[0].split()[1] if output(root)[0] else None, "the run id")
    return run_id, pids


def test_cancel_stops_a_live_run_within_a_second(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("work", STAGE), cmd("after", "true")), limits=FAST)
    proc = spawn(tmp_path, "start")
    run_id, pids = _started(tmp_path)
    asked = time.monotonic()
    p = cli(tmp_path, "cancel", run_id, "--reason", "deploy frozen", "--actor", "alice")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.startswith(f"cancel of run {run_id} (task default) recorded; its runner (pid {proc.pid} on ")
    assert finish(proc) == 130
    assert time.monotonic() - asked < 10  # seen within a second, then TERM
    why = "cancelled by alice (runjournal cancel: deploy frozen) during stage work"
    out = output(tmp_path)[0].splitlines()
    assert "cancelling: requested by alice (runjournal cancel: deploy frozen)" in out
    assert out[-1] == f"run {run_id} {why}"
    wait_until(lambda: not any(alive(pid) for pid in pids), "the stage's processes to end")
    doc = manifest(tmp_path, run_id)
    validate_manifest(doc)
    assert (doc["status"], doc["status_detail"]) == ("cancelled", why)
    assert [c["status"] for c in doc["commands"]] == ["failed", "pending"]  # the schema's statuses
    p = cli(tmp_path, "status", run_id)
    assert p.returncode == 130
    assert "1  work   cancelled" in p.stdout
    with open_store(str(tmp_path / ".runs")) as store:
        [req] = [r.event for r in store.records("default") if isinstance(r.event, ev.CancelRequested)]
    assert (req.actor, req.reason) == ("alice", "deploy frozen")


def test_cancel_of_a_run_whose_runner_is_dead_closes_it(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("work", STAGE)), limits=FAST)
    proc = spawn(tmp_path, "start")
    run_id, pids = _started(tmp_path)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert all(alive(pid) for pid in pids)  # orphaned: the stage runs on without its runner
    wait_until(lambda: "stale" in cli(tmp_path, "status", run_id).stdout, "the run to show stale")
    p = cli(tmp_path, "status", run_id)
    assert "1  work   stale" in p.stdout
    assert [c["status"] for c in manifest(tmp_path, run_id)["commands"]] == ["running"]
    p = cli(tmp_path, "cancel", run_id, "--actor", "bob", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["outcome"] == "closed"
    assert doc["detail"].startswith("cancelled by bob (runjournal cancel): its runner is gone (stale); stopped stage work (attempt 1): process group")
    assert not any(alive(pid) for pid in pids)
    p = cli(tmp_path, "status", run_id)
    assert p.returncode == 130
    assert "1  work   cancelled" in p.stdout
    p = cli(tmp_path, "project")
    assert p.returncode == 0
    validate_manifest(manifest(tmp_path, run_id))
    assert cli(tmp_path, "verify").returncode == 0


def test_cancel_of_an_ended_run_is_refused(tmp_path: Path):
    p = cli(tmp_path, "exec", "--", "true")
    run_id = p.stdout.split()[1]
    p = cli(tmp_path, "cancel", run_id)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == f"error: run {run_id} (task default) has already ended (succeeded); nothing to cancel\n"


def test_cancel_of_an_unknown_run_is_bad_input(tmp_path: Path):
    cli(tmp_path, "exec", "--", "true")
    p = cli(tmp_path, "cancel", "2025-12-01T09-37-11-576Z-00000063")
    assert p.returncode == 2
    assert p.stderr.startswith("error: no run 2025-12-01T09-37-11-576Z-00000063 in any task under ")
