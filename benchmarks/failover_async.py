"""What a failover to an *asynchronous* standby loses, measured (docs/scale-out.md).

    .venv/bin/python benchmarks/failover_async.py [--writers 10] [--pause 1.0] [--sync]

Makes a primary and a streaming standby (tests/helpers/pgcluster.py: throwaway clusters,
as a non-root account), starts WRITERS processes appending through the PostgreSQL store with
durability ``always`` (tests/helpers/failover_writer.py, which records every acknowledged
append), stops the primary's WAL sender (SIGSTOP) for PAUSE seconds while they write,
SIGKILLs the primary with all its processes, promotes the standby, lets the writers finish on it, and counts the
acknowledged appends the promoted standby does not have. With ``--sync`` the standby is
synchronous (``synchronous_standby_names``): the same run must lose nothing (the writers
wait while the sender is stopped). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.pgcluster import Cluster  # noqa: E402

from runjournal.journal import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--sync", action="store_true")
    args = parser.parse_args()
    place = Path(tempfile.mkdtemp(prefix="runjournal-failover-"))
    place.chmod(0o755)
    conf = {"synchronous_standby_names": "'standby'"} if args.sync else {}
    primary = Cluster(place / "primary").init(**conf).start()
    standby = None
    procs: list[subprocess.Popen] = []
    try:
        standby = primary.standby(place / "standby", name="standby")
        user = primary.url.split("://")[1].split("@")[0]
        url = f"postgresql://{user}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres?target_session_attrs=read-write&connect_timeout=2"
        acks = [place / f"w{k}.acks" for k in range(args.writers)]
        writer = ROOT / "tests" / "helpers" / "failover_writer.py"
        for k in range(args.writers):
            procs.append(subprocess.Popen([sys.executable, str(writer), url, "t", str(k), str(args.count), str(acks[k])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()

        def acked() -> int:
            return sum(len(a.read_text().splitlines()) for a in acks if a.exists())

        while acked() < args.writers * args.count // 4:
            time.sleep(0.01)
        sender = int(primary.sql("SELECT pid FROM pg_stat_replication") or 0)
        os.kill(sender, signal.SIGSTOP)  # the primary stops sending WAL (as over a link that fails)
        before = acked()
        time.sleep(args.pause)
        during = acked() - before
        primary.kill()  # with its stopped WAL sender: what it had not sent is gone
        standby.promote()
        for p in procs:
            p.communicate(timeout=300)
        with open_store(f"postgresql://{user}@127.0.0.1:{standby.port}/postgres") as store:
            stored = {(r.run_id, r.run_seq, r.seq) for r in store.records("t")}
        lost = 0
        for a in acks:
            for line in a.read_text().splitlines():
                run_id, run_seq, seq, _ = line.split()
                if (run_id, int(run_seq), int(seq)) not in stored:
                    lost += 1
        print(json.dumps({
            "standby": "synchronous" if args.sync else "asynchronous",
            "writers": args.writers,
            "sender_paused_s": args.pause,
            "acknowledged": acked(),
            "acknowledged_while_paused": during,
            "acknowledged_lost": lost,
            "machine": f"{os.cpu_count()} cpus, {platform.machine()}, Linux {platform.release()}",
            "postgresql": standby.sql("SHOW server_version"),
        }))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if standby is not None:
            standby.remove()
        primary.remove()
        shutil.rmtree(place, ignore_errors=True)


if __name__ == "__main__":
    main()
