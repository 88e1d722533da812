"""What the journal lock's waiting costs under contention, apart from the journal's own work.

    .venv/bin/python benchmarks/lock_handoff.py [--writers 50] [--events 200000] [--repeat 3] [--dir DIR]

Three runs of ``runjournal bench``'s raw concurrent loop (encode a record, lock, write,
unlock: the critical section is one write), each with ``--writers`` processes released
together, differing only in how a process waits for a busy lock:

- ``flock``: a blocking ``flock`` in the calling thread (the raw baseline of ``bench``);
- ``JournalLock``: the journal's lock (a non-blocking try, two short backoff sleeps, then a
  blocking wait in a helper thread, which hands the lock to the caller, so the wait can
  time out without signals);
- ``JournalLock, caller blocks``: the same class with the waiting replaced by a blocking
  ``flock`` in the calling thread (no timeout): what the hand-off would cost without the
  helper thread.

Prints one JSON object: events per second for each, per repetition and the median.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runjournal.cli.bench import PAYLOAD, _raw_worker, _together  # noqa: E402
from runjournal.journal import events as ev  # noqa: E402
from runjournal.journal.events import Record, encoder  # noqa: E402
from runjournal.journal.lock import JournalLock  # noqa: E402


def _journal_lock_worker(path: str, run_id: str, n: int, barrier, caller_blocks: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = JournalLock(path + ".lock")
    if caller_blocks:
        lock._wait = lambda timeout: fcntl.flock(lock._fd, fcntl.LOCK_EX)  # noqa: SLF001 - the experiment
    barrier.wait()
    for i in range(n):
        data = encoder.encode(Record(i, run_id, i, time.time_ns(), ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD[:100] + b"%019d" % i)))
        lock.acquire()
        os.write(fd, data)
        lock.release()


def _caller_blocks_worker(path: str, run_id: str, n: int, barrier) -> None:
    _journal_lock_worker(path, run_id, n, barrier, caller_blocks=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    per = max(1, args.events // args.writers)
    kinds = {"flock": _raw_worker, "JournalLock": _journal_lock_worker, "JournalLock, caller blocks": _caller_blocks_worker}
    rates: dict[str, list[int]] = {k: [] for k in kinds}
    for _ in range(args.repeat):
        for name, worker in kinds.items():  # interleaved, each on a fresh file
            with tempfile.TemporaryDirectory(dir=args.dir) as d:
                dt = _together(worker, lambda w, d=d: (os.path.join(d, "log.bin"), f"writer-{w}", per), args.writers)
                rates[name].append(round(per * args.writers / dt))
    print(json.dumps({
        "writers": args.writers,
        "events": per * args.writers,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "events_per_s": {k: {"median": round(statistics.median(v)), "runs": v} for k, v in rates.items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
