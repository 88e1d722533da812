"""The headline check: 50 concurrent pipeline runs with a live `watch`, no state snapshot missed.

Each run is a real `runjournal start` process. Its second stage holds at a gate (a file the
test creates) until all 50 runs are inside it and each has journaled 3 heartbeats there, so
all 50 are truly running at once, writing heartbeats to one journal. Then, in the second case, a seeded random subset of the runners
is SIGKILLed before the gate opens: each of those runs must still be present everywhere and
be shown stale by the live `watch`.
"""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from helpers import DEADLINE, wait_until
from helpers.daemon import watching
from helpers.runner_support import (
    cmd,
    finish,
    group_members,
    kill_group,
    manifest,
    metrics,
    pipeline,
    spawn,
    write_config,
)

from runjournal.journal import JournalReader, check, read_records
from runjournal.journal.events import Heartbeat, WriterStats

RUNS = 50
GATE = (
    'echo "$CODEX_ORCHESTRATOR_RUN_ID $PPID $$" > "marks/$CODEX_ORCHESTRATOR_RUN_ID.tmp"'
    ' && mv "marks/$CODEX_ORCHESTRATOR_RUN_ID.tmp" "marks/$CODEX_ORCHESTRATOR_RUN_ID"'
    "; while [ ! -e release ]; do sleep 0.05; done; echo through the gate"
)
CONFIG = pipeline("fifty", cmd("hello", "echo hello from $CODEX_ORCHESTRATOR_RUN_ID"), cmd("gate", GATE), cmd("count", "seq 1 500"))
#: stale after 5 s: long enough that a runner starved by 50 others on 2 cores is not taken for dead
LIMITS = {"heartbeatIntervalSeconds": 1, "heartbeatStaleAfterSeconds": 5, "cancelGraceSeconds": 1}


#: heartbeats each run writes while all of them are inside the gate, before it opens
BEATS = 3


class HeartbeatCounter:
    """Heartbeats per run in the journal, read incrementally (polled while the runs wait)."""

    def __init__(self, journal_dir: Path):
        self.reader = JournalReader(str(journal_dir))
        self.position = None
        self.counts: Counter[str] = Counter()

    def every_run_has(self, beats: int, runs: int) -> bool:
        for rec in self.reader.records(self.position):
            if isinstance(rec.event, Heartbeat):
                self.counts[rec.run_id] += 1
        self.position = self.reader.position
        return len(self.counts) == runs and min(self.counts.values()) >= beats


def marks(root: Path) -> dict[int, tuple[str, int]]:
    """Runs inside the gate: runner pid -> (run id, the stage's process group)."""
    found = {}
    for name in os.listdir(root / "marks"):
        if not name.endswith(".tmp"):
            run_id, runner, stage = (root / "marks" / name).read_text().split()
            found[int(runner)] = (run_id, int(stage))
    return found


def state_runs(root: Path) -> dict[str, dict]:
    try:
        doc = json.loads((root / "out" / "default" / "state.json").read_bytes())
    except FileNotFoundError:
        return {}
    return {r["run_id"]: r for r in doc["runs"]}


def is_stale(root: Path, run_id: str) -> bool:
    doc = json.loads((root / ".runs" / "default" / "cli" / run_id / "manifest.json").read_bytes())
    return doc["status"] == "in_progress" and doc["status_detail"].startswith("stale:")


@pytest.mark.parametrize("kill", [0, 12], ids=["all-finish", "12-killed"])
def test_fifty_concurrent_runs_with_a_live_watch_miss_no_snapshot(tmp_path: Path, kill: int):
    root = tmp_path
    (root / "marks").mkdir()
    write_config(root, CONFIG, limits=LIMITS)
    with watching(root) as daemon:
        runners = [spawn(root, "start", name=f"runner-{i}") for i in range(RUNS)]
        try:
            inside = wait_until(lambda: len(m := marks(root)) == RUNS and m, f"all {RUNS} runs inside the gate", timeout=DEADLINE * 4)
            assert set(inside) == {p.pid for p in runners}
            beats = HeartbeatCounter(root / ".runs" / "default" / "journal")
            wait_until(lambda: beats.every_run_has(BEATS, RUNS), f"{BEATS} heartbeats from each run in the gate", timeout=DEADLINE * 2)
            victims = random.Random(f"fifty-{kill}").sample(runners, kill)
            for proc in victims:
                proc.send_signal(signal.SIGKILL)
                assert finish(proc) == -signal.SIGKILL
                stage_group = inside[proc.pid][1]
                kill_group(stage_group)  # orphaned by the dead runner, as after a crash
                wait_until(lambda g=stage_group: not group_members(g), "a killed run's stage to die")
            (root / "release").touch()
            survivors = [p for p in runners if p not in victims]
            for proc in survivors:
                assert finish(proc, timeout=DEADLINE * 4) == 0, (root / f"runner-{runners.index(proc)}.err").read_text()
        finally:
            for proc in runners:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        killed = {inside[p.pid][0] for p in victims}
        finished = {inside[p.pid][0] for p in survivors}

        def converged() -> bool:
            runs = state_runs(root)
            return (
                set(runs) == killed | finished
                and all(runs[r]["status"] == "succeeded" for r in finished)
                and all(is_stale(root, r) for r in killed)
            )

        wait_until(converged, "the live watch to show every run (the killed ones stale)", timeout=DEADLINE * 2)
        assert daemon.stop() == 0, daemon.stderr()

    # every run has a valid manifest; the finished ones one metrics line each, the killed none
    for run_id in finished:
        assert manifest(root, run_id)["status"] == "succeeded"
    for run_id in killed:
        doc = manifest(root, run_id)
        assert [c["status"] for c in doc["commands"]] == ["succeeded", "running", "pending"]
    lines = [m["run_id"] for m in metrics(root)]
    assert sorted(lines) == sorted(finished), "metrics.json: each finished run exactly once"
    summary = json.loads((root / ".runs" / "default" / "metrics" / "summary.json").read_bytes())
    assert summary["stale"] == kill

    journal_dir = root / ".runs" / "default" / "journal"
    assert check(str(journal_dir)).ok
    stats = [r.event for r in read_records(str(journal_dir)) if isinstance(r.event, WriterStats)]
    assert len(stats) == len(finished)
    written = sum(s.heartbeats_written for s in stats)
    failed = sum(s.heartbeats_failed for s in stats)
    assert written >= BEATS * len(finished)
    assert failed < 0.01 * (written + failed), f"{failed} of {written + failed} heartbeat writes failed"
