"""Schedules for the property-based concurrency tests: what each writer process appends, and the faults.

A ``Schedule`` is plain data (msgspec structs), so hypothesis can draw and shrink it, the test
can print it for a replay, and a writer process (``schedule_writer.py``) can read its part from
JSON. ``run_events`` is the single definition of a run's events: the writer appends them and the
checker compares the journal against them.
"""

from __future__ import annotations

import msgspec

from runjournal.journal import events as ev
from runjournal.journal.naming import new_run_id

#: the run ids' time part (2025-12-01T09:37:11.576Z); events are stamped when appended, so that
#: a live projector's clock never finds a run stale
T0 = 1_764_581_831_576_000_000
STAGE = ev.StagePlan(id="work", title="Work", command="true")


class Kill(msgspec.Struct, frozen=True):
    """SIGKILL of the writer by itself: right after its ``after``-th batch is acknowledged, or, with
    ``mid_write``, in the middle of the next batch's write(), after ``cut`` of its bytes."""

    after: int
    mid_write: bool = False
    cut: float = 0.5


class WriterPlan(msgspec.Struct, frozen=True):
    durability: str
    #: output sizes, per run; each run is start, stage start, these outputs, stage end, run end
    outputs: tuple[tuple[int, ...], ...]
    #: the order in which the writer takes its runs' next events (a run index per event)
    order: tuple[int, ...]
    #: how many of those events go into each append (the last batch takes what is left)
    batches: tuple[int, ...]
    lock_timeout: float = 10.0
    kill: Kill | None = None


class Stop(msgspec.Struct, frozen=True):
    """SIGSTOP of the writer holding the lock once ``after_acks`` events are acknowledged, for ``seconds``."""

    after_acks: int
    seconds: float


class Schedule(msgspec.Struct, frozen=True):
    writers: tuple[WriterPlan, ...]
    segment_bytes: int
    stop_holder: Stop | None = None
    #: SIGKILL of the live projector (`runjournal watch`) once this many events are acknowledged
    kill_projector_after: int | None = None


def run_id(writer: int, run: int) -> str:
    return new_run_id(T0)[:-8] + f"{writer:04x}{run:04x}"


def output(writer: int, run: int, n: int, size: int) -> bytes:
    pattern = f"w{writer}r{run}o{n}|".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


def run_events(writer: int, run: int, sizes: tuple[int, ...]) -> list[ev.Event]:
    """Every event of one run, in order (a writer killed early appends a prefix)."""
    events: list[ev.Event] = [
        ev.RunStarted(task_id="default", pipeline_id="schedule", stages=(STAGE,), heartbeat_stale_after_seconds=86_400),
        ev.StageStarted(index=1, stage_id="work"),
    ]
    events += [ev.OutputChunk(index=1, stream="stdout" if n % 2 else "stderr", data=output(writer, run, n, size)) for n, size in enumerate(sizes)]
    events += [ev.StageFinished(index=1, stage_id="work"), ev.RunCompleted(summary=f"writer {writer} run {run}")]
    return events


def writer_batches(writer: int, plan: WriterPlan) -> list[list[tuple[str, ev.Event]]]:
    """The writer's appends, in order: lists of (run id, event)."""
    pending = [run_events(writer, r, sizes) for r, sizes in enumerate(plan.outputs)]
    taken = [0] * len(pending)
    stream = []
    for r in plan.order:
        k = taken[r]
        taken[r] += 1
        stream.append((run_id(writer, r), pending[r][k]))
    batches, at = [], 0
    for size in (*plan.batches, len(stream)):
        if at >= len(stream):
            break
        batches.append(stream[at : at + size])
        at += size
    return batches
