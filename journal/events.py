"""The event schema: every fact about a run, as msgspec Structs under one tagged base.

Evolution rules (see docs/events.md): a new field always has a default; a tag never
changes and is never reused; a field's type never changes; ``Record`` is array-like and
only grows at the end. An event type this version does not know is an error
(``UnknownEventType``), never silently skipped: a projection built without it would be wrong.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Union

import msgspec

from .payload import defect

#: version of the event schema this code writes; stored in every segment header
SCHEMA_VERSION = 1

Stream = Literal["stdout", "stderr"]
StageKind = Literal["command", "subpipeline"]
ResumeOutcome = Literal["accepted", "blocked"]


class Event(msgspec.Struct, tag_field="type", omit_defaults=True, frozen=True):
    """Base of every event. ``boundary`` events are synced at once in ``batch`` durability."""

    boundary: ClassVar[bool] = False


class StagePlan(msgspec.Struct, omit_defaults=True, frozen=True):
    """One stage of a pipeline as planned when the run started."""

    id: str
    title: str
    kind: StageKind = "command"
    command: str | None = None
    pipeline: str | None = None
    allow_failure: bool = False
    optional: bool = False
    cwd: str | None = None
    env: dict[str, str] = {}
    summary_hint: str | None = None
    #: the longest the stage may run, in milliseconds (its ``timeoutSeconds``, else the
    #: config's ``stageTimeoutSeconds``); None: no limit, or a journal written before timeouts
    timeout_ms: int | None = None


class RunStarted(Event, tag="run_started"):
    task_id: str
    pipeline_id: str
    pipeline_title: str = ""
    attempt: int = 1
    parent_run_id: str | None = None
    config_fingerprint: str = ""
    resume_token_fingerprint: str = ""
    stages: tuple[StagePlan, ...] = ()
    heartbeat_interval_seconds: int = 5
    heartbeat_stale_after_seconds: int = 30
    approval_policy: str | None = None
    guardrails_required: bool | None = None
    #: the runner process, so a resume can tell a crashed runner from a live one
    runner_pid: int = 0
    runner_host: str = ""
    runner_start: int = 0
    #: the longest each attempt of the run may take, in milliseconds (the pipeline's ``timeoutSeconds``); None: no limit
    timeout_ms: int | None = None
    boundary: ClassVar[bool] = True


class StageStarted(Event, tag="stage_started"):
    index: int
    stage_id: str
    attempt: int = 1
    #: the stage's process group, so a resume after a crashed runner can stop what it left
    #: running (on the runner's host, RunStarted/RunResumed ``runner_host``); 0: none or unknown
    pgid: int = 0
    #: when that process group's leader started (clock ticks since boot): tells pid reuse apart
    pgid_start: int = 0
    #: not a sync point of its own in ``batch``: it rides with the stage's end (or the flusher,
    #: within a second). Only a power loss can lose it, and that ends the stage's processes too
    boundary: ClassVar[bool] = False


class StageFinished(Event, tag="stage_finished"):
    index: int
    stage_id: str
    exit_code: int = 0
    summary: str | None = None
    #: how long the stage ran, from the runner's monotonic clock (None: not measured, older runs)
    duration_ns: int | None = None
    boundary: ClassVar[bool] = True


class StageFailed(Event, tag="stage_failed"):
    index: int
    stage_id: str
    exit_code: int | None = None
    signal: str | None = None
    summary: str | None = None
    duration_ns: int | None = None  # as StageFinished's
    #: the stage was stopped by a cancel (a signal, or a ``cancel_requested``)
    cancelled: bool = False
    #: the stage was stopped for running past its timeout, or its run's: ``timeout_ms``, the limit it met
    timed_out: bool = False
    timeout_ms: int | None = None
    boundary: ClassVar[bool] = True


class StageSkipped(Event, tag="stage_skipped"):
    """A stage not run (already succeeded before a resume) or whose failure was allowed."""

    index: int
    stage_id: str
    reason: str = ""
    exit_code: int | None = None
    summary: str | None = None
    #: an allowed failure that was a timeout (see StageFailed)
    timed_out: bool = False
    boundary: ClassVar[bool] = True


class OutputChunk(Event, tag="output"):
    index: int
    stream: Stream
    data: bytes


class OutputTruncated(Event, tag="output_truncated"):
    """Exact accounting of a stream whose middle was left out of the journal."""

    index: int
    stream: Stream
    total_bytes: int
    kept_head_bytes: int
    kept_tail_bytes: int
    dropped_bytes: int
    tail: bytes = b""


class Heartbeat(Event, tag="heartbeat"):
    pass


class ErrorRecorded(Event, tag="error"):
    index: int
    stage_id: str
    command: str | None = None
    reason: str = ""
    exit_code: int | None = None
    signal: str | None = None
    stderr: str = ""
    stderr_truncated: bool = False
    stderr_total_bytes: int = 0


class RunCompleted(Event, tag="run_completed"):
    summary: str | None = None
    #: how long this attempt ran (since its run_started or accepted run_resumed), from the
    #: runner's monotonic clock (None: not measured, older runs)
    duration_ns: int | None = None
    boundary: ClassVar[bool] = True


class RunFailed(Event, tag="run_failed"):
    reason: str = ""
    summary: str | None = None
    duration_ns: int | None = None  # as RunCompleted's
    #: the run was stopped for running past its pipeline's ``timeoutSeconds``
    timed_out: bool = False
    boundary: ClassVar[bool] = True


class RunCancelled(Event, tag="run_cancelled"):
    reason: str = ""
    signal: str | None = None
    duration_ns: int | None = None  # as RunCompleted's
    boundary: ClassVar[bool] = True


class CancelRequested(Event, tag="cancel_requested"):
    """Someone asked for the run to be cancelled (``runjournal cancel``); its runner, which
    watches its journal, cancels it as on Ctrl-C. A run whose runner is dead is closed at once:
    a ``run_cancelled`` follows in the same batch."""

    actor: str
    reason: str = ""
    #: where the request came from: host name and process id of the command that recorded it
    host: str = ""
    pid: int = 0


class RunResumed(Event, tag="run_resumed"):
    actor: str
    reason: str
    outcome: ResumeOutcome
    attempt: int = 0
    detail: str | None = None
    runner_pid: int = 0
    runner_host: str = ""
    runner_start: int = 0
    boundary: ClassVar[bool] = True


class ChildRunLinked(Event, tag="child_run_linked"):
    index: int
    stage_id: str
    child_run_id: str
    pipeline_id: str
    boundary: ClassVar[bool] = True


class ApprovalRecorded(Event, tag="approval"):
    actor: str
    reason: str | None = None
    boundary: ClassVar[bool] = True


class WriterStats(Event, tag="writer_stats"):
    """Counters a writer reports about its own journal access (lock waits, spills, failures)."""

    lock_retries: int = 0
    lock_timeouts: int = 0
    spills: int = 0
    heartbeats_failed: int = 0
    heartbeats_written: int = 0


class RunStale(Event, tag="run_stale"):
    """An observer (projector) saw no heartbeat for longer than the stale limit: the runner is presumed dead."""

    last_heartbeat_ts: int
    observer: str = ""
    boundary: ClassVar[bool] = True


class TailRepaired(Event, tag="tail_repaired"):
    """Journal-level: a torn tail left by a crashed writer was cut off (a copy was kept)."""

    segment: str
    offset: int
    bytes_cut: int
    copy: str
    boundary: ClassVar[bool] = True


class RegionQuarantined(Event, tag="region_quarantined"):
    """Journal-level: a damaged region was set aside by ``verify --quarantine`` (a copy was kept);
    the sequences ``first_lost_seq`` to ``next_seq - 1`` were in it and are gone."""

    segment: str
    offset: int
    bytes_set_aside: int
    first_lost_seq: int
    next_seq: int
    copy: str
    detail: str = ""
    boundary: ClassVar[bool] = True


class RunsArchived(Event, tag="runs_archived"):
    """Journal-level: ``runs`` ended and were archived (``runjournal archive``): their records may
    leave the live journal for ``archive/``. ``state`` is what the projections need of them
    (opaque here: ``projections.state.Snapshot``), so that the task's files rebuild the same
    without their records. ``pruned``: runs whose archived records were deleted (``prune``)."""

    runs: tuple[str, ...]
    state: bytes
    pruned: tuple[str, ...] = ()
    boundary: ClassVar[bool] = True


AnyEvent = Union[
    RunStarted,
    StageStarted,
    StageFinished,
    StageFailed,
    StageSkipped,
    OutputChunk,
    OutputTruncated,
    Heartbeat,
    ErrorRecorded,
    RunCompleted,
    RunFailed,
    RunCancelled,
    RunResumed,
    ChildRunLinked,
    ApprovalRecorded,
    WriterStats,
    RunStale,
    TailRepaired,
    RegionQuarantined,
    CancelRequested,
    RunsArchived,
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls for cls in AnyEvent.__args__  # type: ignore[attr-defined]
}

#: run id under which journal-level events (repairs) are recorded; never a valid user run id
JOURNAL_RUN = ""


class Record(msgspec.Struct, array_like=True, frozen=True):
    """One committed entry: global sequence, run, per-run sequence, writer time (ns, UTC), event."""

    seq: int
    run_id: str
    run_seq: int
    ts: int
    event: AnyEvent
    #: name of the pending (spill) file this record was merged from, on the batch's first record
    origin: str | None = None


class RecordHead(msgspec.Struct, array_like=True, frozen=True):
    """The leading fields of a Record, decoded without touching the event."""

    seq: int
    run_id: str
    run_seq: int
    ts: int


class UnknownTag(msgspec.Struct, array_like=True):
    """Used to name the event type of a record that failed to decode."""

    seq: int
    run_id: str
    run_seq: int
    ts: int
    event: dict


encoder = msgspec.msgpack.Encoder()
record_decoder = msgspec.msgpack.Decoder(Record)
head_decoder = msgspec.msgpack.Decoder(RecordHead)

#: what a decoder may raise for bytes it cannot decode. Which one it raises, and its wording,
#: differ between msgspec releases, so they only say *that* a payload failed: what is wrong
#: with it is read from the bytes (why_undecodable)
DECODE_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)


def why_undecodable(payload: bytes | memoryview, error: Exception) -> str:
    """What is wrong with a payload the typed decoder refused: a structural fault found in
    its bytes, else (well-formed msgpack that does not fit the schema) where it does not fit."""
    found = defect(payload)
    if found is not None:
        return found
    if isinstance(error, msgspec.ValidationError):
        return str(error)  # the schema's own words: a type and a `$.path` in the record
    return "it does not fit the record schema"


def unknown_type_of(payload: bytes) -> str | None:
    """The event type of a payload that failed typed decoding, if the type is the reason."""
    try:
        loose = msgspec.msgpack.decode(payload, type=UnknownTag)
    except DECODE_ERRORS:
        return None
    name = loose.event.get("type")
    if isinstance(name, str) and name not in EVENT_TYPES:
        return name
    return None


def int_out_of_range(value: object, path: str = "$") -> str | None:
    """Name the first integer in ``value`` (a Struct such as a Record, or anything it holds)
    that msgpack cannot hold (int64 and uint64 only), as the message for the OverflowError the
    encoder raised; None if there is none."""
    if isinstance(value, int):
        if -(1 << 63) <= value < 1 << 64:
            return None
        return f"Integer {value} is out of range (msgpack holds 64 bits) - at `{path}`"
    if isinstance(value, msgspec.Struct):
        parts = ((f"{path}.{name}", getattr(value, name)) for name in value.__struct_fields__)
    elif isinstance(value, (list, tuple)):
        parts = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, dict):
        parts = ((f"{path}[{k!r}]", v) for k, v in value.items())
    else:
        return None
    for where, part in parts:
        found = int_out_of_range(part, where)
        if found is not None:
            return found
    return None
