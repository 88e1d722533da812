"""Real processes against one journal: concurrent writers, SIGKILL, SIGSTOP of a lock holder.

Synchronisation is by pipes and files, with a deadline; never by sleeping and hoping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import portalocker
import pytest
from helpers import DEADLINE, HELPERS, clean_env, wait_until
from helpers.procs import finish, go, read_line, spawned
from helpers.records import records_by_run

from runjournal.journal import Item, Journal, LockTimeout, check, read_records, repair
from runjournal.journal import events as ev
from runjournal.journal.lock import JournalLock
from runjournal.journal.writer import PENDING_DIR


def acks(path: Path) -> list[tuple[int, str, int, int]]:
    """The acknowledged records a writer reported: only complete lines count."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [(int(s), run, int(rs), int(c)) for s, run, rs, c in (line.split() for line in lines)]


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def assert_acknowledged_present(directory: Path, acked: list[tuple[int, str, int, int]]) -> None:
    by_seq = {r.seq: r for r in read_records(str(directory))}
    for seq, run_id, run_seq, counter in acked:
        rec = by_seq.get(seq)
        assert rec is not None, f"acknowledged record {seq} is missing"
        assert (rec.run_id, rec.run_seq, rec.event.index) == (run_id, run_seq, counter)


def check_after_crash(directory: Path) -> None:
    """Clean, except for a torn tail the killed writer may have left; that one repairs."""
    report = check(str(directory))
    assert {p.kind for p in report.problems} <= {"torn-tail"}, report.problems
    if report.problems:
        assert repair(str(directory)).ok
    assert check(str(directory)).ok


WRITERS = 8
STEP = 20  # acknowledged events each writer makes before the kill, and after it
MODES = ["none", "batch", "always", "none", "batch", "none", "batch", "always"]


@pytest.mark.parametrize("victim_mode", ["none", "batch", "always"])
def test_concurrent_writers_lose_nothing_when_one_is_killed(tmp_path: Path, victim_mode: str):
    # the survivors use every mode; the one killed, each mode in turn (in `always` it dies
    # anywhere in a group commit: before, in or after a sync shared with the others)
    d = tmp_path / "journal"
    names = [f"w{i}" for i in range(WRITERS)]
    ack_files = {n: tmp_path / f"{n}.acks" for n in names}

    def at_least(count: int, writers) -> bool:
        return all(len(acks(ack_files[n])) >= count for n in writers)

    with contextlib.ExitStack() as stack:
        modes = [victim_mode, *MODES[1:]]
        procs = {n: stack.enter_context(spawned("appender.py", d, n, 0, ack_files[n], "--durability", mode)) for n, mode in zip(names, modes)}
        go(procs.values())
        wait_until(lambda: at_least(STEP, names), f"{STEP} acknowledged events from every writer")
        victim = procs.pop("w0")
        victim.send_signal(signal.SIGKILL)  # in the middle of its stream: it appends until stopped
        assert victim.wait(DEADLINE) == -signal.SIGKILL
        since = {n: len(acks(ack_files[n])) for n in procs}
        wait_until(lambda: all(len(acks(ack_files[n])) >= since[n] + STEP for n in procs), f"{STEP} more events from each survivor")
        for p in procs.values():
            p.stdin.write("stop\n")
            p.stdin.flush()
        for p in procs.values():
            assert finish(p).startswith("done")

    runs = records_by_run(d)
    for n in names:
        acked = acks(ack_files[n])
        assert_acknowledged_present(d, acked)
        counters = []
        for run in (f"{n}-a", f"{n}-b"):
            mine = [r.event.index for r in runs.get(run, [])]
            assert mine == sorted(set(mine)), f"{run}: counters out of order or repeated"
            assert all(r.event.data == f"{n}:{r.event.index}".encode() for r in runs.get(run, []))
            counters += mine
        highest = max(c for *_, c in acked)
        assert sorted(counters) == list(range(1, len(counters) + 1))
        if n == "w0":  # every acknowledged event, and at most the one batch it was killed writing
            assert highest <= len(counters) <= highest + 3
        else:
            assert len(counters) == highest
    check_after_crash(d)


def test_appends_with_expected_sequences_to_one_run_from_many_processes(tmp_path: Path):
    d = tmp_path / "journal"
    shared = "2025-12-01T09-37-11-576Z-5a5a5a5a"
    names = [f"s{i}" for i in range(4)]
    per_writer = 25
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawned("appender.py", d, n, per_writer, tmp_path / f"{n}.acks", "--durability", "none", "--shared", shared)) for n in names]
        go(procs)
        for p in procs:
            finish(p)

    records = records_by_run(d)[shared]
    assert len(records) == len(names) * per_writer
    for n in names:
        acked = acks(tmp_path / f"{n}.acks")
        assert [c for *_, c in acked] == list(range(1, per_writer + 1))
        assert_acknowledged_present(d, acked)
        mine = [r.event.index for r in records if r.event.data.startswith(f"{n}:".encode())]
        assert mine == list(range(1, per_writer + 1)), "each writer's events once each, in its order"
    assert check(str(d)).ok


LOCK_TIMEOUT = 1.5
#: how much longer than its timeout a writer may take to give up and spill: the bound says "it
#: gave up instead of waiting for the stopped holder", so it is generous (two fsyncs on a
#: machine where another test suite is fsyncing too have taken over a second)
SLACK = 15.0


@pytest.mark.parametrize("durability", ["none", "batch", "always"])
def test_a_stopped_lock_holder_delays_but_loses_nothing(tmp_path: Path, durability: str):
    d = tmp_path / "journal"
    run = "2025-12-01T09-37-11-576Z-0000beef"

    def out(counter: int) -> ev.OutputChunk:
        return ev.OutputChunk(index=counter, stream="stdout", data=b"%d" % counter)

    with Journal(str(d), lock_timeout=LOCK_TIMEOUT, durability=durability) as writer:
        writer.append(run, out(1))
        with spawned("lock_holder.py", d) as holder:
            assert read_line(holder) == f"locked {holder.pid}"
            holder.send_signal(signal.SIGSTOP)
            wait_until(lambda: process_state(holder.pid) in ("T", "t"), "the lock holder to stop")

            started = time.monotonic()
            with pytest.raises(LockTimeout, match=rf"held by pid {holder.pid} on \S+ \(stopped\) for at least 1\.5 s") as info:
                writer.append_batch([Item(run, out(2)), Item(run, out(3))])
            elapsed = time.monotonic() - started
            assert LOCK_TIMEOUT <= elapsed < LOCK_TIMEOUT + SLACK
            spilled = info.value.spilled_to
            assert info.value.holder_pid == holder.pid
            assert spilled and os.path.exists(spilled)
            assert f"the 2 event(s) were kept in {spilled} and will be appended by the next lock holder" in str(info.value)

            pending = sorted(os.listdir(d / PENDING_DIR))
            with pytest.raises(LockTimeout, match=r"nothing was written \(an append with an expected sequence is never deferred\)") as info:
                writer.append(run, out(99), expected_seq=3)
            assert info.value.spilled_to is None
            assert sorted(os.listdir(d / PENDING_DIR)) == pending
            assert [r.event.index for r in read_records(str(d))] == [1]  # the spill is not in the journal yet

            holder.send_signal(signal.SIGCONT)
            holder.stdin.write("release\n")
            holder.stdin.flush()
            assert finish(holder) == "released\n"

        rec = writer.append(run, out(4))  # merges the spill first: the run's order holds
        assert rec.run_seq == 4
    records = records_by_run(d)[run]
    assert [r.event.index for r in records] == [1, 2, 3, 4]
    assert records[1].origin == os.path.basename(spilled)
    assert os.listdir(d / PENDING_DIR) == []
    assert check(str(d)).ok


TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a+b") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("free")
    except BlockingIOError:
        print("held")
"""


def test_a_lock_the_helper_took_for_a_caller_that_gave_up_is_never_shared(tmp_path: Path, monkeypatch):
    # A caller times out while the helper thread waits in the kernel. When the holder lets go,
    # the helper gets the flock; if the next caller arrives just then, a flock of its own on
    # the same open file "succeeds" at once, and the helper, seeing no caller, used to release
    # the lock under it: two processes then wrote at once (found by the stress profile, as
    # spills merged twice). Here the helper is held at that point while the next caller comes.
    d = tmp_path / "journal"
    taken, carry_on = threading.Event(), threading.Event()
    real_lock = portalocker.lock

    def helper_lock(file, flags):
        real_lock(file, flags)
        taken.set()
        carry_on.wait(DEADLINE)  # the helper holds the flock and has not yet looked for callers

    monkeypatch.setattr(portalocker, "lock", helper_lock)
    with spawned("lock_holder.py", d) as holder:
        assert read_line(holder) == f"locked {holder.pid}"
        lock = JournalLock(str(d / "lock"), timeout=0.1)

        def give_up() -> None:  # outside the main thread, the helper thread does the waiting
            with pytest.raises(LockTimeout):
                lock.acquire()

        first = threading.Thread(target=give_up)
        first.start()
        first.join(DEADLINE)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert finish(holder) == "released\n"
    assert taken.wait(DEADLINE), "the helper never got the lock"

    done = threading.Event()
    caller = threading.Thread(target=lambda: (lock.acquire(timeout=DEADLINE), done.set()))
    caller.start()
    wait_until(lambda: done.is_set() or lock._callers == 1, "the next caller to arrive")  # noqa: SLF001
    carry_on.set()
    caller.join(DEADLINE)
    assert done.is_set()
    other = subprocess.run([sys.executable, "-c", TRY_LOCK, str(d / "lock")], capture_output=True, text=True, timeout=DEADLINE)
    assert other.stdout == "held\n", "the caller believes it holds the lock, but another process can take it"
    lock.release()
    lock.close()


@pytest.mark.parametrize("program_uses_sigalrm", [False, True], ids=["main-thread-waits", "helper-waits"])
def test_a_wait_that_runs_out_leaves_sigalrm_as_it_was(tmp_path: Path, program_uses_sigalrm: bool):
    # the main thread waits in the kernel itself, SIGALRM keeping the deadline, unless the
    # program has a SIGALRM handler of its own: then the helper thread waits, and the
    # program's handler is never touched
    d = tmp_path / "journal"
    alarms = []
    if program_uses_sigalrm:
        signal.signal(signal.SIGALRM, lambda signum, frame: alarms.append(signum))
    mine = signal.getsignal(signal.SIGALRM)
    try:
        with spawned("lock_holder.py", d) as holder:
            assert read_line(holder) == f"locked {holder.pid}"
            lock = JournalLock(str(d / "lock"), timeout=0.3)
            started = time.monotonic()
            with pytest.raises(LockTimeout, match=rf"held by pid {holder.pid}"):
                lock.acquire()
            assert 0.3 <= time.monotonic() - started < 0.3 + SLACK
            assert signal.getsignal(signal.SIGALRM) is mine
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
            holder.stdin.write("release\n")
            holder.stdin.flush()
            assert finish(holder) == "released\n"
        lock.acquire()  # free now: taken at once, whichever way
        other = subprocess.run([sys.executable, "-c", TRY_LOCK, str(d / "lock")], capture_output=True, text=True, timeout=DEADLINE)
        assert other.stdout == "held\n"
        lock.release()
        lock.close()
        assert alarms == []
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_flush_merges_what_another_writer_spilled(tmp_path: Path):
    d = tmp_path / "journal"
    with spawned("lock_holder.py", d) as holder:
        assert read_line(holder) == f"locked {holder.pid}"
        with Journal(str(d), lock_timeout=0.2) as early, pytest.raises(LockTimeout, match="will be appended by the next lock holder"):
            early.append("a", ev.StageStarted(index=1, stage_id="late"))
        # closed while the lock is still held: its own attempt to merge timed out too
        holder.stdin.write("release\n")
        holder.stdin.flush()
        finish(holder)
    assert len(os.listdir(d / PENDING_DIR)) == 1
    with Journal(str(d)) as later:
        later.flush()
    assert os.listdir(d / PENDING_DIR) == []
    assert [type(r.event) for r in records_by_run(d)["a"]] == [ev.StageStarted]
    assert check(str(d)).ok


def test_a_lock_held_by_a_killed_process_blocks_no_one(tmp_path: Path):
    d = tmp_path / "journal"
    with spawned("lock_holder.py", d) as holder:
        assert read_line(holder) == f"locked {holder.pid}"
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(DEADLINE) == -signal.SIGKILL
    started = time.monotonic()
    with Journal(str(d), lock_timeout=120) as j:
        assert j.append("a", ev.Heartbeat()).seq == 1
    assert time.monotonic() - started < 60  # nowhere near the timeout: the dead holder's lock was free


def test_a_merge_killed_before_it_deleted_the_spill_appends_it_once(tmp_path: Path):
    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as steady:
        steady.append("steady", ev.Heartbeat())
        lock = JournalLock(str(d / "lock"))  # another holder, so that the next append spills
        lock.acquire()
        with Journal(str(d), lock_timeout=0.05) as spiller, pytest.raises(LockTimeout):
            spiller.append("spilled", ev.StageStarted(index=1, stage_id="s"))
        lock.release()  # after the spiller closed: its own attempt to merge timed out
        lock.close()
        merger = subprocess.run([sys.executable, str(HELPERS / "merge_and_die.py"), str(d)], env=clean_env(), timeout=DEADLINE)
        assert merger.returncode == -signal.SIGKILL
        assert [n for n in os.listdir(d / PENDING_DIR) if n.endswith(".merging")]

        steady._last_merge_check = time.monotonic()  # noqa: SLF001 - it looked at pending/ a moment ago
        steady.append("steady", ev.Heartbeat())
        steady.flush()
    assert [r.run_seq for r in records_by_run(d)["spilled"]] == [1]


def test_a_deleted_lock_file_never_lets_two_writers_in(tmp_path: Path):
    # A cleanup script deletes journal/lock while a writer has the journal open; a second
    # writer then creates and locks a new file. The first must move to the new file before
    # it writes again, or both hold "the" lock at once and write the same sequences.
    d = tmp_path / "journal"
    files = {n: tmp_path / f"{n}.acks" for n in ("wa", "wb")}
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(spawned("appender.py", d, "wa", 0, files["wa"], "--durability", "none"))
        go([a])
        wait_until(lambda: len(acks(files["wa"])) >= STEP, f"{STEP} events from the first writer")
        (d / "lock").unlink()
        b = stack.enter_context(spawned("appender.py", d, "wb", 0, files["wb"], "--durability", "none"))
        go([b])
        since = {n: len(acks(f)) for n, f in files.items()}
        wait_until(lambda: all(len(acks(f)) >= since[n] + 10 * STEP for n, f in files.items()), "both writers appending")
        (d / "lock").rename(d / "lock.old")  # moved away under both of them: both move on together
        since = {n: len(acks(f)) for n, f in files.items()}
        wait_until(lambda: all(len(acks(f)) >= since[n] + 10 * STEP for n, f in files.items()), "both writers appending again")
        for p in (a, b):
            p.stdin.write("stop\n")
            p.stdin.flush()
        for p in (a, b):
            assert finish(p).startswith("done")
    report = check(str(d))
    assert report.ok, report.problems
    for f in files.values():
        assert_acknowledged_present(d, acks(f))
    assert [r.seq for r in read_records(str(d))] == list(range(1, report.records + 1))


def test_a_lock_taken_on_a_deleted_file_is_taken_again_on_the_named_one(tmp_path: Path):
    d = tmp_path / "journal"
    d.mkdir()
    first = JournalLock(str(d / "lock"), timeout=0.3)
    (d / "lock").unlink()
    second = JournalLock(str(d / "lock"), timeout=0.3)  # a new file under the same name
    assert second.try_acquire()
    assert not first.try_acquire(), "the first lock took the deleted file while the named one is held"
    with pytest.raises(LockTimeout):
        first.acquire()
    second.release()
    first.acquire()
    assert first.rebinds == 1
    assert os.stat(d / "lock").st_ino == os.fstat(first._fd).st_ino  # noqa: SLF001
    assert not second.try_acquire()
    first.release()
    first.close()
    second.close()


def test_a_lock_file_moved_away_is_never_locked_beside_the_named_one(tmp_path: Path):
    # `mv lock lock.old` (or a hard link, then rm): the old file keeps its link, so only a
    # comparison with the name shows that it is no longer the journal's lock
    d = tmp_path / "journal"
    d.mkdir()
    first = JournalLock(str(d / "lock"), timeout=0.3)
    (d / "lock").rename(d / "lock.old")
    second = JournalLock(str(d / "lock"), timeout=0.3)
    assert second.try_acquire()
    assert not first.try_acquire(), "the moved file was locked beside the named one"
    assert first.rebinds == 1
    second.release()
    assert first.try_acquire()
    first.release()
    first.close()
    second.close()


@pytest.mark.parametrize("change", ["delete", "rename", "link then unlink", "replace"])
def test_a_lock_file_changed_after_its_holder_checked_it_is_never_locked_beside_the_named_one(tmp_path: Path, change: str):
    # the holder checks the name once, then trusts an fstat of its file (links, ctime) until
    # that changes: every way of taking the name away from the file must change one of them
    d = tmp_path / "journal"
    d.mkdir()
    first = JournalLock(str(d / "lock"), timeout=0.3)
    assert first.try_acquire()
    first.release()
    if change == "delete":
        (d / "lock").unlink()
    elif change == "rename":
        (d / "lock").rename(d / "lock.old")
    elif change == "link then unlink":
        os.link(d / "lock", d / "lock.keep")
        (d / "lock").unlink()
    else:
        (d / "other").write_bytes(b"")
        (d / "other").rename(d / "lock")
    second = JournalLock(str(d / "lock"), timeout=0.3)
    assert second.try_acquire()
    assert not first.try_acquire(), f"after a {change}, the old file was locked beside the named one"
    second.release()
    assert first.try_acquire() and first.rebinds == 1
    first.release()
    first.close()
    second.close()


def test_a_lock_file_that_cannot_be_opened_anew_leaves_the_lock_unheld_and_usable(tmp_path: Path):
    from runjournal.journal import JournalWriteFailed

    d = tmp_path / "journal"
    d.mkdir()
    lock = JournalLock(str(d / "lock"), timeout=0.3)
    (d / "lock").unlink()
    (d / "lock").symlink_to(tmp_path / "elsewhere")  # what is named lock now cannot be opened
    with pytest.raises(JournalWriteFailed, match="cannot open the journal lock"):
        lock.try_acquire()
    os.fstat(lock._fd)  # noqa: SLF001 -- still its own open file, not a closed number
    (d / "lock").unlink()
    other = JournalLock(str(d / "lock"), timeout=0.3)
    assert other.try_acquire()  # the failed attempt left nothing locked
    other.release()
    assert not (tmp_path / "elsewhere").exists()
    lock.acquire()  # and the first lock works again, on the named file
    assert os.stat(d / "lock").st_ino == os.fstat(lock._fd).st_ino  # noqa: SLF001
    lock.release()
    lock.close()
    other.close()
