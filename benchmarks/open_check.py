"""What a writer pays at open to check the current segment (docs/journal-format.md section 1).

    .venv/bin/python benchmarks/open_check.py [--fill-mib 16] [--opens 30] [--dir /tmp/rj-opencheck]

Builds a journal whose current segment holds ``--fill-mib`` MiB of records (durability
"none"), then times ``Journal(...)`` + one append + close, ``--opens`` times, with the segment in
the page cache: the open reads the segment and compares its CRC-32 with the head's. The same
is timed on a journal of one record, for the cost of everything else. Prints one JSON object
(p50 and max in ms, the machine and versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from runjournal.journal import Item, Journal
from runjournal.journal import events as ev


def build(directory: Path, fill: int) -> None:
    segment = directory / "seg-00000000000000000001.rjl"
    with Journal(str(directory), durability="none") as j:
        j.append("r", ev.Heartbeat())
        batch = [Item("r", ev.OutputChunk(index=1, stream="stdout", data=b"x" * 200))] * 100
        while segment.stat().st_size < fill:
            j.append_batch(batch)


def timed_opens(directory: Path, opens: int) -> dict:
    times = []
    for _ in range(opens):
        began = time.perf_counter()
        with Journal(str(directory), durability="none") as j:
            j.append("r", ev.Heartbeat())
        times.append((time.perf_counter() - began) * 1000)
    size = sum(f.stat().st_size for f in directory.glob("seg-*.rjl"))
    return {"segment_bytes": size, "p50_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill-mib", type=float, default=15.9)
    parser.add_argument("--opens", type=int, default=30)
    parser.add_argument("--dir", default="/tmp/rj-opencheck")
    args = parser.parse_args()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    full, small = root / "full" / "journal", root / "small" / "journal"
    build(full, int(args.fill_mib * (1 << 20)))
    build(small, 0)
    result = {
        "full_segment": timed_opens(full, args.opens),
        "one_record": timed_opens(small, args.opens),
        "machine": f"{os.cpu_count()} cpus, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(),
        "msgspec": version("msgspec"),
        "portalocker": version("portalocker"),
    }
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
