"""A fixed number of appends or reads, for counting instructions with callgrind.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python benchmarks/loop.py MODE N

MODE: ``raw`` (bench's raw loop: flock, encode, write, unlock), ``append`` (``Journal.append``,
durability none, as ``runjournal bench`` times it) or ``read`` (``read_records`` over the bench's
rebuild journal, built first). Run it with two values of N (2000 and 6000) and divide the
difference of the "Collected" totals by 4000: instructions per event, without start-up.
``PYTHONHASHSEED=0`` keeps the totals repeatable.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runjournal.cli.bench import build_rebuild_journal, journal_append, raw_append  # noqa: E402
from runjournal.journal import read_records  # noqa: E402


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as d:
        if mode == "raw":
            raw_append(os.path.join(d, "raw.bin"), n)
        elif mode == "append":
            journal_append(os.path.join(d, "runs"), "none", n)
        elif mode == "read":
            build_rebuild_journal(os.path.join(d, "runs"), "bench", 60_000)
            sum(1 for _, _ in zip(range(n), read_records(os.path.join(d, "runs", "bench", "journal"))))
        else:
            raise SystemExit(f"unknown mode {mode!r}: raw, append or read")


if __name__ == "__main__":
    main()
