"""One writer process of the concurrency tests (tests/test_journal_procs.py).

    appender.py JOURNAL_DIR NAME COUNT ACK_FILE [--durability MODE] [--shared RUN_ID]

Prints ``ready`` once its journal is open, then waits for a line on stdin (the start
signal). Appends COUNT events (0: until a second line arrives on stdin, or until it is
killed), each an ``output`` event whose ``index``
is a counter that grows by one per event. After every append returns it writes one ack
line per record, ``seq run_id run_seq counter``, to ACK_FILE in a single write() — so a
line exists only for an acknowledged event, whenever the process is killed.

Default: two runs of its own, NAME-a and NAME-b, with single appends and, every fourth
time, a batch of three events across both runs. With ``--shared RUN_ID`` every event goes
to that run, appended with the run sequence it expects (retried on SequenceConflict).
"""

from __future__ import annotations

import argparse
import os
import select
import sys

from runjournal.journal import Item, Journal, SequenceConflict
from runjournal.journal import events as ev


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("directory")
    p.add_argument("name")
    p.add_argument("count", type=int)
    p.add_argument("ack_file")
    p.add_argument("--durability", default="batch")
    p.add_argument("--shared")
    args = p.parse_args()

    ack = os.open(args.ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    journal = Journal(args.directory, durability=args.durability)
    print("ready", flush=True)
    sys.stdin.readline()

    def event(counter: int) -> ev.OutputChunk:
        return ev.OutputChunk(index=counter, stream="stdout", data=f"{args.name}:{counter}".encode())

    counter = 0
    conflicts = 0
    while counter < args.count if args.count else not select.select([sys.stdin], [], [], 0)[0]:
        if args.shared:
            counter += 1
            while True:
                try:
                    have = journal.run_seq(args.shared)
                    records = [journal.append(args.shared, event(counter), expected_seq=have)]
                    break
                except SequenceConflict:
                    conflicts += 1
        elif counter % 4 == 3 and (args.count == 0 or counter + 3 <= args.count):
            runs = [f"{args.name}-a", f"{args.name}-b", f"{args.name}-a"]
            records = journal.append_batch([Item(r, event(counter + 1 + i)) for i, r in enumerate(runs)])
            counter += 3
        else:
            counter += 1
            records = [journal.append(f"{args.name}-{'ab'[counter % 2]}", event(counter))]
        os.write(ack, "".join(f"{r.seq} {r.run_id} {r.run_seq} {r.event.index}\n" for r in records).encode())
    journal.close()
    print(f"done conflicts={conflicts}", flush=True)


if __name__ == "__main__":
    main()
