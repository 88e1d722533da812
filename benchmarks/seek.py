"""Seeking: `tail --since SEQ` and `replay RUN --at TIME` near the end of a long journal.

    .venv/bin/python benchmarks/seek.py [--events 2000000] [--segments 1 1000] [--repeat 5] [--dir ~/.cache/runjournal-bench/seek]

For each segment count, a task journal is built once (reused when it is there) holding
EVENTS records, written with Journal.append_batch in batches of 10,000 (fewer where a segment holds
fewer than 40,000), durability "none",
``segment_bytes`` chosen so that the journal has about that many segments. The records are
runs of 1,000 records each (run_started, 998 heartbeats, run_completed), stamped 1 ms apart
from 2026-01-01T00:00:00Z. Then, each through the CLI in a fresh process (so the figures
include Python's start-up, the same at any size):

- ``tail --since N`` with N 100 records before the end (prints 100 records);
- ``replay RUN --at TIME`` and ``--at SEQ`` for the last run, half-way through it, and
  ``--at TIME`` for the first run (the cost at the start of the journal);
- ``runjournal --help``, the floor: what a process costs before it reads anything.

Run ids are made as ``new_run_id`` makes them, from each run's start time (``replay --at``
seeks by it). Prints a table of median / p90 / max in milliseconds of REPEAT runs (after one
untimed warm-up, so the segments are in the page cache), and the machine and versions. Then,
in this process, ``state_at`` for the last run against the fold from sequence 1 it replaces
(the same manifest, checked), interleaved A, B, A, B: medians of REPEAT.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from runjournal.journal import FileStore, Journal, iso_utc, new_run_id
from runjournal.journal import events as ev
from runjournal.projections import TaskState, render, state_at
from runjournal.projections.replay import _fold

BATCH = 10_000
RUN_LEN = 1_000
TASK = "bench"
#: the first record's time: 2026-01-01T00:00:00Z, in ns
T0 = 1_767_225_600 * 10**9
STEP_NS = 1_000_000
#: bytes per record of this workload in a chained segment (record frame + its 8-byte link share)
RECORD_BYTES = 100


def run_id(n: int) -> str:
    """Run ``n``'s id: its start time, as ``new_run_id`` writes it, then ``n`` in hex."""
    return new_run_id(T0 + n * RUN_LEN * STEP_NS)[:-8] + f"{n:08x}"


def items(start: int, stop: int):
    """Records start+1 .. stop (sequence numbers), as Journal items with their time."""
    for i in range(start, stop):
        run, k = divmod(i, RUN_LEN)
        if k == 0:
            event = ev.RunStarted(task_id=TASK, pipeline_id="bench")
        elif k == RUN_LEN - 1:
            event = ev.RunCompleted()
        else:
            event = ev.Heartbeat()
        yield (run_id(run), event, T0 + i * STEP_NS)


def build(directory: Path, events: int, segments: int) -> Path:
    """The runs dir of a journal of ``events`` records in about ``segments`` segments."""
    runs = directory / f"{segments}seg-{events}-ids"  # "-ids": run ids that name their start
    marker = runs / "built"
    if marker.exists():
        return runs
    shutil.rmtree(runs, ignore_errors=True)
    segment_bytes = max(4096, events * RECORD_BYTES // segments) if segments > 1 else 1 << 40
    batch = max(1, min(BATCH, events // segments // 4))  # a segment rolls only between batches
    with Journal(str(runs / TASK / "journal"), durability="none", segment_bytes=segment_bytes) as j:
        for start in range(0, events, batch):
            j.append_batch(list(items(start, min(events, start + batch))))
    marker.write_text(str(events))
    return runs


def timed(args: list[str], runs: Path, repeat: int) -> list[float]:
    env = dict(os.environ, RUNJOURNAL_STORE=str(runs), RUNJOURNAL_ROOT=str(runs))
    command = [sys.executable, "-m", "runjournal", *args]
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm-up: page cache, .pyc
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def in_process(runs: Path, rid: str, repeat: int, **point) -> tuple[float, float]:
    """Medians (ms) of ``state_at`` and of the fold from sequence 1, run in turn; the same manifest."""
    store = FileStore(str(runs))
    paths = render.Paths(str(runs), str(runs.parent / "out"), TASK)
    seek_ms, full_ms = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = state_at(store, TASK, rid, paths, **point)
        t1 = time.perf_counter()
        state = TaskState(task_id=TASK)
        _fold(state, store.records(TASK), rid, point.get("seq"), point.get("ts_ns"))
        t2 = time.perf_counter()
        assert render.dumps(doc) == render.dumps(render.manifest(state, state.runs[rid], paths)), point
        seek_ms.append((t1 - t0) * 1000)
        full_ms.append((t2 - t1) * 1000)
    return statistics.median(seek_ms), statistics.median(full_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    # the built journals are kept for the next run: in this account's own cache, not a shared /tmp name
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "runjournal-bench" / "seek")
    a = parser.parse_args()
    last_run = (a.events - 1) // RUN_LEN
    mid = last_run * RUN_LEN + RUN_LEN // 2  # half-way through the last run: its index from 0
    at = T0 + mid * STEP_NS
    cases = {
        "help (floor)": ["--help"],
        f"tail --since {a.events - 99}": ["tail", "--task", TASK, "--since", str(a.events - 99)],
        "replay --at TIME": ["replay", run_id(last_run), "--task", TASK, "--at", iso_utc(at)],
        "replay --at SEQ": ["replay", run_id(last_run), "--task", TASK, "--at", str(mid + 1)],
        "replay first --at TIME": ["replay", run_id(0), "--task", TASK, "--at", iso_utc(T0 + RUN_LEN // 2 * STEP_NS)],
    }
    print(f"{a.events:,} events; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, msgspec {version('msgspec')}, {platform.platform()}")
    print(f"{'segments':>9}  {'case':<26} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    built = []
    for segments in a.segments:
        runs = build(a.dir, a.events, segments)
        built.append(runs)
        count = len([n for n in os.listdir(runs / TASK / "journal") if n.startswith("seg-")])
        for name, args in cases.items():
            t = sorted(timed(args, runs, a.repeat))
            p90 = t[min(len(t) - 1, int(0.9 * len(t)))]
            print(f"{count:>9}  {name:<26} {statistics.median(t):>10.1f} {p90:>8.1f} {t[-1]:>8.1f}")
    points = (
        ("last run --at TIME", last_run, {"ts_ns": at}),
        ("last run --at SEQ", last_run, {"seq": mid + 1}),
        ("last run, the end", last_run, {}),
        ("first run --at SEQ", 0, {"seq": RUN_LEN // 2 + 1}),
    )
    print(f"in process: state_at / the fold from sequence 1, medians of {a.repeat} in turn (ms)")
    for runs in built:
        for name, n, point in points:
            seek_ms, full_ms = in_process(runs, run_id(n), a.repeat, **point)
            print(f"{runs.name:>22}  {name:<20} {seek_ms:>10.1f} {full_ms:>10.1f}")


if __name__ == "__main__":
    main()
