"""One writer process of the property-based concurrency tests (tests/test_concurrency_property.py).

    schedule_writer.py JOURNAL_DIR SCHEDULE_JSON WRITER_INDEX ACK_FILE

Prints ``ready`` once its journal is open, waits for a line on stdin, then appends its batches
(helpers/schedules.py). After each append returns it writes one ack line per event in a
single write(): ``seq run_id run_seq`` for a committed event, ``0 run_id run_seq`` for one a
lock timeout spilled to ``pending/`` (kept, appended by the next lock holder). A planned kill
is a real SIGKILL of this process: after an acknowledged batch, or in the middle of the
write() of the next one, after part of its bytes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.schedules import Schedule, writer_batches  # noqa: E402

from runjournal.journal import Item, Journal, LockTimeout  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    directory, schedule_file, index, ack_file = sys.argv[1:]
    index = int(index)
    schedule = msgspec.json.decode(Path(schedule_file).read_bytes(), type=Schedule)
    plan = schedule.writers[index]
    ack = os.open(ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    journal = Journal(directory, durability=plan.durability, lock_timeout=plan.lock_timeout, segment_bytes=schedule.segment_bytes)
    print("ready", flush=True)
    sys.stdin.readline()

    kill = plan.kill
    if kill and kill.mid_write:
        real_write = os.write

        def torn_write(fd: int, data) -> int:
            # the batch's write() to the segment: part of it reaches the file, then the process dies
            if fd == journal._fd and len(data) > 1:  # noqa: SLF001 - the fault is aimed at the segment
                real_write(fd, bytes(data[: max(1, int(len(data) * kill.cut))]))
                die()
            return real_write(fd, data)

    for n, batch in enumerate(writer_batches(index, plan)):
        if kill and kill.mid_write and n == kill.after:
            os.write = torn_write
        try:
            if len(batch) == 1:  # a single event takes append()'s own path
                records = [journal.append(*batch[0])]
            else:
                records = journal.append_batch([Item(run, event) for run, event in batch])
            lines = [f"{r.seq} {r.run_id} {r.run_seq}\n" for r in records]
        except LockTimeout as e:
            if e.spilled_to is None:
                raise
            lines = [f"0 {run} -\n" for run, _ in batch]
        os.write(ack, "".join(lines).encode())
        if kill and not kill.mid_write and n + 1 == kill.after:
            die()
    journal.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
