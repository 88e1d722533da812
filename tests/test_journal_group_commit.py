"""Group commit (journal/commit.py): writers that must be durable share fdatasyncs, none is
issued under the append lock, and an acknowledgement still means "on disk": for every append
that returned, some fdatasync of its segment began after its bytes were written and ended
before it returned."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DEADLINE, clean_env
from helpers.procs import finish, go, read_line, spawned

from runjournal.journal import Journal, check
from runjournal.journal import events as ev
from runjournal.journal import lock as lock_module
from runjournal.journal.commit import SYNC_LOCK, WAIT
from runjournal.journal.format import encode_frame

WRITERS = 6
APPENDS = 60


def segment_inodes(d: Path) -> set[int]:
    return {p.stat().st_ino for p in d.iterdir() if p.name.startswith("seg-")}


@pytest.mark.parametrize("durability", ["always", "batch"])
def test_every_acknowledged_durable_append_was_synced_after_it_was_written(tmp_path: Path, durability: str):
    # boundary events: durable before the append returns in `always` and in `batch` alike
    d = tmp_path / "journal"
    logs = [tmp_path / f"w{i}.json" for i in range(WRITERS)]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawned("sync_witness.py", d, f"w{i}", APPENDS, logs[i], "--durability", durability)) for i in range(WRITERS)]
        go(procs)
        for p in procs:
            finish(p)
    report = check(str(d))
    assert report.ok, report.problems
    segments = segment_inodes(d)
    assert segments
    found = [json.loads(f.read_text()) for f in logs]
    syncs = [tuple(s) for log in found for s in log["syncs"]]
    for log in found:
        writes = [(ino, t) for ino, t in log["writes"] if ino in segments]
        for first, last, t0, t1 in log["acks"]:
            mine = [(ino, t) for ino, t in writes if t0 <= t <= t1]
            assert mine, f"append of sequences {first}-{last} wrote nothing to a segment"
            ino, written = mine[-1]
            assert any(s_ino == ino and start >= written and end <= t1 for s_ino, start, end in syncs), (
                f"sequences {first}-{last} were acknowledged with no fdatasync of their segment between their write and the acknowledgement"
            )
    appends = WRITERS * APPENDS
    assert sum(len(log["acks"]) for log in found) == appends


def test_a_writer_whose_record_another_sync_covered_does_not_sync_again(tmp_path: Path):
    d = str(tmp_path / "journal")
    with Journal(d, durability="none") as lazy, Journal(d, durability="always") as eager:
        first = lazy.append("a", ev.Heartbeat())  # written, not synced
        eager.append("b", ev.Heartbeat())  # its fdatasync covers everything written before it
        assert eager._commit.syncs == 1  # noqa: SLF001
        lazy._commit.durable(lazy._head, lazy._fd, first.seq, lazy._base)  # noqa: SLF001
        assert (lazy._commit.syncs, lazy._commit.covered) == (0, 1)  # noqa: SLF001
        later = lazy.append("a", ev.Heartbeat())  # written after the last sync: not covered
        lazy._commit.durable(lazy._head, lazy._fd, later.seq, lazy._base)  # noqa: SLF001
        assert lazy._commit.syncs == 1  # noqa: SLF001


def test_no_fdatasync_is_issued_while_the_append_lock_is_held(tmp_path: Path, monkeypatch):
    d = tmp_path / "journal"
    held: set[int] = set()
    real_flock = fcntl.flock
    lock_fds: set[int] = set()

    class Tracking:
        LOCK_EX, LOCK_NB, LOCK_UN, LOCK_SH = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN, fcntl.LOCK_SH

        @staticmethod
        def flock(fd, op):
            real_flock(fd, op)
            fd = fd if isinstance(fd, int) else fd.fileno()
            (held.discard if op == fcntl.LOCK_UN else held.add)(fd)

    synced_holding: list[set[int]] = []
    real_sync = os.fdatasync

    def fdatasync(fd):
        synced_holding.append(held & lock_fds)
        real_sync(fd)

    monkeypatch.setattr(lock_module, "fcntl", Tracking)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with Journal(str(d), durability="always") as j:
        lock_fds.add(j._lock._fd)  # noqa: SLF001 - the append lock, not the sync lock
        for i in range(20):
            j.append(f"r{i % 3}", ev.StageFinished(index=i, stage_id="s"))
        j.append_batch([("r0", ev.Heartbeat()), ("r1", ev.Heartbeat())])
        j.flush()
    assert len(synced_holding) >= 21  # one per durable append; the flush found itself covered
    assert not any(synced_holding), "an fdatasync ran while the journal's append lock was held"


def test_a_stopped_holder_of_the_sync_lock_costs_the_others_only_their_sharing(tmp_path: Path):
    d = tmp_path / "journal"
    with Journal(str(d), durability="always") as j:
        j.append("r", ev.Heartbeat())
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, sys\nf = open(sys.argv[1], 'r+b')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()", str(d / SYNC_LOCK)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        try:
            assert read_line(holder) == "held"
            t0 = time.monotonic()
            syncs = j._commit.syncs  # noqa: SLF001
            for _ in range(50):
                j.append("r", ev.Heartbeat())
            took = time.monotonic() - t0
            assert j._commit.syncs == syncs + 50  # noqa: SLF001 - each synced on its own
            # one wait for the lock, then none: not 50 waits of WAIT seconds
            assert took < WAIT + DEADLINE / 4, f"50 appends took {took:.1f} s beside a stuck sync lock holder"
        finally:
            holder.kill()
            holder.wait()
            holder.stdin.close()
            holder.stdout.close()
    assert check(str(d)).ok


def test_a_cut_tail_makes_the_synced_mark_forget(tmp_path: Path):
    # a writer that has the journal open meets a torn tail another writer left when it died:
    # the sequences past the cut are written again, so the mark must not vouch for them
    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as lazy, Journal(str(d), durability="always") as eager:
        lazy.append("a", ev.Heartbeat())
        eager.append("b", ev.Heartbeat())
        eager.append("b", ev.Heartbeat())
        assert eager._head.synced() == 3  # noqa: SLF001
        seg = next(p for p in d.iterdir() if p.name.startswith("seg-"))
        with open(seg, "ab") as f:  # the first bytes of a frame, and no more: a torn tail
            f.write(encode_frame(b"x" * 60, False)[:-10])
        lazy.append("a", ev.Heartbeat())  # cuts the tail, records the repair, then appends (no sync)
        assert lazy.repaired
        assert lazy._last_seq == 5 and lazy._head.synced() == 0  # noqa: SLF001
    assert check(str(d)).ok
