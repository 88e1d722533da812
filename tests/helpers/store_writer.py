"""A writer process for the store contract suite: appends through ``open_store(URL)`` only.

    store_writer.py URL TASK K COUNT ACKS

Waits for a line on stdin (the barrier), then appends COUNT events to its two runs,
``run_of(2K)`` and ``run_of(2K + 1)`` (one event, then a batch across both runs, in turn), writing ``run_id run_seq seq``
to ACKS after each acknowledged append (flushed, so a SIGKILL loses no acknowledgement it
made). Prints ``done`` at the end.
"""

from __future__ import annotations

import os
import sys

from runjournal.journal import Item, open_store
from runjournal.journal import events as ev


def run_of(n: int) -> str:
    """A run id in the contract's shape."""
    return f"2025-12-01T09-37-11-576Z-{n:08x}"


def main() -> None:
    url, task, k, count, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    run_a, run_b = run_of(2 * k), run_of(2 * k + 1)
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdin.readline()
    n = 0
    with open_store(url) as store:
        while n < count:
            n += 1
            if n % 2:
                records = [store.append(task, run_a, ev.OutputChunk(index=n, stream="stdout", data=b"%d" % n))]
            else:
                items = [Item(run_a, ev.OutputChunk(index=n, stream="stdout", data=b"%d" % n)), Item(run_b, ev.Heartbeat())]
                records = store.append_batch(task, items)
            os.write(fd, "".join(f"{r.run_id} {r.run_seq} {r.seq}\n" for r in records).encode())
    os.close(fd)
    print("done", flush=True)


if __name__ == "__main__":
    main()
