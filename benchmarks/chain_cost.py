"""One writer's appends and a whole read, in events per second: what the hash chain costs.

    .venv/bin/python benchmarks/chain_cost.py [N]

Appends N (default 300,000) 80-byte output chunks to a new journal with one writer
(durability ``none``), then reads the journal back three times and keeps the best; prints both
rates and the bytes per event on disk. Run it in two checkouts (before and after a format
change) to compare them.
"""

import os
import sys
import tempfile
import time

from runjournal.journal import Journal, events as ev, read_records


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "journal")
        event = ev.OutputChunk(index=1, stream="stdout", data=b"x" * 80)
        with Journal(directory, durability="none") as j:
            j.append("r", event)
            start = time.perf_counter()
            for _ in range(n):
                j.append("r", event)
            appended = time.perf_counter() - start
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            count = sum(1 for _ in read_records(directory))
            best = min(best, time.perf_counter() - start)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory) if f.startswith("seg-"))
        print(f"append {n / appended:,.0f}/s  read {count / best:,.0f}/s  bytes/event {size / count:.1f}")


if __name__ == "__main__":
    main()
