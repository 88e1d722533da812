"""Heartbeats: written on time while a stage runs, even one flooding its output; `.heartbeat` kept current."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from helpers import wait_until
from helpers.runner_support import FAST, cmd, finish, output, pipeline, spawn, task_dir, write_config

from runjournal.journal import JournalReader, parse_iso
from runjournal.journal import events as ev


def test_heartbeats_keep_coming_while_a_stage_floods_its_output(tmp_path: Path):
    # `yes` prints as fast as the runner reads: its main thread is busy the whole time
    # beats every second; stale only after 10 s, so a loaded machine cannot make a run look dead
    write_config(tmp_path, pipeline("p", cmd("flood", "touch started; exec yes")), limits={**FAST, "heartbeatStaleAfterSeconds": 10})
    proc = spawn(tmp_path, "start", "--format", "json")
    try:
        wait_until(lambda: (tmp_path / "started").exists(), "the stage to start")
        run_dir = wait_until(lambda: next((task_dir(tmp_path) / "cli").iterdir(), None), "the run directory")
        seen: set[str] = set()

        def three_heartbeats() -> bool:
            seen.add((run_dir / ".heartbeat").read_text())
            return len(seen) >= 3

        # `.heartbeat` is a projection: the runner itself keeps it current, no `watch` running
        wait_until(three_heartbeats, "`.heartbeat` to show three different heartbeats during the stage")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 130
    times = sorted(parse_iso(t.strip()) for t in seen)
    assert all(t.endswith("Z\n") for t in seen)
    assert times[-1] - times[0] >= 1_000_000_000  # at least one interval apart

    run_id = json.loads(output(tmp_path)[0])["run_id"]
    records = [r for r in JournalReader(str(task_dir(tmp_path) / "journal")).records() if r.run_id == run_id]
    beats = [r.ts for r in records if isinstance(r.event, ev.Heartbeat)]
    assert len(beats) >= 2
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    assert max(gaps) < 10 * 1_000_000_000, gaps  # never as late as the stale limit
    [stats] = [r.event for r in records if isinstance(r.event, ev.WriterStats)]
    assert (stats.heartbeats_written, stats.heartbeats_failed) == (len(beats), 0)
    summary = json.loads((task_dir(tmp_path) / "metrics" / "summary.json").read_text())
    assert summary["heartbeats"]["written"] == len(beats)
