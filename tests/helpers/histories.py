"""Run histories for projection tests and benchmarks: journal items with chosen event times.

``RunScript`` writes one run's events the way a runner would (start, stages with output,
heartbeats, errors, end, resume); ``interleave`` merges several runs into one commit order.
Times are explicit so projections are reproducible; ``T0`` is 2025-12-01T09:37:11.576Z.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from runjournal.journal import events as ev
from runjournal.journal.writer import Item, Journal

T0 = 1_764_581_831_576_000_000
SECOND = 1_000_000_000


def make_run_id(n: int, ts: int = T0) -> str:
    """A run id in the contract's shape: the start time, then 8 hex digits from ``n``."""
    from runjournal.journal.naming import new_run_id

    return new_run_id(ts)[:-8] + f"{n:08x}"


class RunScript:
    """Builds one run's events; every method advances the run's own clock by ``gap`` seconds."""

    def __init__(
        self,
        run_id: str,
        task: str = "default",
        pipeline: str = "diagnostics",
        stages: Sequence[str] | int = 3,
        start_ts: int = T0,
        parent: str | None = None,
        kinds: Sequence[str] | None = None,
        stale_after: int = 30,
    ):
        self.run_id = run_id
        self.ts = start_ts
        names = [f"stage-{i}" for i in range(1, stages + 1)] if isinstance(stages, int) else list(stages)
        kinds = list(kinds) if kinds else ["command"] * len(names)
        self.plans = tuple(
            ev.StagePlan(
                id=name,
                title=f"Stage {name}",
                kind=kind,
                command=f"echo {name}" if kind == "command" else None,
                pipeline=f"sub-{name}" if kind == "subpipeline" else None,
            )
            for name, kind in zip(names, kinds)
        )
        self.items: list[Item] = []
        self.last_heartbeat = start_ts
        self.attempt = 1
        self.items.append(
            Item(
                run_id,
                ev.RunStarted(
                    task_id=task,
                    pipeline_id=pipeline,
                    pipeline_title=pipeline.title(),
                    parent_run_id=parent,
                    resume_token_fingerprint="sha256:0f1e2d3c",
                    stages=self.plans,
                    heartbeat_stale_after_seconds=stale_after,
                ),
                start_ts,
            )
        )

    def add(self, event: ev.Event, gap: float = 0.5) -> RunScript:
        self.ts += int(gap * SECOND)
        self.items.append(Item(self.run_id, event, self.ts))
        return self

    def stage_id(self, index: int) -> str:
        return self.plans[index - 1].id

    def start_stage(self, index: int, gap: float = 0.1) -> RunScript:
        return self.add(ev.StageStarted(index=index, stage_id=self.stage_id(index), attempt=self.attempt), gap)

    def output(self, index: int, data: bytes, stream: str = "stdout", gap: float = 0.1) -> RunScript:
        return self.add(ev.OutputChunk(index=index, stream=stream, data=data), gap)

    def heartbeat(self, gap: float = 5.0) -> RunScript:
        self.add(ev.Heartbeat(), gap)
        self.last_heartbeat = self.ts
        return self

    def finish_stage(self, index: int, exit_code: int = 0, gap: float = 0.2) -> RunScript:
        return self.add(ev.StageFinished(index=index, stage_id=self.stage_id(index), exit_code=exit_code, summary=f"{self.stage_id(index)} ok"), gap)

    def fail_stage(self, index: int, exit_code: int = 1, stderr: str = "boom\n", gap: float = 0.2) -> RunScript:
        sid = self.stage_id(index)
        self.add(ev.ErrorRecorded(index=index, stage_id=sid, command=f"echo {sid}", reason="command failed", exit_code=exit_code, stderr=stderr), gap)
        return self.add(ev.StageFailed(index=index, stage_id=sid, exit_code=exit_code, summary="failed"), 0.001)

    def skip_stage(self, index: int, reason: str = "succeeded before the resume", gap: float = 0.01) -> RunScript:
        return self.add(ev.StageSkipped(index=index, stage_id=self.stage_id(index), reason=reason), gap)

    def stage(self, index: int, lines: int = 2, exit_code: int = 0) -> RunScript:
        """A whole command stage: start, output lines, a heartbeat, its end."""
        self.start_stage(index)
        for n in range(lines):
            self.output(index, f"{self.stage_id(index)} line {n}\n".encode())
        self.heartbeat(1.0)
        return self.finish_stage(index) if exit_code == 0 else self.fail_stage(index, exit_code)

    def link_child(self, index: int, child_run_id: str, pipeline: str = "child", gap: float = 0.05) -> RunScript:
        return self.add(ev.ChildRunLinked(index=index, stage_id=self.stage_id(index), child_run_id=child_run_id, pipeline_id=pipeline), gap)

    def complete(self, gap: float = 0.1) -> RunScript:
        return self.add(ev.RunCompleted(summary="all stages succeeded"), gap)

    def fail(self, reason: str = "stage failed", gap: float = 0.1) -> RunScript:
        return self.add(ev.RunFailed(reason=reason), gap)

    def cancel(self, gap: float = 0.1) -> RunScript:
        return self.add(ev.RunCancelled(reason="cancelled by SIGINT", signal="SIGINT"), gap)

    def stale(self, gap: float = 60.0) -> RunScript:
        """What an observer appends after ``gap`` seconds without a heartbeat."""
        return self.add(ev.RunStale(last_heartbeat_ts=self.last_heartbeat, observer="test"), gap)

    def resume(self, outcome: str = "accepted", gap: float = 30.0) -> RunScript:
        if outcome == "accepted":
            self.attempt += 1
        self.add(ev.RunResumed(actor="tester", reason="retry", outcome=outcome, attempt=self.attempt if outcome == "accepted" else 0), gap)
        if outcome == "accepted":
            self.last_heartbeat = self.ts
        return self


def interleave(scripts: Iterable[RunScript]) -> list[Item]:
    """All runs' items in one commit order: by time, ties broken by run (stable)."""
    items = [it for s in scripts for it in s.items]
    return sorted(items, key=lambda it: it.ts)


def write(journal_dir: str, items: Sequence[Item], batch: int = 10_000, durability: str = "none") -> None:
    """Append ``items`` in batches of ``batch``."""
    with Journal(str(journal_dir), durability=durability) as journal:
        for start in range(0, len(items), batch):
            journal.append_batch(items[start : start + batch])


def lifecycle(run_id: str, **kw) -> RunScript:
    """A run that went through every common point: stages with output, a heartbeat gap, success."""
    s = RunScript(run_id, **kw)
    for i in range(1, len(s.plans) + 1):
        s.stage(i)
    return s.complete()


def every_point_of_life() -> tuple[list[Item], dict[str, str]]:
    """Runs 1-8 pass through every point of a run's life: succeeded, failed, cancelled, stale,
    resumed (blocked, then accepted), a parent (6) with a child run (7), queued (8).
    Returns the items in commit order and the status each run ends in."""
    done = RunScript(make_run_id(1), stages=3)
    for i in (1, 2, 3):
        done.stage(i)
    done.complete()
    failed = RunScript(make_run_id(2), start_ts=T0 + SECOND, stages=2).stage(1).stage(2, exit_code=2).fail("stage-2 failed")
    cancelled = RunScript(make_run_id(3), start_ts=T0 + 2 * SECOND)
    cancelled.start_stage(1).output(1, b"working\n").cancel()
    stale = RunScript(make_run_id(4), start_ts=T0 + 3 * SECOND)
    stale.start_stage(1).heartbeat(5).stale(60)
    resumed = RunScript(make_run_id(5), start_ts=T0 + 4 * SECOND, stages=2).stage(1).stage(2, exit_code=1).fail()
    resumed.resume("blocked", gap=10).resume("accepted", gap=10).skip_stage(1).stage(2).complete()
    parent = RunScript(make_run_id(6), start_ts=T0 + 5 * SECOND, stages=2, kinds=["command", "subpipeline"]).stage(1)
    parent.start_stage(2)
    child = RunScript(make_run_id(7), start_ts=parent.ts + SECOND, pipeline="child", stages=1, parent=parent.run_id)
    parent.link_child(2, child.run_id, gap=1.5)
    child.stage(1).complete()
    parent.ts = child.ts
    parent.finish_stage(2).complete()
    queued = RunScript(make_run_id(8), start_ts=T0 + 6 * SECOND)
    scripts = [done, failed, cancelled, stale, resumed, parent, child, queued]
    ends = {
        done.run_id: "succeeded",
        failed.run_id: "failed",
        cancelled.run_id: "cancelled",
        stale.run_id: "in_progress",
        resumed.run_id: "succeeded",
        parent.run_id: "succeeded",
        child.run_id: "succeeded",
        queued.run_id: "queued",
    }
    return interleave(scripts), ends


def populate(root, items: Sequence[Item], task: str = "default") -> str:
    """Write ``items`` to the journal of ``task`` under ``root`` (as the CLI lays it out); return its dir."""
    journal_dir = f"{root}/.runs/{task}/journal"
    write(journal_dir, items)
    return journal_dir


def append_from_another_process(journal_dir, pairs: Sequence[tuple[str, ev.Event]], batch: int = 1) -> None:
    """Append ``(run_id, event)`` pairs from a separate process (``append_events.py``), stamped
    with the time of the append, ``batch`` per append call."""
    import subprocess
    import sys

    import msgspec

    from . import DEADLINE, HELPERS, clean_env

    data = b"".join(msgspec.json.encode({"run_id": r, "event": e}) + b"\n" for r, e in pairs)
    subprocess.run(
        [sys.executable, str(HELPERS / "append_events.py"), str(journal_dir), "lines", "--batch", str(batch)],
        input=data,
        check=True,
        timeout=DEADLINE,
        env=clean_env(),
    )
