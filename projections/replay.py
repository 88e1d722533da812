"""Replay: one run's history read back from the journal.

``timeline`` lists a run's records with times relative to its start; ``state_at`` folds
the journal up to a point into a fresh ``TaskState`` and renders the manifest as it was
then (time travel: the same fold and renderer the projector uses, so the result is the
manifest that was on disk at that point); ``paced`` yields the records with their
original gaps, sped up, for re-playing a run as it happened.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import re
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


def _run_records(store: EventStore, task: str, run_id: str, start: int = 1) -> Iterator[Record]:
    validate_run_id(run_id)
    yield from store.archived_records(task, {run_id})  # an archived run: read back from the archive
    for rec in store.records(task, start):
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


def timeline(store: EventStore, task: str, run_id: str, first_seq: int = 1) -> list[tuple[Step, Record]]:
    """Every record of the run, oldest first, each with its timeline step. ``first_seq``: the
    sequence of its first live record, where the caller knows it (``first_record``)."""
    out: list[tuple[Step, Record]] = []
    start = None
    for rec in _run_records(store, task, run_id, first_seq):
        if start is None:
            start = rec.ts
        out.append((step(rec, start), rec))
    if not out:
        raise RunNotFound(f"no run {run_id} in the journal at {store.where(task)} (see `runjournal runs`)")
    return out


def state_at(
    store: EventStore, task: str, run_id: str, paths: render.Paths, seq: int | None = None, ts_ns: int | None = None, first_seq: int | None = None
) -> dict:
    """The run's manifest exactly as it was once the journal reached global ``seq`` (or time ``ts_ns``).

    With neither, the manifest as of the end of the journal. Records of other runs are
    folded too (a parent's manifest shows its children's status), except their output,
    which no manifest of this run depends on.

    Records are folded in commit order (global sequence). With a time, the fold stops at the
    first record from the run's first one on stamped after ``ts_ns``: what came after it in
    the journal had not happened yet, whatever a clock stepped back (an NTP step) stamped on it
    later. Records before the run's first one never stop it (nothing of the run depends on
    them, and a writer's clock ahead there would hide the whole run). Writers' clocks may
    disagree, so a time names the point where the stamps first passed it once the run began;
    a sequence number names a point exactly.

    The fold starts near the run's first record where that gives the same manifest
    (``_from_run_start``: the cost of the run, not of the journal before it), else at 1;
    ``first_seq``: where the caller found the run's first record (``first_record``), if it did.
    """
    validate_run_id(run_id)
    state = _from_run_start(store, task, run_id, seq, ts_ns, first_seq)
    if state is None:
        state = TaskState(task_id=task)
        _fold(state, store.records(task), run_id, seq, ts_ns)
    run = state.runs.get(run_id)
    if run is None:
        where = f" at sequence {seq}" if seq is not None else " at that time" if ts_ns is not None else ""
        raise RunNotFound(f"run {run_id} had not started{where} in the journal at {store.where(task)}")
    return render.manifest(state, run, paths)


_OUTPUT = (ev.OutputChunk, ev.OutputTruncated)


def _fold(state: TaskState, records: Iterator[Record], run_id: str, seq: int | None, ts_ns: int | None) -> tuple[dict[str, int], Record | None]:
    """Fold ``records`` into ``state`` up to the point (see ``state_at``): the run sequence of
    each run's first record folded, and the record the fold stopped at (None: the end)."""
    first: dict[str, int] = {}
    begun = False
    for rec in records:
        if rec.run_id == run_id:
            begun = True
        if (seq is not None and rec.seq > seq) or (begun and ts_ns is not None and rec.ts > ts_ns):
            return first, rec
        if rec.run_id not in first:
            first[rec.run_id] = rec.run_seq
        if rec.run_id != run_id and isinstance(rec.event, _OUTPUT):
            continue
        state.apply(rec)
    return first, None


#: how long before the time in its id a run's first record is looked for. A runner stamps its
#: run_started after making the id, on the same clock (a journal read and a token file in
#: between: milliseconds), but the seek goes by every writer's stamps: a record committed after
#: the run's start yet stamped earlier (a lock wait, up to its 10 s timeout; a spill merged
#: later; another host's clock behind) can make it start past the run's first record. Then
#: the fold from sequence 1 is taken: a larger margin costs reading more, a smaller one
#: misses more often; neither changes a result.
START_MARGIN_NS = 60 * 1_000_000_000

#: the time a run id made by ``new_run_id`` starts with: ``2025-12-01T09-37-11-576Z-``
_ID_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z-")


def id_time(run_id: str) -> int | None:
    """The time (ns) a run id made by ``new_run_id`` names, None for an id that names none.
    Only a hint of when the run started: ids can be made by anything."""
    m = _ID_TIME.match(run_id)
    if m is None:
        return None
    year, month, day, hour, minute, second, ms = map(int, m.groups())
    try:
        t = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.timezone.utc)
    except ValueError:  # 2025-13-01, year 0000
        return None
    return int(t.timestamp()) * 1_000_000_000 + ms * 1_000_000


def _seek_start(store: EventStore, task: str, run_id: str) -> int:
    """Where to look for the run's first record: the store's seek to a little before the time
    in its id; 1 where there is no such time or the seek cannot tell."""
    hint = id_time(run_id)
    if hint is None:
        return 1
    try:
        return store.first_at(task, hint - START_MARGIN_NS) or 1
    except (JournalError, OSError):  # damage, no journal: the read from 1 meets it and says what it is
        return 1


def first_record(store: EventStore, task: str, run_id: str) -> Record | None:
    """The run's first record in the live journal, None if it has none: read from near the time
    in its id when the first record of the run met there has ``run_seq`` 1 (none of it comes
    before), else from sequence 1."""
    start = _seek_start(store, task, run_id)
    if start > 1:
        rec = next((r for r in store.records(task, start) if r.run_id == run_id), None)
        if rec is not None and rec.run_seq == 1:
            return rec
    return next((r for r in store.records(task) if r.run_id == run_id), None)


def _from_run_start(store: EventStore, task: str, run_id: str, seq: int | None, ts_ns: int | None, first_seq: int | None = None) -> TaskState | None:
    """The fold of ``state_at`` started near the run's first record, or None where that might
    not give the manifest the fold from sequence 1 gives (the caller then folds from 1).

    A run's manifest shows its own state and its child runs' (status, pipeline). A run's state
    comes from its own records, and from ``runs_archived`` records, which name only runs that
    ended before them; records before the run's first one do not stop a fold by their stamps.
    So a fold started at sequence ``start`` gives the same manifest as one from 1 when the run
    and each of its children have their first record (``run_seq`` 1) at or after ``start``:
    before it nothing of them existed. That is checked on what is read; the read goes on past
    the point to find the run's first record when it was not met before it.
    """
    if run_id in store.archived_runs(task):
        return None
    start = first_seq or _seek_start(store, task, run_id)
    if start <= 1:
        return None
    state = TaskState(task_id=task)
    records = store.records(task, start)
    first, stop = _fold(state, records, run_id, seq, ts_ns)
    met = first.get(run_id)
    if met is None and stop is not None:  # not begun at the point: where does it begin?
        try:
            met = next((r.run_seq for r in itertools.chain((stop,), records) if r.run_id == run_id), None)
        except JournalError:  # damage past the point, which the fold from 1 never reads
            return None
    if met != 1:
        return None
    run = state.runs.get(run_id)
    if run is not None and any(first.get(child) != 1 for child in run.children):
        return None
    return state


def paced(records: list[Record], speed: float) -> Iterator[tuple[float, Record]]:
    """``(delay_seconds, record)``: each record after its original gap divided by ``speed``."""
    if speed <= 0:
        raise BadInput(f"speed must be positive, not {speed}")
    prev = None
    for rec in records:
        delay = 0.0 if prev is None else max(0, rec.ts - prev) / 1e9 / speed
        prev = rec.ts if prev is None else max(prev, rec.ts)
        yield delay, rec
