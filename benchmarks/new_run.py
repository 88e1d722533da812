"""The first append of a new run, in a task that already has N runs.

    .venv/bin/python benchmarks/new_run.py [--runs 100 100000 1000000] [--new 2000] [--dir /tmp/rj-newrun]

For each N, a journal is built once (reused when it is there) holding N runs of one event
each, written with Journal.append_batch in batches of 10,000, durability "none". Then a
fresh writer opens it (its first catch-up is not timed: it is the same at any N when the
head is valid), and appends one event to each of NEW runs it has never seen, one append per
call, timing each call. Nothing but the look-up of the run's sequence depends on N: a table
that forgot runs would read the journal here. Prints one JSON object with p50/p90/p99/max in
microseconds per N, the machine and versions; keep it next to the figures in docs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

from runjournal.journal import events as ev
from runjournal.journal.writer import HEAD, Journal

BATCH = 10_000


def run_id(n: int) -> str:
    return f"2025-12-01T09-37-11-576Z-{n:08x}"


def build(directory: Path, runs: int) -> None:
    marker = directory / "built"
    if marker.exists() and marker.read_text() == str(runs):
        return
    if directory.exists():
        for p in sorted(directory.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
    with Journal(str(directory / "journal"), durability="none") as j:
        for start in range(0, runs, BATCH):
            j.append_batch([(run_id(n), ev.Heartbeat()) for n in range(start, min(runs, start + BATCH))])
    marker.write_text(str(runs))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(directory: Path, runs: int, new: int) -> dict:
    with Journal(str(directory / "journal"), durability="none") as j:
        j.append(run_id(0), ev.Heartbeat())  # the writer's first catch-up, untimed
        times = []
        for k in range(new):
            rid = f"2026-12-06T00-00-00-000Z-{(runs + k) & 0xFFFFFFFF:08x}"
            t0 = time.perf_counter_ns()
            j.append(rid, ev.Heartbeat())
            times.append((time.perf_counter_ns() - t0) / 1000)
        head = os.path.getsize(directory / "journal" / HEAD)
    return {
        "runs": runs,
        "new_runs": new,
        "first_append_us": {p: round(percentile(times, q), 1) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {"max": round(max(times), 1)},
        "head_bytes": head,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[100, 100_000, 1_000_000])
    p.add_argument("--new", type=int, default=2000)
    p.add_argument("--dir", default="/tmp/rj-newrun")
    args = p.parse_args()
    results = []
    for runs in args.runs:
        directory = Path(args.dir) / str(runs)
        build(directory, runs)
        results.append(measure(directory, runs, args.new))
        # the new runs stay in the journal: rebuild next time for the same figures
        (directory / "built").unlink()
    print(json.dumps({
        "benchmark": "new_run", "results": results,
        "machine": f"{os.cpu_count()} cpus, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(), "msgspec": version("msgspec"), "portalocker": version("portalocker"),
    }, indent=1))


if __name__ == "__main__":
    main()
