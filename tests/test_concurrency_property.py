"""Property-based concurrency and crash tests with real processes.

Hypothesis draws a schedule (helpers/schedules.py): 2–16 writer processes, their runs,
events from 0 bytes to over 64 KiB, batch sizes, durability modes, lock timeouts, segment
sizes, and faults: a writer SIGKILLed after its k-th acknowledged append or in the middle
of a write, the lock holder SIGSTOPped for a while, the live projector (`runjournal watch`)
SIGKILLed. The test runs it for real and checks the invariants of docs/guarantees.md:

- every acknowledged event (committed, or spilled to ``pending/``) is in the journal exactly
  once, and each run's events are a prefix of what its writer appended, in order;
- the global sequence is gapless; ``verify`` is clean after recovery;
- the projections after catch-up are byte-identical to a rebuild.

A failure shrinks to a small schedule; hypothesis prints it (a ``Schedule(...)`` expression,
also as JSON), so it can be replayed with ``@example``. Examples per profile: ``ci`` and
``dev`` a handful (each example starts up to 18 processes), ``stress`` hundreds; see
docs/guarantees.md, "Evidence".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from helpers import DEADLINE, HELPERS, clean_env
from helpers.daemon import TEMP_FILE, watching
from helpers.records import records_by_run
from helpers.schedules import (
    Kill,
    Schedule,
    Stop,
    WriterPlan,
    run_events,
    run_id,
    writer_batches,
)
from helpers.trees import copy_journal, diff, projection_tree
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from runjournal.journal import Journal, check
from runjournal.journal.lock import holder_pid
from runjournal.journal.writer import PENDING_DIR

EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "stress" else 8
SIZES = st.sampled_from([0, 1, 100, 4096, 70_000])


@st.composite
def writer_plans(draw) -> WriterPlan:
    outputs = tuple(tuple(draw(st.lists(SIZES, max_size=4))) for _ in range(draw(st.integers(1, 3))))
    picks = [r for r, sizes in enumerate(outputs) for _ in range(len(sizes) + 4)]
    plan = WriterPlan(
        durability=draw(st.sampled_from(["batch", "none", "always"])),
        outputs=outputs,
        order=tuple(draw(st.permutations(picks))),
        batches=tuple(draw(st.lists(st.integers(1, 4), max_size=len(picks)))),
        lock_timeout=draw(st.sampled_from([10.0, 0.25])),
    )
    appends = len(writer_batches(0, plan))
    kill = draw(
        st.none()
        | st.builds(Kill, after=st.integers(1, appends))
        | st.builds(Kill, after=st.integers(0, appends - 1), mid_write=st.just(True), cut=st.floats(0.01, 0.99))
    )
    return msgspec.structs.replace(plan, kill=kill)


schedules = st.builds(
    Schedule,
    writers=st.lists(writer_plans(), min_size=2, max_size=16).map(tuple),
    segment_bytes=st.sampled_from([64 << 10, 1 << 20, 64 << 20]),
    stop_holder=st.none() | st.builds(Stop, after_acks=st.integers(0, 40), seconds=st.sampled_from([0.1, 0.5, 1.0])),
    kill_projector_after=st.none() | st.integers(0, 60),
)


# -- running a schedule ------------------------------------------------------------------


class Acks:
    """What the writers acknowledged, read from their ack files (complete lines only)."""

    def __init__(self, files: list[Path]):
        self.files = files

    def lines(self, writer: int) -> list[tuple[int, str, str]]:
        path = self.files[writer]
        if not path.exists():
            return []
        return [(int(seq), run, rs) for seq, run, rs in (line.split() for line in path.read_text().split("\n")[:-1])]

    def total(self) -> int:
        return sum(p.stat().st_size and p.read_bytes().count(b"\n") for p in self.files if p.exists())


def stop_the_holder(lock: Path, writers: dict[int, subprocess.Popen], seconds: float) -> bool:
    """SIGSTOP the writer that holds the journal lock right now, for ``seconds``; False if none does."""
    pid = holder_pid(str(lock))
    if pid is None or pid not in writers or writers[pid].poll() is not None:
        return False
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the fault itself: how long the holder stays stopped
    finally:
        os.kill(pid, signal.SIGCONT)
    return True


def execute(schedule: Schedule, root: Path) -> tuple[dict[int, int], Acks]:
    """Run the schedule: writers and a live `watch`, with the faults. Returns each writer's exit code."""
    journal_dir = root / ".runs" / "default" / "journal"
    Journal(str(journal_dir)).close()
    plan_file = root.parent / f"{root.name}.schedule.json"
    plan_file.write_bytes(msgspec.json.encode(schedule))
    acks = Acks([root.parent / f"{root.name}.w{i}.acks" for i in range(len(schedule.writers))])
    stop, kill_projector = schedule.stop_holder, schedule.kill_projector_after
    with watching(root) as daemon, contextlib.ExitStack() as stack:
        procs = []
        for i in range(len(schedule.writers)):
            proc = subprocess.Popen(
                [sys.executable, str(HELPERS / "schedule_writer.py"), str(journal_dir), str(plan_file), str(i), str(acks.files[i])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env(),
            )  # fmt: skip
            stack.callback(proc.stdout.close)
            stack.callback(proc.stdin.close)
            stack.callback(lambda p=proc: p.poll() is None and p.kill())
            procs.append(proc)
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        by_pid = {p.pid: p for p in procs}
        deadline = time.monotonic() + DEADLINE * 2
        while any(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "the writers did not finish"
            total = acks.total()
            if stop and total >= stop.after_acks and stop_the_holder(journal_dir / "lock", by_pid, stop.seconds):
                event("a lock holder was stopped")
                stop = None
            if kill_projector is not None and total >= kill_projector:
                daemon.proc.kill()
                daemon.proc.wait(DEADLINE)
                event("the projector was killed")
                kill_projector = None
            time.sleep(0.001)
        if daemon.proc.poll() is None:
            assert daemon.stop() == 0, daemon.stderr()
    return {i: p.wait() for i, p in enumerate(procs)}, acks


def cli(root: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), *args], capture_output=True, text=True, env=clean_env(), timeout=DEADLINE * 2)
    assert out.returncode == 0, (args, out.stderr)


# -- the property ------------------------------------------------------------------------


@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
@given(schedule=schedules)
def test_a_schedule_of_writers_and_faults_keeps_every_guarantee(tmp_path_factory, schedule: Schedule):
    note(f"schedule as JSON: {msgspec.json.encode(schedule).decode()}")
    base = tmp_path_factory.mktemp("schedule")
    root = base / "live"
    root.mkdir()
    codes, acks = execute(schedule, root)
    journal_dir = root / ".runs" / "default" / "journal"

    for i, plan in enumerate(schedule.writers):
        # a kill planned inside a write does not happen if every write after that point was
        # spilled instead (the lock was busy): the writer then finishes normally
        allowed = {0} if plan.kill is None else {-signal.SIGKILL, 0} if plan.kill.mid_write else {-signal.SIGKILL}
        assert codes[i] in allowed, f"writer {i} exited with {codes[i]}"
        if codes[i]:
            event(f"a writer was killed {'in the middle of a write' if plan.kill.mid_write else 'after an acknowledged append'}")
        if any(seq == 0 for seq, _, _ in acks.lines(i)):
            event("a lock timeout spilled events to pending/")

    # recovery: at most a torn tail (from a writer killed mid-write) and unmerged spills
    report = check(str(journal_dir))
    assert {p.kind for p in report.problems} <= {"torn-tail"}, report.problems
    with Journal(str(journal_dir)) as journal:
        journal.recover()
    assert check(str(journal_dir)).ok
    assert not (journal_dir / PENDING_DIR).exists() or not os.listdir(journal_dir / PENDING_DIR)

    by_run = records_by_run(journal_dir)
    by_seq = {r.seq: r for recs in by_run.values() for r in recs}

    for i, plan in enumerate(schedule.writers):
        acked = acks.lines(i)
        for seq, run, rs in acked:
            if seq:  # committed when acknowledged: it is that record, at that place
                assert (by_seq[seq].run_id, str(by_seq[seq].run_seq)) == (run, rs)
        in_journal = 0
        for r, sizes in enumerate(plan.outputs):
            rid = run_id(i, r)
            got = by_run.pop(rid, [])
            expected = run_events(i, r, sizes)
            assert [x.event for x in got] == expected[: len(got)], f"{rid}: not the prefix of what its writer appended, in order"
            assert len(got) >= sum(1 for _, run, _ in acked if run == rid), f"{rid}: an acknowledged event is missing"
            in_journal += len(got)
        # a killed writer's last batch was torn or never begun: exactly what it acknowledged is there
        assert in_journal == len(acked), f"writer {i}: {in_journal} events in the journal, {len(acked)} acknowledged"
        if codes[i] == 0:
            assert len(acked) == sum(map(len, writer_batches(i, plan))), f"writer {i} finished without acknowledging everything"
    assert not by_run, f"runs nobody appended: {sorted(by_run)}"

    # projections: the live ones (the watch was stopped or killed) caught up, against a rebuild
    cli(root, "project")
    fresh = base / "fresh"
    copy_journal(root, fresh)
    cli(fresh, "project", "--rebuild")
    caught_up = {p: b for p, b in projection_tree(root).items() if not TEMP_FILE.search(p)}
    rebuilt = projection_tree(fresh)
    assert caught_up == rebuilt, diff(caught_up, rebuilt)
    shutil.rmtree(base)
