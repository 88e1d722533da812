"""Live latency: one append -> the manifest it changes is on disk, via a `runjournal watch` process.

    .venv/bin/python benchmarks/live_latency.py [--appends 200] [--dir DIR] [--poll SECONDS] [--durability batch]

Starts `runjournal watch` as a child process on a fresh root, then (in this process, so the
append comes from another process than the watcher) appends events one per append call:
runs of 5 stages, each RunStarted, StageStarted, StageFinished and RunCompleted changing
its manifest. The clock starts just before ``Journal.append`` and stops when inotify (a
watchdog observer in this process) reports the manifest renamed into place with the change
in it. Appends are spaced 5-25 ms apart (random, seeded). Prints one JSON object with
p50 / p90 / p99 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from runjournal.journal import events as ev
from runjournal.journal.naming import new_run_id
from runjournal.journal.writer import Journal

STAGES = tuple(ev.StagePlan(id=f"stage-{i}", title=f"Stage {i}", command="true") for i in range(1, 6))


class ManifestSeen(FileSystemEventHandler):
    def __init__(self):
        self.changed = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if os.fsdecode(event.dest_path or event.src_path).endswith("/manifest.json"):
            self.changed.set()


def events_of_a_run():
    yield ev.RunStarted(task_id="default", pipeline_id="bench", stages=STAGES), lambda m: m["status"] == "queued"
    for i in range(1, 6):
        yield ev.StageStarted(index=i, stage_id=f"stage-{i}"), lambda m, i=i: m["commands"][i - 1]["status"] == "running"
        yield ev.StageFinished(index=i, stage_id=f"stage-{i}"), lambda m, i=i: m["commands"][i - 1]["status"] == "succeeded"
    yield ev.RunCompleted(), lambda m: m["status"] == "succeeded"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--poll", type=float, default=None)
    parser.add_argument("--durability", default="batch")
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="rj-latency-")
    runs_dir = os.path.join(root, ".runs")
    journal_dir = os.path.join(runs_dir, "default", "journal")
    cmd = [sys.executable, "-m", "runjournal", "--root", root, "watch"] + (["--poll", str(args.poll)] if args.poll else [])
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().startswith("watching "), "watch did not start"
    threading.Thread(target=lambda: [None for _ in watcher.stdout], daemon=True).start()  # keep its pipe drained
    rng = random.Random(11)
    latencies: list[float] = []
    observer = Observer()
    seen = ManifestSeen()
    observer.start()
    watched = set()
    try:
        with Journal(journal_dir, durability=args.durability) as journal:
            while len(latencies) < args.appends:
                run_id = new_run_id()
                run_dir = os.path.join(runs_dir, "default", "cli", run_id)
                os.makedirs(run_dir, exist_ok=True)  # so that it can be watched before the first manifest
                if run_dir not in watched:
                    observer.schedule(seen, run_dir, recursive=False)
                    watched.add(run_dir)
                path = os.path.join(run_dir, "manifest.json")
                for event, done in events_of_a_run():
                    if len(latencies) >= args.appends:
                        break
                    time.sleep(rng.uniform(0.005, 0.025))
                    seen.changed.clear()
                    start = time.perf_counter()
                    journal.append(run_id, event)
                    deadline = start + 30
                    while True:
                        seen.changed.wait(max(0.0, deadline - time.perf_counter()))
                        seen.changed.clear()
                        try:
                            with open(path, "rb") as f:
                                if done(json.loads(f.read())):
                                    break
                        except (FileNotFoundError, ValueError):
                            pass
                        if time.perf_counter() > deadline:
                            raise SystemExit(f"no manifest change within 30 s for {event!r}")
                    latencies.append((time.perf_counter() - start) * 1000)
    finally:
        observer.stop()
        observer.join()
        watcher.terminate()
        watcher.wait(timeout=30)
        watcher.stdout.close()
        watcher.stderr.close()
    print(
        json.dumps(
            {
                "command": " ".join(cmd),
                "appends": len(latencies),
                "durability": args.durability,
                "observer": f"polling every {args.poll} s" if args.poll else "native (inotify)",
                "latency_ms": {p: round(pct(latencies, q), 2) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {"max": round(max(latencies), 2)},
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "versions": {p: version(p) for p in ("msgspec", "watchdog", "portalocker")},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
