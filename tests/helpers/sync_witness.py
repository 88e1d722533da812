"""One writer of the group-commit tests (tests/test_journal_group_commit.py), which records
when its appends wrote, when it (or its flusher) called fdatasync, and when each append
returned, on the system-wide monotonic clock, so the test can check every acknowledgement
against every process's syncs.

    sync_witness.py JOURNAL_DIR NAME COUNT LOG_FILE --durability MODE

Prints ``ready`` once its journal is open, waits for a line on stdin, appends COUNT
``stage_finished`` events (a boundary event: durable before the append returns in ``always``
and in ``batch``), every third time as a batch of two, then writes LOG_FILE (JSON):
``writes`` [inode, end ns], ``syncs`` [inode, start ns, end ns], ``acks`` [first seq, last
seq, start ns, end ns].
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

from runjournal.journal import Item, Journal
from runjournal.journal import events as ev

writes: list[tuple[int, int]] = []
syncs: list[tuple[int, int, int]] = []
guard = threading.Lock()  # the flusher thread syncs too
_write, _fdatasync = os.write, os.fdatasync


def write(fd: int, data) -> int:
    n = _write(fd, data)
    with guard:
        writes.append((os.fstat(fd).st_ino, time.monotonic_ns()))
    return n


def fdatasync(fd: int) -> None:
    ino, t0 = os.fstat(fd).st_ino, time.monotonic_ns()
    _fdatasync(fd)
    with guard:
        syncs.append((ino, t0, time.monotonic_ns()))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("name")
    p.add_argument("count", type=int)
    p.add_argument("log")
    p.add_argument("--durability", default="always")
    args = p.parse_args()
    os.write, os.fdatasync = write, fdatasync
    acks = []
    with Journal(args.directory, durability=args.durability) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(args.count):
            event = ev.StageFinished(index=i, stage_id=f"s{i}")
            t0 = time.monotonic_ns()
            if i % 3 == 2:
                records = journal.append_batch([Item(args.name, event), Item(args.name, event)])
            else:
                records = [journal.append(args.name, event)]
            acks.append((records[0].seq, records[-1].seq, t0, time.monotonic_ns()))
    with open(args.log, "w") as f:
        json.dump({"writes": writes, "syncs": syncs, "acks": acks}, f)


if __name__ == "__main__":
    main()
