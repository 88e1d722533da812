"""Rebuild benchmark: `runjournal project --rebuild` on a journal of N events of a realistic mix.

    .venv/bin/python benchmarks/rebuild.py [--events 1000000] [--dir /tmp/rj-bench] [--repeat 3] [--scratch]

Every repetition rebuilds over the live projection files that the previous one left (the
first is preceded by an untimed rebuild if there are none): what `project --rebuild` meets in
use. With --scratch, every repetition starts from nothing instead (projection files and
checkpoint removed, untimed), so that every file is created anew.
The journal (built once, reused when it exists with the same size) holds many runs of
5 command stages each: per stage a start, ~20 small output chunks (40-120 bytes), a few
heartbeats and an end; a few percent of runs fail (with an error record) or are left
unfinished. It is written with Journal.append_batch in batches of 10,000, durability
"none". Each repetition runs the real CLI in a child process and reports its wall time,
the rebuild time the command measured itself, events/s, and the child's peak RSS
(ru_maxrss). Prints one JSON object; keep it next to the figures in docs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.histories import SECOND, T0, RunScript, make_run_id  # noqa: E402

from runjournal.journal.writer import Journal  # noqa: E402

WORDS = b"compiling linking testing module passed cached fetched resolved warning ok done".split()


def run_items(n: int, rng: random.Random) -> list:
    s = RunScript(make_run_id(n, T0 + n * SECOND), start_ts=T0 + n * SECOND, stages=5)
    fate = rng.random()
    for i in range(1, 6):
        s.start_stage(i, 0.05)
        for k in range(rng.randint(15, 25)):
            line = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + b"\n"
            s.output(i, line, "stdout" if k % 7 else "stderr", 0.05)
            if k % 6 == 5:
                s.heartbeat(0.2)
        if fate < 0.04 and i == 4:
            s.fail_stage(i, 2, stderr="error: 3 tests failed\n" * 4)
            s.fail("stage-4 failed")
            return s.items
        if fate > 0.98 and i == 3:
            return s.items  # unfinished (a crashed runner)
        s.finish_stage(i, gap=0.05)
    s.complete()
    return s.items


def build(journal_dir: str, events: int) -> int:
    rng = random.Random(7)
    written = 0
    n = 0
    pending: list = []
    with Journal(journal_dir, durability="none") as journal:
        while written < events:
            pending.extend(run_items(n, rng))
            n += 1
            if len(pending) >= 10_000 or written + len(pending) >= events:
                take = pending[: events - written]
                for start in range(0, len(take), 10_000):
                    journal.append_batch(take[start : start + 10_000])
                written += len(take)
                pending = []
    return n


def clear_projections(root: Path) -> None:
    """Start each repetition from scratch: no projection file, no checkpoint (not timed)."""
    import shutil

    task = root / ".runs" / "default"
    for d in (task / "cli", task / "metrics", task / ".projection", root / "out"):
        shutil.rmtree(d, ignore_errors=True)
    (task / "metrics.json").unlink(missing_ok=True)
    os.sync()


def child(argv: list[str]) -> tuple[str, float, int]:
    """Run a child process: its stdout, wall time, and its own peak RSS in KiB (wait4)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"{argv} failed: {err.decode(errors='replace')}")
    return out.decode(), time.monotonic() - started, usage.ru_maxrss


def fold(journal_dir: str) -> int:
    """Events/s of reading, decoding and folding the journal in this process, writing nothing."""
    import gc

    from runjournal.journal import JournalReader
    from runjournal.projections import TaskState

    state = TaskState(task_id="default")
    gc.disable()  # as the projector does during a catch-up
    started = time.monotonic()
    n = 0
    for rec in JournalReader(journal_dir).records():
        state.apply(rec)
        n += 1
    took = time.monotonic() - started
    gc.enable()
    return round(n / took)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/rj-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", action="store_true", help="remove every projection file before each repetition")
    parser.add_argument("--fold-only", metavar="JOURNAL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fold_only:
        print(fold(args.fold_only))
        return
    root = Path(args.dir)
    journal_dir = root / ".runs" / "default" / "journal"
    marker = root / "events"
    if not marker.exists() or marker.read_text() != str(args.events):
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        started = time.monotonic()
        runs = build(str(journal_dir), args.events)
        marker.write_text(str(args.events))
        print(f"built {args.events} events ({runs} runs) in {time.monotonic() - started:.1f} s", file=sys.stderr)
    size = sum(f.stat().st_size for f in journal_dir.glob("seg-*.rjl"))
    results = []
    folds = []
    rebuild = [sys.executable, "-m", "runjournal", "--root", str(root), "project", "--rebuild", "--format", "json"]
    if not args.scratch and not (root / ".runs" / "default" / ".projection" / "checkpoint").exists():
        child(rebuild)  # the live files the timed rebuilds render over (untimed)
    for _ in range(args.repeat):
        if args.scratch:
            clear_projections(root)
        else:
            os.sync()  # as after a clear-out: no writeback of earlier runs left to compete with
        out, wall, rss = child(rebuild)
        doc = json.loads(out)["tasks"][0]
        results.append(
            {
                "wall_s": round(wall, 3),
                "rebuild_s": doc["seconds"],
                "events_per_s": round(doc["applied"] / doc["seconds"]),
                "files": doc["files"],
                "peak_rss_mb": round(rss / 1024, 1),
            }
        )
        folds.append(int(child([sys.executable, __file__, "--fold-only", str(journal_dir)])[0]))
    rates = sorted(r["events_per_s"] for r in results)
    print(
        json.dumps(
            {
                "command": f"{sys.executable} -m runjournal --root {root} project --rebuild --format json",
                "events": args.events,
                "mode": "from scratch" if args.scratch else "over the live files",
                "journal_bytes": size,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "versions": {p: version(p) for p in ("msgspec", "watchdog", "portalocker")},
                "runs": results,
                "median_events_per_s": rates[len(rates) // 2],
                # the same records read, decoded and folded in memory, no file written: the CPU part
                "fold_only_events_per_s": sorted(folds)[len(folds) // 2],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
