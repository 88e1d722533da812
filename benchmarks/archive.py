"""Rebuild before and after `runjournal archive`, on the same history in 1 and in 1,000 segments.

    .venv/bin/python benchmarks/archive.py [--runs 2000] [--lines 40] [--store postgresql://...]

Writes ``--runs`` ended runs one after another (each 2 stages of ``--lines`` output lines) and
one open run, into a journal of one segment and into one cut into about 1,000 segments; then,
for each, times ``runjournal project --rebuild`` (median of 3), runs ``archive --keep-last 10``,
times the rebuild again, and checks the task files came out byte for byte the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.histories import SECOND, T0, RunScript, make_run_id  # noqa: E402
from runjournal.journal import Journal  # noqa: E402

FILES = (".runs/default/metrics.json", ".runs/default/metrics/summary.json", "out/default/state.json")


def history(runs: int, lines: int):
    """Each run's items: ``runs`` ended runs, then one left open."""
    for n in range(runs + 1):
        run = RunScript(make_run_id(n), start_ts=T0 + n * 600 * SECOND, stages=2)
        if n < runs:
            run.stage(1, lines=lines).stage(2, lines=lines).complete()
        else:
            run.start_stage(1)
        yield run.items


def build(root: Path, runs: int, lines: int, segment_bytes: int) -> int:
    with Journal(str(root / ".runs" / "default" / "journal"), durability="none", segment_bytes=segment_bytes) as j:
        return sum(len(j.append_batch(items)) for items in history(runs, lines))


def build_in(store, runs: int, lines: int) -> int:
    """The same history, appended through a store's API (the PostgreSQL store)."""
    return sum(len(store.append_batch("default", items)) for items in history(runs, lines))


def cli(root: Path, *args: str, store: str | None = None) -> float:
    where = ["--store", store] if store else []
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), *where, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def rebuild(root: Path, store: str | None = None) -> float:
    return statistics.median(cli(root, "project", "--rebuild", store=store) for _ in range(3))


def on_server(url: str, runs: int, lines: int) -> None:
    """The PostgreSQL store: live rows and archive units instead of segments."""
    from runjournal.journal import open_store

    with tempfile.TemporaryDirectory() as tmp, open_store(url, durability="none") as store:
        root = Path(tmp)
        events = build_in(store, runs, lines)
        before = rebuild(root, url)
        files = {f: (root / f).read_bytes() for f in FILES}
        took = cli(root, "archive", "--keep-last", "10", store=url)
        units = store.archive_units("default")
        live = sum(1 for _ in store.records("default"))
        after = rebuild(root, url)
        same = all((root / f).read_bytes() == data for f, data in files.items())
        stored = sum(u.stored_bytes for u in units)
        print(f"PostgreSQL: {events} events; rebuild before {before:.2f}s; archive {took:.2f}s ({len(units)} unit(s), "
              f"{sum(u.bytes for u in units)} bytes stored as {stored}); {live} live records; rebuild after {after:.2f}s; files {'same' if same else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--store", metavar="URL", help="a postgresql:// store (an empty schema): measure there instead")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.runs} ended runs of 2 stages x {args.lines} lines, and one open run")
    if args.store:
        on_server(args.store, args.runs, args.lines)
        return
    print(f"{'segments':>9} {'events':>9} {'rebuild before':>15} {'archive':>8} {'segments after':>15} {'rebuild after':>14}  files")
    for one in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            probe = Path(tmp) / "probe"
            events = build(probe, args.runs, args.lines, 1 << 40)
            size = os.path.getsize(next((probe / ".runs/default/journal").glob("seg-*.rjl")))
            segment_bytes = 1 << 40 if one else max(4096, size // 1000)
            build(root, args.runs, args.lines, segment_bytes)
            journal = root / ".runs/default/journal"
            segments = len(list(journal.glob("seg-*.rjl")))
            before = rebuild(root)
            files = {f: (root / f).read_bytes() for f in FILES}
            took = cli(root, "archive", "--keep-last", "10")
            after_segments = len(list(journal.glob("seg-*.rjl")))
            after = rebuild(root)
            same = all((root / f).read_bytes() == data for f, data in files.items())
            print(f"{segments:>9} {events:>9} {before:>14.2f}s {took:>7.2f}s {after_segments:>15} {after:>13.2f}s  {'same' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
