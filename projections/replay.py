"""Replay: one run's history read back from the journal.

``timeline`` lists a run's records with times relative to its start; ``state_at`` folds
the journal up to a point into a fresh ``TaskState`` and renders the manifest as it was
then (time travel: the same fold and renderer the projector uses, so the result is the
manifest that was on disk at that point); ``paced`` yields the records with their
original gaps, sped up, for re-playing a run as it happened.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from runjournal.journal import BadInput, EventStore, JournalError, validate_run_id
from runjournal.journal import events as ev
from runjournal.journal.events import Record

from . import render
from .state import TaskState

#: longest output excerpt a timeline step carries, in characters
EXCERPT_CHARS = 200


class RunNotFound(JournalError):
    """The journal holds no run with this id (or the run had not started at the point asked for)."""


class AmbiguousRun(BadInput):
    """A run id was found in several tasks (a copied task directory, an import) and no task was chosen."""

    def __init__(self, run_id: str, tasks: list[str]):
        self.run_id, self.tasks = run_id, tasks
        super().__init__(f"run {run_id} is in several tasks: {', '.join(tasks)}; choose one with --task")


class Step(msgspec.Struct, omit_defaults=True):
    """One record of a run's timeline."""

    seq: int
    run_seq: int
    ts: int
    #: seconds since the run's first record
    elapsed: float
    type: str
    stage_index: int | None = None
    stage_id: str | None = None
    exit_code: int | None = None
    stream: str | None = None
    #: the start of an output chunk, or a reason / summary
    excerpt: str | None = None


def _run_records(store: EventStore, task: str, run_id: str) -> Iterator[Record]:
    validate_run_id(run_id)
    yield from store.archived_records(task, {run_id})  # an archived run: read back from the archive
    for rec in store.records(task):
        if rec.run_id == run_id:
            yield rec


def _excerpt(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def step(rec: Record, start_ts: int) -> Step:
    """A timeline step for one record of a run that started at ``start_ts``."""
    e = rec.event
    s = Step(rec.seq, rec.run_seq, rec.ts, round((rec.ts - start_ts) / 1e9, 3), e.__struct_config__.tag)
    index = getattr(e, "index", None)
    if index is not None:
        s.stage_index = index
        s.stage_id = getattr(e, "stage_id", None)
    if isinstance(e, ev.StageFinished | ev.StageFailed | ev.StageSkipped | ev.ErrorRecorded):
        s.exit_code = e.exit_code
    if isinstance(e, ev.OutputChunk):
        s.stream = e.stream
        s.excerpt = _excerpt(e.data.decode("utf-8", "replace"))
    elif isinstance(e, ev.OutputTruncated):
        s.stream = e.stream
        s.excerpt = f"{e.dropped_bytes} of {e.total_bytes} bytes left out"
    elif isinstance(e, ev.ErrorRecorded):
        s.excerpt = _excerpt(e.reason or e.stderr)
    elif isinstance(e, ev.RunFailed | ev.RunCancelled):
        s.excerpt = _excerpt(e.reason)
    elif isinstance(e, ev.StageFinished | ev.StageFailed | ev.RunCompleted):
        s.excerpt = _excerpt(e.summary)
    elif isinstance(e, ev.StageSkipped):
        s.excerpt = _excerpt(e.reason or e.summary)
    elif isinstance(e, ev.RunResumed):
        s.excerpt = _excerpt(f"{e.outcome} by {e.actor}: {e.reason}")
    elif isinstance(e, ev.ChildRunLinked):
        s.excerpt = e.child_run_id
    elif isinstance(e, ev.RunStarted):
        s.excerpt = e.pipeline_id
    return s


def timeline(store: EventStore, task: str, run_id: str) -> list[tuple[Step, Record]]:
    """Every record of the run, oldest first, each with its timeline step."""
    out: list[tuple[Step, Record]] = []
    start = None
    for rec in _run_records(store, task, run_id):
        if start is None:
            start = rec.ts
        out.append((step(rec, start), rec))
    if not out:
        raise RunNotFound(f"no run {run_id} in the journal at {store.where(task)} (see `runjournal runs`)")
    return out


def state_at(store: EventStore, task: str, run_id: str, paths: render.Paths, seq: int | None = None, ts_ns: int | None = None) -> dict:
    """The run's manifest exactly as it was once the journal reached global ``seq`` (or time ``ts_ns``).

    With neither, the manifest as of the end of the journal. Records of other runs are
    folded too (a parent's manifest shows its children's status), except their output,
    which no manifest of this run depends on.

    Records are folded in commit order (global sequence) and the fold stops at the first
    record stamped after ``ts_ns``: what came after it in the journal had not happened yet,
    whatever a clock stepped back (an NTP step) stamped on it later. Writers' clocks may
    disagree, so a time names the point where the journal's stamps first passed it; a
    sequence number names a point exactly.
    """
    validate_run_id(run_id)
    state = TaskState(task_id=task)
    output = (ev.OutputChunk, ev.OutputTruncated)
    for rec in store.records(task):
        if seq is not None and rec.seq > seq:
            break
        if ts_ns is not None and rec.ts > ts_ns:
            break
        if rec.run_id != run_id and isinstance(rec.event, output):
            continue
        state.apply(rec)
    run = state.runs.get(run_id)
    if run is None:
        where = f" at sequence {seq}" if seq is not None else " at that time" if ts_ns is not None else ""
        raise RunNotFound(f"run {run_id} had not started{where} in the journal at {store.where(task)}")
    return render.manifest(state, run, paths)


def paced(records: list[Record], speed: float) -> Iterator[tuple[float, Record]]:
    """``(delay_seconds, record)``: each record after its original gap divided by ``speed``."""
    if speed <= 0:
        raise BadInput(f"speed must be positive, not {speed}")
    prev = None
    for rec in records:
        delay = 0.0 if prev is None else max(0, rec.ts - prev) / 1e9 / speed
        prev = rec.ts if prev is None else max(prev, rec.ts)
        yield delay, rec
