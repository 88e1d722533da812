"""Append events to a journal from a separate process (live tests and benchmarks).

    append_events.py JOURNAL_DIR lines [--batch N]   < JSON Lines of {"run_id", "ts", "event"}
    append_events.py JOURNAL_DIR burst --runs N [--batch N] [--stages N]

``lines`` appends what it reads (``ts`` null: the time of the append), ``--batch`` lines per
append. ``burst`` appends N complete runs stamped with the current time, in batches;
it prints the run ids, one a line, once everything is appended.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.histories import RunScript, interleave, make_run_id  # noqa: E402

from runjournal.journal.events import AnyEvent  # noqa: E402
from runjournal.journal.writer import Item, Journal  # noqa: E402


class Line(msgspec.Struct):
    run_id: str
    event: AnyEvent
    ts: int | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal_dir")
    parser.add_argument("mode", choices=["lines", "burst"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--stages", type=int, default=3)
    args = parser.parse_args()
    with Journal(args.journal_dir, durability="none") as journal:
        if args.mode == "lines":
            decoder = msgspec.json.Decoder(Line)
            pending: list[Item] = []
            for raw in sys.stdin.buffer:
                if raw.strip():
                    line = decoder.decode(raw)
                    pending.append(Item(line.run_id, line.event, line.ts))
                if len(pending) >= args.batch:
                    journal.append_batch(pending)
                    pending = []
            if pending:
                journal.append_batch(pending)
            return
        now = time.time_ns()
        scripts = []
        for n in range(args.runs):
            s = RunScript(make_run_id(n, now), start_ts=now + n * 1_000_000, stages=args.stages)
            for i in range(1, args.stages + 1):
                s.stage(i)
            scripts.append(s.complete())
        items = interleave(scripts)
        for start in range(0, len(items), args.batch):
            journal.append_batch(items[start : start + args.batch])
        for s in scripts:
            print(s.run_id)


if __name__ == "__main__":
    main()
