"""Projection state: a pure fold of journal records into per-run and per-task state.

``TaskState.apply(record)`` is the only way state changes; it never reads a clock or a
file, so the same records give the same state whether applied one by one, in batches, or
after a restart from a checkpoint. It also notes which runs changed (``dirty``) so the
writer rewrites only their files.
"""

from __future__ import annotations

import zlib

import msgspec

from runjournal.journal import InvalidId, validate_run_id
from runjournal.journal import events as ev
from runjournal.journal.events import JOURNAL_RUN, Record

#: bump when the state layout or any rendered file changes: checkpoints of another version are rebuilt
PROJECTION_VERSION = 6
#: how many refused ids a task state keeps to report
INVALID_IDS_KEPT = 20
HEARTBEAT_MANIFEST_THROTTLE_NS = 30 * 1_000_000_000
#: per stage, how much captured output the projector keeps for the log (the runner caps what it journals)
LOG_CAP = 2 * 64 * 1024 + 4096
#: longest string field in an error file, in UTF-8 bytes (contract section 4)
ERROR_FIELD_CAP = 8192


#: stage statuses of the text views that the manifest schema does not have, and what the manifest shows instead
MANIFEST_STATUS = {"cancelled": "failed", "stale": "running"}
#: a stage that may still produce output: running, or running as far as anyone knows (its run is stale)
LIVE = ("running", "stale")


class Command(msgspec.Struct, omit_defaults=True):
    """One stage. ``status``: pending, running, succeeded, failed, skipped, and for the text
    views cancelled (stopped by a cancel) and stale (running when its run went stale); the
    manifest shows those two as failed and running (``MANIFEST_STATUS``)."""

    index: int
    id: str
    title: str
    kind: str = "command"
    command: str | None = None
    pipeline: str | None = None
    status: str = "pending"
    started_ts: int | None = None
    completed_ts: int | None = None
    exit_code: int | None = None
    summary: str | None = None
    has_log: bool = False
    log: list[bytes] = []
    log_bytes: int = 0
    #: how many times the stage has started (each start begins a new log)
    starts: int = 0
    #: how long the stage ran: the runner's monotonic measure (``duration_ns`` of its end event),
    #: else the difference of the event times, never below 0 (a clock stepped back); None until it ends
    duration_ns: int | None = None
    truncated: dict[str, int] = {}
    error: ev.ErrorRecorded | None = None
    error_ts: int | None = None
    sub_run_id: str | None = None


class ResumeEntry(msgspec.Struct):
    ts: int
    actor: str
    reason: str
    outcome: str
    detail: str | None = None


class Approval(msgspec.Struct):
    ts: int
    actor: str
    reason: str | None = None


class MetricsLine(msgspec.Struct):
    """One finished run attempt, as a line of metrics.json."""

    run_id: str
    task_id: str
    pipeline_id: str
    attempt: int
    status: str
    started_ts: int
    completed_ts: int
    commands_passed: int
    commands_failed: int
    recorded_ts: int
    #: how long the attempt ran, never below 0 (see ``attempt_duration``)
    duration_ns: int = 0


class Run(msgspec.Struct, omit_defaults=True):
    run_id: str
    task_id: str
    pipeline_id: str
    pipeline_title: str
    started_ts: int
    attempt: int = 1
    attempt_started_ts: int = 0
    parent_run_id: str | None = None
    approval_policy: str | None = None
    guardrails_required: bool | None = None
    resume_fingerprint: str = ""
    hb_interval: int = 5
    hb_stale: int = 30
    status: str = "queued"
    reason: str | None = None
    summary: str | None = None
    stale_since_ts: int | None = None
    completed_ts: int | None = None
    #: start to end, never below 0 (see ``_run_end``); None while the run has not ended
    duration_ns: int | None = None
    #: how far the newest heartbeat was ahead of the clock of the observer that judged the run
    #: (a ``RunStale``'s time, or a read-only view's now), when that is more than the stale limit; else 0
    skew_ns: int = 0
    updated_ts: int = 0
    heartbeat_ts: int | None = None
    manifest_heartbeat_ts: int | None = None
    max_heartbeat_gap_ns: int = 0
    heartbeat_gaps: int = 0
    commands: list[Command] = []
    resume_events: list[ResumeEntry] = []
    approvals: list[Approval] = []
    children: list[str] = []
    metrics_recorded: bool = False
    last_event_ts: int = 0
    runner_pid: int = 0
    runner_host: str = ""
    runner_start: int = 0


class WriterTotals(msgspec.Struct):
    lock_retries: int = 0
    lock_timeouts: int = 0
    spills: int = 0
    heartbeats_failed: int = 0
    heartbeats_written: int = 0

    def add(self, stats, sign: int = 1) -> None:
        """Add (``sign`` -1: take away) a ``writer_stats`` event's figures, or other totals."""
        self.lock_retries += sign * stats.lock_retries
        self.lock_timeouts += sign * stats.lock_timeouts
        self.spills += sign * stats.spills
        self.heartbeats_failed += sign * stats.heartbeats_failed
        self.heartbeats_written += sign * stats.heartbeats_written


class TaskState(msgspec.Struct):
    """Everything the projection files of one task are rendered from."""

    task_id: str
    runs: dict[str, Run] = {}
    metrics: list[MetricsLine] = []
    #: "run_id#attempt" -> index in ``metrics``
    metrics_index: dict[str, int] = {}
    writers: WriterTotals = msgspec.field(default_factory=WriterTotals)
    #: time of the newest record that changed the task files (metrics, summary, state.json)
    last_ts: int = 0
    #: runs whose manifest (and run files) must be rewritten; task files too when non-empty
    dirty: set[str] = set()
    #: runs whose .heartbeat must be rewritten
    dirty_heartbeat: set[str] = set()
    #: (run, command index) whose log or error file must be rewritten
    dirty_commands: set[tuple[str, int]] = set()
    #: the task files must be rewritten though no run is dirty (heartbeat gap statistics)
    dirty_task: bool = False
    #: run ids in the journal that cannot name a path: skipped, never projected (the first few)
    invalid_ids: list[str] = []
    #: the sequence of the record that made each line of ``metrics`` (the order they are in)
    metrics_seqs: list[int] = []
    #: archived runs (``runs_archived``), with what their records added to ``writers``
    archived: dict[str, WriterTotals] = {}

    def apply(self, rec: Record) -> None:
        event = rec.event
        if type(event) is ev.OutputChunk:
            # most records are output: the common case without a handler call or a second lookup
            run = self.runs.get(rec.run_id)
            if run is None:
                return
            run.last_event_ts = rec.ts
            index = event.index
            commands = run.commands
            if 0 < index <= len(commands):
                cmd = commands[index - 1]
                if cmd.status == "running" and cmd.has_log:  # (a stale stage's output takes _output)
                    size = len(event.data)
                    if cmd.log_bytes + size <= LOG_CAP:
                        cmd.log.append(event.data)
                        cmd.log_bytes += size
                    self.dirty_commands.add((rec.run_id, index))
                    return
            _output(self, rec, run)
            return
        if type(event) is ev.Heartbeat:  # the next most common record: no dispatch either
            run = self.runs.get(rec.run_id)
            if run is not None:
                run.last_event_ts = rec.ts
                _heartbeat(self, rec, run)
            return
        handler = _HANDLERS.get(type(event))
        if rec.run_id == JOURNAL_RUN or handler is None:
            if type(event) is ev.RunsArchived:
                _runs_archived(self, rec)
            return
        if handler is _run_started:
            run = None
        else:
            run = self.runs.get(rec.run_id)
            if run is None:
                return  # events of a run whose start this journal never saw (partial import)
            run.last_event_ts = rec.ts
        handler(self, rec, run)

    def command(self, run: Run, index: int) -> Command | None:
        if 1 <= index <= len(run.commands):
            return run.commands[index - 1]
        return None

    def touch(self, run: Run, ts: int, task: bool = False) -> None:
        """A change that shows in the manifest: the manifest's heartbeat catches up too.

        ``task``: the run's status, attempt or times changed, which the task files
        (metrics, summary, state.json) show; stage-level changes leave them alone."""
        run.updated_ts = ts
        run.manifest_heartbeat_ts = run.heartbeat_ts
        self.dirty.add(run.run_id)
        if run.parent_run_id and run.parent_run_id in self.runs:
            self.dirty.add(run.parent_run_id)
        if task:
            self.task_changed(ts)

    def task_changed(self, ts: int) -> None:
        """The task files change at this record. Only such records move ``last_ts``: the
        summary shows it, and it must not depend on when a catch-up happened to flush."""
        self.dirty_task = True
        if ts > self.last_ts:
            self.last_ts = ts


def _refused(s: TaskState, run_id: str) -> bool:
    """Whether an id from the journal cannot name a projection path (noted once, then skipped:
    a journal written by something else may hold one; nothing is ever built from it)."""
    try:
        validate_run_id(run_id)
    except InvalidId:
        if run_id not in s.invalid_ids and len(s.invalid_ids) < INVALID_IDS_KEPT:
            s.invalid_ids.append(run_id)
        return True
    return False


def _run_started(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.RunStarted = rec.event
    if rec.run_id in s.runs:
        return  # a run starts once; a later attempt is a resume
    if _refused(s, rec.run_id):
        return
    run = Run(
        run_id=rec.run_id,
        task_id=e.task_id,
        pipeline_id=e.pipeline_id,
        pipeline_title=e.pipeline_title or e.pipeline_id,
        started_ts=rec.ts,
        attempt=e.attempt,
        attempt_started_ts=rec.ts,
        parent_run_id=e.parent_run_id,
        approval_policy=e.approval_policy,
        guardrails_required=e.guardrails_required,
        resume_fingerprint=e.resume_token_fingerprint,
        hb_interval=e.heartbeat_interval_seconds,
        hb_stale=e.heartbeat_stale_after_seconds,
        commands=[
            Command(index=i, id=p.id, title=p.title, kind=p.kind, command=p.command, pipeline=p.pipeline)
            for i, p in enumerate(e.stages, 1)
        ],
        heartbeat_ts=rec.ts,
        last_event_ts=rec.ts,
        runner_pid=e.runner_pid,
        runner_host=e.runner_host,
        runner_start=e.runner_start,
    )
    s.runs[rec.run_id] = run
    s.dirty_heartbeat.add(rec.run_id)
    s.touch(run, rec.ts, task=True)


def _stage_started(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.StageStarted = rec.event
    cmd = s.command(run, e.index)
    if cmd is None:
        return
    cmd.status = "running"
    cmd.started_ts = rec.ts
    cmd.completed_ts = cmd.exit_code = cmd.summary = cmd.error = cmd.error_ts = cmd.duration_ns = None
    # has_log never goes back to False: a log file, once written, stays part of the projection
    cmd.log, cmd.log_bytes, cmd.truncated = [], 0, {}
    cmd.starts += 1
    cmd.has_log = cmd.has_log or cmd.kind == "command"
    status_changes = run.status == "queued" or run.stale_since_ts is not None
    if status_changes:
        run.status = "in_progress"
    _alive_again(run)
    s.dirty_commands.add((rec.run_id, e.index))
    s.touch(run, rec.ts, task=status_changes)


def _stage_end(s: TaskState, rec: Record, run: Run, status: str, exit_code: int | None, summary: str | None) -> None:
    cmd = s.command(run, rec.event.index)
    if cmd is None:
        return
    cmd.status = status
    cmd.completed_ts = rec.ts
    cmd.duration_ns = measured(getattr(rec.event, "duration_ns", None), cmd.started_ts, rec.ts)
    cmd.exit_code = exit_code
    cmd.summary = summary
    s.dirty_commands.add((rec.run_id, cmd.index))
    s.touch(run, rec.ts)


def _stage_finished(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.StageFinished = rec.event
    _stage_end(s, rec, run, "succeeded", e.exit_code, e.summary)


def _stage_failed(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.StageFailed = rec.event
    _stage_end(s, rec, run, "cancelled" if e.cancelled else "failed", e.exit_code, e.summary)


def _stage_skipped(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.StageSkipped = rec.event
    _stage_end(s, rec, run, "skipped", e.exit_code, e.summary or e.reason or None)


def _logging(s: TaskState, run: Run, index: int, ts: int) -> Command | None:
    """The stage output belongs to, if it is running. Output for a stage that is not running
    (already ended: its log may be final on disk and gone from memory) is left out of the log,
    so that the log never depends on when a catch-up happened; the journal keeps it (replay)."""
    cmd = s.command(run, index)
    if cmd is None or cmd.status not in LIVE:
        return None
    if cmd.status == "stale":  # output: it runs after all (a heartbeat will say so for the run)
        cmd.status = "running"
        s.touch(run, ts)
    if not cmd.has_log:  # a stage with no log so far (a sub-pipeline): the manifest now names one
        cmd.has_log = True
        s.touch(run, ts)
    return cmd


def _output(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.OutputChunk = rec.event
    cmd = _logging(s, run, e.index, rec.ts)
    if cmd is None:
        return
    if cmd.log_bytes + len(e.data) <= LOG_CAP:
        cmd.log.append(e.data)
        cmd.log_bytes += len(e.data)
    s.dirty_commands.add((rec.run_id, e.index))


def _truncated(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.OutputTruncated = rec.event
    cmd = _logging(s, run, e.index, rec.ts)
    if cmd is None:
        return
    marker = (
        f"\n[runjournal: {e.dropped_bytes} bytes of {e.stream} left out here "
        f"({e.total_bytes} in all; first {e.kept_head_bytes} and last {e.kept_tail_bytes} kept)]\n"
    ).encode()
    for part in (marker, e.tail):
        if cmd.log_bytes + len(part) <= LOG_CAP:
            cmd.log.append(part)
            cmd.log_bytes += len(part)
    cmd.truncated = {**cmd.truncated, e.stream: cmd.truncated.get(e.stream, 0) + e.dropped_bytes}
    s.dirty_commands.add((rec.run_id, e.index))
    s.touch(run, rec.ts)


def _heartbeat(s: TaskState, rec: Record, run: Run | None) -> None:
    prev = run.heartbeat_ts
    if prev is not None and rec.ts > prev:
        gap = rec.ts - prev
        if gap > run.max_heartbeat_gap_ns:
            run.max_heartbeat_gap_ns = gap
            s.task_changed(rec.ts)  # the summary reports it
        if gap > run.hb_stale * 1_000_000_000:
            run.heartbeat_gaps += 1
            s.task_changed(rec.ts)
    run.heartbeat_ts = rec.ts
    s.dirty_heartbeat.add(rec.run_id)
    if run.stale_since_ts is not None:
        _alive_again(run)  # alive after all
        s.touch(run, rec.ts, task=True)
    elif run.manifest_heartbeat_ts is None or rec.ts - run.manifest_heartbeat_ts >= HEARTBEAT_MANIFEST_THROTTLE_NS:
        s.touch(run, rec.ts)


def cut_utf8(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore"), True


def _error(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.ErrorRecorded = rec.event
    stderr, cut = cut_utf8(e.stderr, ERROR_FIELD_CAP)
    if cut:  # the error file never shows more; keep the state (and checkpoint) small
        e = msgspec.structs.replace(
            e, stderr=stderr, stderr_truncated=True, stderr_total_bytes=e.stderr_total_bytes or len(e.stderr.encode("utf-8", "surrogatepass"))
        )
    cmd = s.command(run, e.index)
    if cmd is None:
        return
    cmd.error = e
    cmd.error_ts = rec.ts
    s.dirty_commands.add((rec.run_id, e.index))
    s.touch(run, rec.ts)


def _alive_again(run: Run) -> None:
    """The run is not stale (any more): its stale stage runs, as far as anyone knows."""
    run.stale_since_ts, run.skew_ns = None, 0
    for cmd in run.commands:
        if cmd.status == "stale":
            cmd.status = "running"


def measured(duration_ns: int | None, start_ts: int | None, end_ts: int) -> int | None:
    """A duration as projections show it: the runner's monotonic measure when its event has one;
    else the difference of the event times, never below 0 (a wall clock may be stepped back
    between two events); None for something that never started."""
    if duration_ns is not None:
        return max(0, duration_ns)
    return None if start_ts is None else max(0, end_ts - start_ts)


def _run_end(s: TaskState, rec: Record, run: Run, status: str, reason: str | None, summary: str | None) -> None:
    run.status = status
    run.reason = reason
    run.summary = summary
    run.completed_ts = rec.ts
    run.stale_since_ts, run.skew_ns = None, 0
    for cmd in run.commands:
        if cmd.status in LIVE:
            cmd.status = status  # succeeded, failed, or cancelled (a stale run closed by `cancel`)
            cmd.completed_ts = rec.ts
            cmd.duration_ns = measured(None, cmd.started_ts, rec.ts)
            s.dirty_commands.add((run.run_id, cmd.index))
    passed = sum(1 for c in run.commands if c.status == "succeeded")
    failed = sum(1 for c in run.commands if c.status in ("failed", "cancelled"))
    attempt = measured(rec.event.duration_ns, run.attempt_started_ts, rec.ts)
    # the run's whole span: up to this attempt's start from event times (earlier attempts and
    # the waits between them: no one clock measured those), then the attempt as measured
    run.duration_ns = max(0, run.attempt_started_ts - run.started_ts) + attempt
    line = MetricsLine(
        run.run_id, s.task_id, run.pipeline_id, run.attempt, status,
        run.attempt_started_ts, rec.ts, passed, failed, rec.ts, attempt,
    )
    # one line per (run, attempt): a repeated end event replaces, never duplicates
    key = f"{run.run_id}#{run.attempt}"
    at = s.metrics_index.get(key)
    if at is None:
        s.metrics_index[key] = len(s.metrics)
        s.metrics.append(line)
        s.metrics_seqs.append(rec.seq)
    else:
        s.metrics[at] = line
    run.metrics_recorded = True
    s.touch(run, rec.ts, task=True)


def _run_completed(s: TaskState, rec: Record, run: Run | None) -> None:
    _run_end(s, rec, run, "succeeded", None, rec.event.summary)


def _run_failed(s: TaskState, rec: Record, run: Run | None) -> None:
    _run_end(s, rec, run, "failed", rec.event.reason, rec.event.summary or rec.event.reason or None)


def _run_cancelled(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.RunCancelled = rec.event
    _run_end(s, rec, run, "cancelled", e.reason or "cancelled", e.reason or "cancelled")


def _run_resumed(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.RunResumed = rec.event
    run.resume_events.append(ResumeEntry(rec.ts, e.actor, e.reason, e.outcome, e.detail))
    if e.outcome == "accepted":
        run.attempt = e.attempt or run.attempt + 1
        run.attempt_started_ts = rec.ts
        run.status = "in_progress"
        run.reason = run.summary = run.completed_ts = run.stale_since_ts = run.duration_ns = None
        run.skew_ns = 0
        run.heartbeat_ts = rec.ts
        run.runner_pid, run.runner_host, run.runner_start = e.runner_pid, e.runner_host, e.runner_start
        s.dirty_heartbeat.add(run.run_id)
        for cmd in run.commands:
            if cmd.status in ("failed", "cancelled", "running", "stale", "pending"):
                cmd.status = "pending"
                cmd.started_ts = cmd.completed_ts = cmd.exit_code = cmd.duration_ns = None
                cmd.summary = None
    s.touch(run, rec.ts, task=True)


def _child_linked(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.ChildRunLinked = rec.event
    if _refused(s, e.child_run_id):
        return
    cmd = s.command(run, e.index)
    if cmd is not None:
        cmd.sub_run_id = e.child_run_id
    if e.child_run_id not in run.children:
        run.children.append(e.child_run_id)
    s.touch(run, rec.ts)


def _approval(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.ApprovalRecorded = rec.event
    run.approvals.append(Approval(rec.ts, e.actor, e.reason))
    s.touch(run, rec.ts)


def _writer_stats(s: TaskState, rec: Record, run: Run | None) -> None:
    s.writers.add(rec.event)
    s.task_changed(rec.ts)


def _run_stale(s: TaskState, rec: Record, run: Run | None) -> None:
    e: ev.RunStale = rec.event
    if run.completed_ts is not None or (run.heartbeat_ts or 0) > e.last_heartbeat_ts:
        return  # finished, or a heartbeat arrived after the observation: not stale
    run.stale_since_ts = e.last_heartbeat_ts
    for cmd in run.commands:
        if cmd.status == "running":
            cmd.status = "stale"  # the text views say so; the manifest still shows running
    # a heartbeat stamped further ahead of the observer's clock than the stale limit: the
    # observer judged it by how long it saw nothing newer (``liveness``), and the files say so
    ahead = e.last_heartbeat_ts - rec.ts
    run.skew_ns = ahead if ahead > run.hb_stale * 1_000_000_000 else 0
    s.touch(run, rec.ts, task=True)


class ArchivedRun(msgspec.Struct):
    """What the projections keep of an archived run: its state without its stages' output, its
    lines of metrics.json (with the sequence that made each), what it added to the writer totals."""

    run: Run
    metrics: list[tuple[int, MetricsLine]]
    writers: WriterTotals


class Snapshot(msgspec.Struct):
    """A ``runs_archived`` record's ``state``: every archived run so far (``ArchivedRun``), and
    the task's ``last_ts`` when it was taken."""

    runs: dict[str, ArchivedRun]
    last_ts: int = 0
    invalid_ids: list[str] = []


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


def snapshot(state: TaskState, runs: dict[str, WriterTotals], earlier: Snapshot | None = None) -> bytes:
    """The ``state`` of a ``runs_archived`` record for ``runs`` (each with what it added to the
    writer totals), from a fold of the journal up to now; runs ``state`` no longer holds (their
    records archived before) are taken from ``earlier``, the last snapshot."""
    lines: dict[str, list[tuple[int, MetricsLine]]] = {}
    for seq, line in zip(state.metrics_seqs, state.metrics):
        lines.setdefault(line.run_id, []).append((seq, line))
    kept: dict[str, ArchivedRun] = {}
    for run_id in sorted(runs):
        run = state.runs.get(run_id)
        if run is None:
            if earlier is not None and run_id in earlier.runs:
                kept[run_id] = earlier.runs[run_id]
            continue
        commands = [msgspec.structs.replace(c, log=[]) for c in run.commands]
        kept[run_id] = ArchivedRun(msgspec.structs.replace(run, commands=commands), lines.get(run_id, []), runs[run_id])
    return zlib.compress(_snapshot_encoder.encode(Snapshot(kept, state.last_ts, list(state.invalid_ids))), 6)


#: the most a snapshot may take decompressed (about 200,000 archived runs): a record that says
#: more is refused rather than let fill memory
SNAPSHOT_MAX_BYTES = 256 << 20


def read_snapshot(data: bytes) -> Snapshot:
    """A ``runs_archived`` record's ``state``: zlib-compressed MessagePack (a snapshot compresses
    about 7 times), or plain MessagePack as the first version wrote it (a map, never ``x``, the
    first byte of zlib's header). msgspec.DecodeError if it is neither, or too large."""
    if data[:1] == b"x":
        inflate = zlib.decompressobj()
        try:
            data = inflate.decompress(data, SNAPSHOT_MAX_BYTES)
        except zlib.error as e:
            raise msgspec.DecodeError(f"the archived runs' state does not decompress: {e}") from None
        if inflate.unconsumed_tail:
            raise msgspec.DecodeError(f"the archived runs' state is larger than {SNAPSHOT_MAX_BYTES} bytes")
    return _snapshot_decoder.decode(data)


def _runs_archived(s: TaskState, rec: Record) -> None:
    """Archived runs take the place of their records: a run this fold did not see (its records
    were moved to the archive) is put back as it was, with its metrics lines in their order and
    its writer totals; a run it saw is only marked (what it folded of it is still rendered: a
    projector that read the run's last records from the archive writes its final files). Pruned
    runs leave the state. No run file is rendered for a run put back: its files were written
    when its records were read."""
    e: ev.RunsArchived = rec.event
    try:
        snap = read_snapshot(e.state)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return  # not a snapshot this version can read: the runs stay as folded
    for run_id in e.pruned:
        gone = s.archived.pop(run_id, None)
        if s.runs.pop(run_id, None) is not None and gone is not None:
            s.writers.add(gone, -1)
    added: list[tuple[int, MetricsLine]] = []
    for run_id, part in snap.runs.items():
        if run_id in s.archived or run_id != part.run.run_id or _refused(s, run_id):
            continue  # (ids become paths: one the writer would refuse is never put back)
        s.archived[run_id] = part.writers
        if run_id in s.runs:
            continue  # its records are still live: folded already
        s.runs[run_id] = part.run
        added.extend(part.metrics)
        s.writers.add(part.writers)
    pruned = set(e.pruned)
    if added or pruned:
        merged = sorted(
            [(seq, line) for seq, line in zip(s.metrics_seqs, s.metrics) if line.run_id not in pruned] + added,
            key=lambda item: item[0],
        )
        s.metrics_seqs = [seq for seq, _ in merged]
        s.metrics = [line for _, line in merged]
        s.metrics_index = {f"{line.run_id}#{line.attempt}": i for i, line in enumerate(s.metrics)}
    for invalid in snap.invalid_ids:
        if invalid not in s.invalid_ids and len(s.invalid_ids) < INVALID_IDS_KEPT:
            s.invalid_ids.append(invalid)
    if snap.last_ts > s.last_ts:
        s.last_ts = snap.last_ts
    s.dirty_task = True


_HANDLERS = {
    ev.RunStarted: _run_started,
    ev.StageStarted: _stage_started,
    ev.StageFinished: _stage_finished,
    ev.StageFailed: _stage_failed,
    ev.StageSkipped: _stage_skipped,
    ev.OutputChunk: _output,
    ev.OutputTruncated: _truncated,
    ev.ErrorRecorded: _error,
    ev.RunCompleted: _run_completed,
    ev.RunFailed: _run_failed,
    ev.RunCancelled: _run_cancelled,
    ev.RunResumed: _run_resumed,
    ev.ChildRunLinked: _child_linked,
    ev.ApprovalRecorded: _approval,
    ev.WriterStats: _writer_stats,
    ev.RunStale: _run_stale,
}
