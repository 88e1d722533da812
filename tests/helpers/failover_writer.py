"""A writer for the failover test: appends through ``open_store(URL)`` and rides out a
server that dies and is replaced, as the runner's backlog does.

    failover_writer.py URL TASK K COUNT ACKS

Waits for a line on stdin (the barrier), then appends COUNT events to run ``run_of(K)``,
event n holding ``n``; an append that fails (the server is gone) is retried with the same
event until it is acknowledged. After each acknowledgement it writes ``run_id run_seq seq n``
to ACKS (flushed). Prints ``done`` at the end.
"""

from __future__ import annotations

import os
import sys
import time

from runjournal.journal import JournalError, open_store
from runjournal.journal import events as ev


def run_of(n: int) -> str:
    return f"2025-12-01T09-37-11-576Z-{n:08x}"


def main() -> None:
    url, task, k, count, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    run_id = run_of(k)
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdin.readline()
    failures = 0
    with open_store(url, durability="always", lock_timeout=5) as store:
        for n in range(1, count + 1):
            event = ev.OutputChunk(index=1, stream="stdout", data=b"%d" % n)
            while True:
                try:
                    rec = store.append(task, run_id, event)
                    break
                except JournalError:
                    failures += 1
                    time.sleep(0.1)
            os.write(fd, f"{rec.run_id} {rec.run_seq} {rec.seq} {n}\n".encode())
    os.close(fd)
    print(f"done {failures}", flush=True)


if __name__ == "__main__":
    main()
