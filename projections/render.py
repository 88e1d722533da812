"""Rendering: projection state to the exact bytes of each file (contract section 4).

Pure functions of state; every time comes from an event timestamp. Dicts are built in a
fixed key order, so equal state gives equal bytes.
"""

from __future__ import annotations

import os

import msgspec

from runjournal.journal import command_file, iso_utc, slug, validate_task_id

from .state import ERROR_FIELD_CAP, MANIFEST_STATUS, Command, Run, TaskState, cut_utf8

ERROR_FILE_CAP = 10_000
_enc = msgspec.json.Encoder()


def dumps(doc) -> bytes:
    return msgspec.json.format(_enc.encode(doc), indent=2) + b"\n"


def seconds(duration_ns: int | None) -> float | None:
    """A duration as the projections write it (seconds, 3 decimals), None for none."""
    return None if duration_ns is None else round(duration_ns / 1e9, 3)


def iso(ts: int) -> str:
    """A time as the projections write it: ``iso_utc`` (ISO-8601 UTC, milliseconds), each
    second's text remembered (a rebuild formats every event time of a run, many to a second)."""
    second, rest = divmod(ts, 1_000_000_000)
    head = _seconds.get(second)
    if head is None:
        if len(_seconds) >= ISO_CACHE:
            _seconds.clear()
        head = _seconds[second] = iso_utc(second * 1_000_000_000)[:-5]  # without ".000Z"
    return f"{head}.{rest // 1_000_000:03d}Z"


#: seconds whose text ``iso`` remembers (then forgotten at once)
ISO_CACHE = 4096
_seconds: dict[int, str] = {}


def iso_or_none(ts: int | None) -> str | None:
    """A time as the projections write it (``iso``), None for none."""
    return None if ts is None else iso(ts)


class Paths:
    """Paths of one task's projection files, and their form inside manifests (relative to the root)."""

    def __init__(self, runs_dir: str, out_dir: str, task: str):
        self.runs_dir = runs_dir
        self.out_dir = out_dir
        self.task = task
        self.task_dir = os.path.join(runs_dir, validate_task_id(task))  # InvalidId before any path is built
        self._base = os.path.dirname(os.path.abspath(runs_dir))
        #: (run id, stage index) -> (what the stage's entry was rendered from, the entry): a
        #: manifest is rendered at every stage boundary, and most of its stages have not changed
        self.commands: dict[tuple[str, int], tuple[tuple, dict]] = {}

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self._base)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.task_dir, "cli", run_id)

    def manifest(self, run_id: str) -> str:
        return os.path.join(self.run_dir(run_id), "manifest.json")

    def heartbeat(self, run_id: str) -> str:
        return os.path.join(self.run_dir(run_id), ".heartbeat")

    def log(self, run_id: str, cmd: Command) -> str:
        return os.path.join(self.run_dir(run_id), "commands", command_file(cmd.index, cmd.id, "log"))

    def error(self, run_id: str, cmd: Command) -> str:
        return os.path.join(self.run_dir(run_id), "errors", command_file(cmd.index, cmd.id, "json"))

    def metrics(self) -> str:
        return os.path.join(self.task_dir, "metrics.json")

    def summary(self) -> str:
        return os.path.join(self.task_dir, "metrics", "summary.json")

    def state(self) -> str:
        return os.path.join(self.out_dir, self.task, "state.json")


def ahead(skew_ns: int) -> str:
    """How far a clock is ahead, for people: ``3600 s``."""
    return f"{round(skew_ns / 1e9)} s"


def status_detail(run: Run) -> str:
    if run.stale_since_ts is not None:
        if run.skew_ns:
            return (
                f"stale: clock skew: its last heartbeat is stamped {iso(run.stale_since_ts)}, {ahead(run.skew_ns)} ahead of "
                f"the observer's clock, and no newer one came for over {run.hb_stale} s after the observer first saw it; "
                "the runner is presumed dead: resume the run to continue it"
            )
        return (
            f"stale: no heartbeat since {iso(run.stale_since_ts)} (over {run.hb_stale} s); "
            "the runner is presumed dead: resume the run to continue it"
        )
    detail = _live_detail(run)
    if run.skew_ns:  # set on a live run only by a read-only view (Projector.view), never in a file
        detail += f" (clock skew: its heartbeat is stamped {ahead(run.skew_ns)} ahead of this machine's clock)"
    return detail


def _live_detail(run: Run) -> str:
    if run.status == "queued":
        return "queued: waiting for the first stage"
    if run.status == "in_progress":
        running = [c for c in run.commands if c.status == "running"]
        if running:
            c = running[0]
            return f"running stage {c.index}/{len(run.commands)}: {c.id}"
        return f"in progress (attempt {run.attempt})"
    if run.status == "succeeded":
        return "succeeded"
    if not run.reason:
        return run.status
    # the runner's reasons often start with the status already ("cancelled by SIGINT ...")
    return run.reason if run.reason.startswith(run.status) else f"{run.status}: {run.reason}"


def command_summary(cmd: Command) -> str | None:
    parts = [cmd.summary] if cmd.summary else []
    for stream in ("stdout", "stderr"):
        dropped = cmd.truncated.get(stream)
        if dropped:
            parts.append(f"output truncated: {dropped} bytes of {stream} left out")
    return "; ".join(parts) or None


def _command_entry(paths: Paths, rid: str, c: Command) -> dict:
    """A stage's entry in the manifest, rendered again only when what it shows changed."""
    key = (c.id, c.title, c.command, c.pipeline, c.kind, c.status, c.started_ts, c.completed_ts, c.exit_code,
           c.summary, tuple(c.truncated.items()), c.has_log, c.error is not None, c.sub_run_id)  # fmt: skip
    cache = paths.commands
    known = cache.get((rid, c.index))
    if known is not None and known[0] == key:
        return known[1]
    entry = {
        "index": c.index,
        "id": c.id,
        "title": c.title,
        "command": c.command if c.kind == "command" else c.pipeline,
        "kind": c.kind,
        "status": MANIFEST_STATUS.get(c.status, c.status),  # the schema's statuses: cancelled shows as failed
        "started_at": iso_or_none(c.started_ts),
        "completed_at": iso_or_none(c.completed_ts),
        "exit_code": c.exit_code,
        "summary": command_summary(c),
        "log_path": paths.rel(paths.log(rid, c)) if c.has_log else None,
        "error_file": paths.rel(paths.error(rid, c)) if c.error is not None else None,
        "sub_run_id": c.sub_run_id,
    }
    if len(cache) >= COMMAND_CACHE:
        cache.clear()  # a long-lived daemon's memory stays flat
    cache[(rid, c.index)] = (key, entry)
    return entry


#: stage entries remembered per Paths (then forgotten at once)
COMMAND_CACHE = 2_000


def manifest(state: TaskState, run: Run, paths: Paths) -> dict:
    rid = run.run_id
    children = []
    for child_id in run.children:
        child = state.runs.get(child_id)
        if child is not None:
            children.append(
                {"run_id": child_id, "pipeline_id": child.pipeline_id, "status": child.status, "manifest": paths.rel(paths.manifest(child_id))}
            )
    commands = [_command_entry(paths, rid, c) for c in run.commands]
    doc = {
        "version": 1,
        # the task the run lives in (whose journal this is), which a copy or an import may
        # have given another name than the one its events recorded
        "task_id": state.task_id,
        "task_slug": slug(state.task_id),
        "run_id": rid,
        "parent_run_id": run.parent_run_id,
        "pipeline_id": run.pipeline_id,
        "pipeline_title": run.pipeline_title,
        "runner": "codex-cli",
        "approval_policy": run.approval_policy,
        "status": run.status,
        "status_detail": status_detail(run),
        "started_at": iso(run.started_ts),
        "completed_at": iso_or_none(run.completed_ts),
        "updated_at": iso(run.updated_ts or run.started_ts),
        "heartbeat_at": iso_or_none(run.manifest_heartbeat_ts),
        "heartbeat_interval_seconds": max(1, run.hb_interval),
        "heartbeat_stale_after_seconds": max(1, run.hb_stale),
        "artifact_root": paths.rel(paths.run_dir(rid)),
        "compat_path": paths.rel(paths.manifest(rid)),
        "log_path": paths.rel(os.path.join(paths.run_dir(rid), "commands")),
        "summary": run.summary,
        "metrics_recorded": run.metrics_recorded,
        "resume_token": run.resume_fingerprint or "none",
        "resume_events": [
            {"timestamp": iso(r.ts), "actor": r.actor, "reason": r.reason, "outcome": r.outcome, "detail": r.detail}
            for r in run.resume_events
        ],
        "approvals": [{"actor": a.actor, "timestamp": iso(a.ts), "reason": a.reason} for a in run.approvals],
        "commands": commands,
        "child_runs": children,
        "run_summary_path": None,
        "plan_target_id": None,
        "instructions_hash": None,
        "instructions_sources": [],
    }
    if run.guardrails_required is not None:
        doc["guardrails_required"] = run.guardrails_required
    return doc


def heartbeat(run: Run) -> bytes:
    return (iso(run.heartbeat_ts or run.started_ts) + "\n").encode()


def log(cmd: Command) -> bytes:
    return b"".join(cmd.log)


def error_file(run: Run, cmd: Command, task_id: str | None = None) -> bytes:
    """The error file: every string field <= 8 KiB, the whole file <= 10,000 bytes.
    ``task_id``: the task the run lives in (by default the one its events recorded)."""
    e = cmd.error
    top = {"command": e.command or cmd.command or "", "reason": e.reason or "command failed"}
    details = {"stderr": e.stderr}
    limit = ERROR_FIELD_CAP
    while True:
        doc = {"run_id": run.run_id, "task_id": task_id or run.task_id, "command_index": cmd.index, "command_id": cmd.id}
        for name, value in top.items():
            doc[name], cut = cut_utf8(value, limit)
            if cut:
                doc[f"{name}_truncated"] = True
        stderr, cut = cut_utf8(details["stderr"], limit)
        doc["details"] = {
            "exit_code": e.exit_code,
            "signal": e.signal,
            "stderr": stderr,
            "stderr_truncated": e.stderr_truncated or cut,
            "stderr_total_bytes": e.stderr_total_bytes or len(e.stderr.encode()),
        }
        doc["created_at"] = iso(cmd.error_ts)
        data = dumps(doc)
        if len(data) <= ERROR_FILE_CAP:
            return data
        # JSON escapes can make a field longer than its bytes: cut harder until the file fits
        limit = limit * 3 // 4


def metrics_lines(state: TaskState) -> bytes:
    out = []
    for m in state.metrics:
        out.append(
            _enc.encode(
                {
                    "run_id": m.run_id,
                    "task_id": m.task_id,
                    "pipeline_id": m.pipeline_id,
                    "attempt": m.attempt,
                    "status": m.status,
                    "started_at": iso(m.started_ts),
                    "completed_at": iso(m.completed_ts),
                    "duration_seconds": round(m.duration_ns / 1e9, 3),
                    "commands_passed": m.commands_passed,
                    "commands_failed": m.commands_failed,
                    "recorded_at": iso(m.recorded_ts),
                }
            )
        )
    return b"".join(line + b"\n" for line in out)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of sorted values (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # nearest rank
    return sorted_values[int(rank) - 1]


def summary(state: TaskState) -> bytes:
    runs = state.runs.values()
    by_status = {s: 0 for s in ("queued", "in_progress", "succeeded", "failed", "cancelled")}
    stale = 0
    for r in runs:
        by_status[r.status] += 1
        stale += r.stale_since_ts is not None
    durations = sorted(round(m.duration_ns / 1e9, 3) for m in state.metrics)
    finished = by_status["succeeded"] + by_status["failed"] + by_status["cancelled"]
    w = state.writers
    beats = w.heartbeats_written + w.heartbeats_failed
    doc = {
        "task_id": state.task_id,
        "runs": len(state.runs),
        "attempts": len(state.metrics),
        "by_status": by_status,
        "stale": stale,
        "success_rate": round(by_status["succeeded"] / finished, 4) if finished else None,
        "duration_seconds": {"p50": percentile(durations, 50), "p95": percentile(durations, 95), "max": durations[-1] if durations else None},
        "commands": {
            "passed": sum(m.commands_passed for m in state.metrics),
            "failed": sum(m.commands_failed for m in state.metrics),
        },
        "heartbeats": {
            "max_gap_seconds": round(max((r.max_heartbeat_gap_ns for r in runs), default=0) / 1e9, 3),
            "gaps_over_stale_limit": sum(r.heartbeat_gaps for r in runs),
            "written": w.heartbeats_written,
            "failed": w.heartbeats_failed,
            "failure_rate": round(w.heartbeats_failed / beats, 4) if beats else 0.0,
        },
        "journal": {"lock_retries": w.lock_retries, "lock_timeouts": w.lock_timeouts, "spills": w.spills},
        "updated_at": iso_or_none(state.last_ts or None),
    }
    return dumps(doc)


def state_snapshot(state: TaskState, paths: Paths) -> bytes:
    runs = sorted(state.runs.values(), key=lambda r: (r.started_ts, r.run_id))
    doc = {
        "task_id": state.task_id,
        "last_run_at": iso(runs[-1].started_ts) if runs else None,
        "runs": [
            {
                "run_id": r.run_id,
                "pipeline_id": r.pipeline_id,
                "status": r.status,
                "attempt": r.attempt,
                "started_at": iso(r.started_ts),
                "completed_at": iso_or_none(r.completed_ts),
                "duration_seconds": seconds(r.duration_ns),
                "manifest": paths.rel(paths.manifest(r.run_id)),
            }
            for r in runs
        ],
    }
    return dumps(doc)
