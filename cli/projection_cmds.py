"""Commands on projections: project, runs, show, status, replay, watch.

Commands that only read (``runs``, ``show``, ``status``, ``replay``) write nothing: they fold
the journal past the last checkpoint in memory (``Projector.view``), so what they print is
never behind the journal, and show a silent run stale without recording it; ``project`` and
``watch`` write the projection files and record staleness. Without ``--task`` (or
``$RUNJOURNAL_TASK`` / ``$MCP_RUNNER_TASK_ID``), ``project``, ``runs`` and ``watch`` cover
every task, and ``show``, ``status`` and ``replay`` find the task that holds the run by the
one task rule (``lookup.run_task``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import click
import msgspec

from runjournal.journal import JournalError, iso_utc, parse_iso
from runjournal.journal.naming import parse_duration
from runjournal.journal.text import for_terminal
from runjournal.journal import events as ev
from runjournal.projections import Projector, Step, paced, state_at, timeline
from runjournal.projections import render as prender
from runjournal.projections.replay import RunNotFound, first_record
from runjournal.projections.replay import step as make_step
from runjournal.projections.state import Run, TaskState
from runjournal.runner import run_exit_code

from .complete import complete_pipeline
from .context import PositiveNumber, format_option, pass_settings, run_id_argument, streaming_format_option, task_option
from .main import EXIT_CANCELLED
from .lookup import chosen_task, holds_run, journal_tasks, run_task, viewed
from .output import echo, emit_json, interruptible, paint_status, table
from .render import describe

STATUSES = ("queued", "in_progress", "succeeded", "failed", "cancelled")
#: rebuilds of more records than this show a progress bar (on a terminal)
PROGRESS_MIN_RECORDS = 100_000
#: how often ``status --watch`` reads the journal again (a silent runner shows stale then too)
WATCH_POLL = 0.1

_line_encoder = msgspec.json.Encoder()


# -- shared helpers --------------------------------------------------------------------


def _find_run(settings, run_id: str, task: str | None) -> tuple[Projector, TaskState, Run]:
    """The projector of the task that holds the run (the one task rule: ``lookup.run_task``),
    the task's state (read-only) and the run."""
    views: dict[str, tuple[Projector, TaskState]] = {}

    def holds(t: str) -> bool:
        views[t] = viewed(settings, t)
        return run_id in views[t][1].runs

    found = run_task(settings, run_id, task, holds)
    projector, state = views[found]
    return projector, state, state.runs[run_id]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def exit_code_for(run: Run) -> int:
    return run_exit_code(run.status, stale=run.stale_since_ts is not None)


def _ended(run: Run) -> bool:
    return run.status in ("succeeded", "failed", "cancelled") or run.stale_since_ts is not None


# -- project ---------------------------------------------------------------------------


@click.command()
@task_option
@click.option("--rebuild", is_flag=True, help="Throw the projection files and checkpoint away and rebuild them from the whole journal.")
@format_option
@pass_settings
def project(settings, task, rebuild, fmt):
    """Catch projection files up with the journal once (every task unless --task).

    Writes manifests, .heartbeat, logs, error files, metrics and state.json for what was
    appended since the last catch-up, and records runs whose heartbeat went silent as
    stale. --rebuild reproduces every file from the journal alone, byte for byte (it
    records nothing).

    Example: runjournal project --task nightly --rebuild
    """
    done = []
    for t in journal_tasks(settings, task):
        projector = Projector(settings.runs_dir, settings.out_dir, t, store=settings.store, roots=settings.layout.roots)
        started = time.monotonic()
        if rebuild:
            total = settings.store.last_seq(t) if sys.stderr.isatty() and fmt == "text" else 0
            if total >= PROGRESS_MIN_RECORDS:
                with click.progressbar(length=total, label=f"rebuilding {t}", file=sys.stderr) as bar:
                    seen = [0]

                    def progress(applied, bar=bar, seen=seen):
                        bar.update(applied - seen[0])
                        seen[0] = applied

                    result = projector.rebuild(progress=progress)
                    bar.update(total - seen[0])
            else:
                result = projector.rebuild()
        else:
            result = projector.catch_up(wait=30.0, mark_stale=True)
            if result is None:
                raise JournalError(f"task {t}: another projector held its projection lock for 30 s; try again")
        seconds = round(time.monotonic() - started, 3)
        refused = projector.state().invalid_ids
        if refused:
            echo(f"warning: {invalid_ids_message(t, refused)}", err=True)
        done.append(
            {
                "task_id": t,
                "applied": result.applied,
                "files": result.files,
                "next_seq": result.next_seq,
                "stale_marked": result.stale_marked,
                "seconds": seconds,
            }
        )
    if fmt == "json":
        emit_json({"rebuild": rebuild, "tasks": done})
        return 0
    if not done:
        echo(f"no task journals under {settings.runs_dir}")
    for d in done:
        what = f"rebuilt from {d['applied']} events" if rebuild else f"{d['applied']} new events"
        stale = f", {d['stale_marked']} run(s) marked stale" if d["stale_marked"] else ""
        took = f" in {d['seconds']:.2f} s" if rebuild else ""
        echo(f"task {d['task_id']}: {what}, {d['files']} files written{stale}{took}")
    return 0


def invalid_ids_message(task: str, refused: list[str]) -> str:
    shown = ", ".join(repr(r) for r in refused[:3]) + (" ..." if len(refused) > 3 else "")
    return f"task {task}: the journal holds run ids that cannot name a path, not projected: {shown} (`runjournal verify --task {task}` lists them)"


# -- runs ------------------------------------------------------------------------------


def run_row(projector: Projector, run: Run) -> dict:
    return {
        "run_id": run.run_id,
        # the task the run lives in (the journal it was read from), not the one its events
        # recorded: a copied task directory or an import holds the run under another task
        "task_id": projector.task,
        "pipeline_id": run.pipeline_id,
        "status": run.status,
        "status_detail": prender.status_detail(run),
        "stale": run.stale_since_ts is not None,
        "clock_skew_seconds": round(run.skew_ns / 1e9, 3) if run.skew_ns else None,
        "attempt": run.attempt,
        "parent_run_id": run.parent_run_id,
        "started_at": iso_utc(run.started_ts),
        "completed_at": prender.iso_or_none(run.completed_ts),
        "duration_seconds": prender.seconds(run.duration_ns),
        "manifest": projector.paths.manifest(run.run_id),
    }


def _flags(doc: dict) -> str:
    """What a STATUS column adds to the status: ``(stale)``, ``(clock skew)``."""
    flags = [name for name, on in (("stale", doc["stale"]), ("clock skew", doc["clock_skew_seconds"])) if on]
    return f" ({', '.join(flags)})" if flags else ""


class Since(click.ParamType):
    """A point in time: an ISO-8601 time (UTC when no zone is given), or a duration before now
    (``90s``, ``30m``, ``2h``, ``7d``, ``1w``); its value is nanoseconds since the epoch."""

    name = "TIME|DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = value.strip()
        try:
            return time.time_ns() - int(parse_duration(text) * 1e9)
        except ValueError:
            pass
        try:
            return parse_iso(text)
        except (ValueError, OverflowError):
            self.fail(f"{value!r} is neither an ISO-8601 time (2025-12-01, 2025-12-01T09:37Z) nor a duration (90s, 30m, 2h, 7d, 1w)", param, ctx)


def _wanted(run: Run, status: str | None, since: int | None, pipeline: str | None) -> bool:
    if status == "stale" and run.stale_since_ts is None or status in STATUSES and run.status != status:
        return False
    return (since is None or run.started_ts >= since) and (pipeline is None or run.pipeline_id == pipeline)


@click.command()
@task_option
@click.option("--status", "status", type=click.Choice([*STATUSES, "stale"]), help="Only runs with this status (stale: presumed dead).")
@click.option("--since", type=Since(), help="Only runs started at or after this time, or this long ago (2h, 7d).")
@click.option("--pipeline", metavar="ID", shell_complete=complete_pipeline, help="Only runs of this pipeline.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N runs (the newest).")
@click.option("--archived", is_flag=True, help="Only archived runs (`runjournal archive`); without it they are left out.")
@format_option
@pass_settings
def runs(settings, task, status, since, pipeline, limit, archived, fmt):
    """List runs, newest first, across every task unless --task.

    Example: runjournal runs --status failed --since 2h --limit 10
    """
    rows = []
    for t in journal_tasks(settings, task):
        projector, state = viewed(settings, t)
        for run in state.runs.values():
            if (run.run_id in state.archived) != archived or not _wanted(run, status, since, pipeline):
                continue
            rows.append((run.started_ts, run.run_id, t, run_row(projector, run)))
    rows.sort(key=lambda r: r[:3], reverse=True)
    docs = [r[3] for r in rows[:limit]]
    if fmt == "json":
        emit_json(docs)
        return 0
    if not docs:
        echo("no runs")
        return 0
    table(
        [
            [
                d["run_id"],
                d["task_id"],
                d["pipeline_id"],
                d["status"] + _flags(d),
                d["started_at"],
                _seconds(d["duration_seconds"]),
            ]
            for d in docs
        ],
        ["RUN ID", "TASK", "PIPELINE", "STATUS", "STARTED", "DURATION"],
        status_column=3,
    )
    return 0


# -- show ------------------------------------------------------------------------------


@click.command()
@run_id_argument
@task_option
@format_option
@pass_settings
def show(settings, run_id, task, fmt):
    """Print a run's manifest (JSON, in either format), as of the journal's end.

    The bytes are those `project` writes to manifest.json (rendered from the journal, not
    read from the file, which may be behind); nothing is written.

    Example: runjournal show 2025-12-01T09-37-11-576Z-1a60ebea
    """
    projector, state, run = _find_run(settings, run_id, task)
    data = prender.dumps(prender.manifest(state, run, projector.paths))
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


# -- status ----------------------------------------------------------------------------


def _status_doc(projector: Projector, state: TaskState, run: Run) -> dict:
    doc = run_row(projector, run)
    doc["pipeline_title"] = run.pipeline_title
    doc["updated_at"] = iso_utc(run.updated_ts or run.started_ts)
    doc["heartbeat_at"] = prender.iso_or_none(run.heartbeat_ts)
    doc["commands"] = [
        {
            "index": c.index,
            "id": c.id,
            "kind": c.kind,
            "status": c.status,
            "exit_code": c.exit_code,
            "started_at": prender.iso_or_none(c.started_ts),
            "completed_at": prender.iso_or_none(c.completed_ts),
            "duration_seconds": prender.seconds(c.duration_ns),
            "summary": prender.command_summary(c),
            "sub_run_id": c.sub_run_id,
        }
        for c in run.commands
    ]
    doc["child_runs"] = prender.manifest(state, run, projector.paths)["child_runs"]
    doc["exit_code"] = exit_code_for(run)
    return doc


def _print_status(doc: dict) -> None:
    echo(f"run:       {doc['run_id']}")
    echo(f"task:      {doc['task_id']}")
    echo(f"pipeline:  {doc['pipeline_id']} ({doc['pipeline_title']}), attempt {doc['attempt']}")
    echo("status:    " + paint_status(for_terminal(doc["status"] + _flags(doc))), safe=True)
    echo(f"detail:    {doc['status_detail']}")
    echo(f"started:   {doc['started_at']}")
    echo(f"completed: {doc['completed_at'] or '-'}")
    echo(f"heartbeat: {doc['heartbeat_at'] or '-'}")
    for child in doc["child_runs"]:
        echo(f"child:     {child['run_id']} ({child['pipeline_id']}): {child['status']}")
    if doc["commands"]:
        echo("")
        table(
            [
                [str(c["index"]), c["id"], c["status"], "-" if c["exit_code"] is None else str(c["exit_code"]), _seconds(c["duration_seconds"]), c["summary"] or ""]
                for c in doc["commands"]
            ],
            ["#", "STAGE", "STATUS", "EXIT", "DURATION", "SUMMARY"],
            status_column=2,
        )


def _print_changes(old: dict, new: dict) -> None:
    for a, b in zip(old["commands"], new["commands"]):
        if a["status"] != b["status"]:
            at = b["completed_at"] or b["started_at"] or new["updated_at"]
            exit_ = f" (exit {b['exit_code']})" if b["exit_code"] is not None and b["status"] in ("succeeded", "failed", "skipped") else ""
            echo(f"{at}  stage {b['index']} {b['id']}: {a['status']} -> {b['status']}{exit_}")
    if (old["status"], old["status_detail"], old["attempt"]) != (new["status"], new["status_detail"], new["attempt"]):
        detail = new["status_detail"]
        echo(f"{new['updated_at']}  " + (detail if detail.startswith(new["status"]) else f"{new['status']}: {detail}"))


def _watch_status(projector: Projector, state: TaskState, run_id: str, fmt: str, seen: list[dict]) -> int:
    """Print the run's state, then each change, until it ends (or goes stale); return its exit
    code. ``seen`` gets each state read (the last says how things stood if Ctrl-C stops it)."""
    prev = None
    while True:
        run = state.runs[run_id]
        doc = _status_doc(projector, state, run)
        seen[:] = [doc]
        if prev is None:
            emit_json_line(doc) if fmt == "json" else _print_status(doc)
        elif _changed(prev, doc):
            emit_json_line(doc) if fmt == "json" else _print_changes(prev, doc)
        prev = doc
        if _ended(run):
            return exit_code_for(run)
        time.sleep(WATCH_POLL)
        state = projector.view()


def _changed(old: dict, new: dict) -> bool:
    keys = ("status", "status_detail", "attempt", "completed_at", "stale", "child_runs")
    return any(old[k] != new[k] for k in keys) or [c["status"] for c in old["commands"]] != [c["status"] for c in new["commands"]]


def emit_json_line(doc: dict) -> None:
    """One compact JSON object per line, for output that follows something live."""
    sys.stdout.buffer.write(_line_encoder.encode(doc) + b"\n")
    sys.stdout.flush()


@click.command()
@run_id_argument
@task_option
@click.option("--watch", "follow_", is_flag=True, help="Follow the run live, printing each change, until it ends (Ctrl-C stops: exit 130).")
@streaming_format_option("one JSON document on stdout; with --watch")
@pass_settings
def status(settings, run_id, task, follow_, fmt):
    """Show one run's state: status, detail and stages; --watch follows it until it ends.

    Exit code: 0 succeeded, queued or running; 1 failed, or stale (no heartbeat for longer
    than its stale limit: the runner is presumed dead); 130 cancelled. With --watch, the
    code of the run's end. With --format json and --watch: one JSON object per change.

    Example: runjournal status 2025-12-01T09-37-11-576Z-1a60ebea --watch
    """
    projector, state, run = _find_run(settings, run_id, task)
    if follow_:
        seen: list[dict] = []
        with interruptible(lambda: f"stopped following run {run_id} (task {projector.task}), {seen[-1]['status']} when stopped"):
            return _watch_status(projector, state, run_id, fmt, seen)
    doc = _status_doc(projector, state, run)
    if fmt == "json":
        emit_json(doc)
    else:
        _print_status(doc)
    return doc["exit_code"]


# -- replay ----------------------------------------------------------------------------


def _parse_at(text: str, start_ts: Callable[[], int]) -> tuple[int | None, int | None]:
    """SEQ (a global sequence number), +SECONDS (after the run started: ``start_ts()``, asked
    only then) or an ISO-8601 time."""
    if text.isascii() and text.isdigit():  # not other scripts' digits, nor '²'
        return int(text), None
    try:
        if text.startswith("+"):
            return None, start_ts() + int(float(text[1:].removesuffix("s")) * 1e9)
        return None, parse_iso(text)
    except (ValueError, OverflowError):  # OverflowError: +inf, +1e300
        raise click.BadParameter(
            f"{text!r} is not a sequence number, +SECONDS or an ISO-8601 time (e.g. 42, +12.5s, 2025-12-01T09:37:20Z)",
            param_hint="'--at'",
        ) from None


def _started(store, task: str, run_id: str) -> int:
    """The time of the run's first record (sought near the time in its id: ``replay.first_record``),
    read from the archive for an archived run."""
    rec = next(iter(store.archived_records(task, {run_id})), None) or first_record(store, task, run_id)
    if rec is not None:
        return rec.ts
    raise RunNotFound(f"no run {run_id} in the journal at {store.where(task)} (see `runjournal runs`)")


def _step_doc(step: Step, rec) -> dict:
    doc = msgspec.to_builtins(step)
    doc["time"] = iso_utc(rec.ts)
    doc["text"] = describe(rec.event)
    return doc


def _step_line(step, rec) -> str:
    return f"{step.elapsed:>+10.3f}s  {rec.seq:>8}  #{rec.run_seq:<4} {describe(rec.event)}"


@click.command()
@run_id_argument
@task_option
@click.option("--at", "at", metavar="SEQ|TIME", help="Print the manifest as it was at this global sequence, +SECONDS after the start, or ISO-8601 time.")
@click.option("--speed", type=PositiveNumber(), metavar="X", help="Re-play the events and output with their original timing, X times faster (Ctrl-C stops: exit 130).")
@streaming_format_option("one JSON document on stdout; with --speed")
@pass_settings
def replay(settings, run_id, task, at, speed, fmt):
    """A run's history from the journal: its timeline, its manifest at a point, or a re-play.

    Without options: every record with its time since the run started, stages, exit codes
    and output excerpts. --at: the manifest exactly as it was then (JSON in either format).
    --speed: the records printed with their original gaps divided by X (JSON Lines with
    --format json).

    Example: runjournal replay 2025-12-01T09-37-11-576Z-1a60ebea --at +30s
    """
    if at is not None and speed is not None:
        raise click.UsageError("--at and --speed do not go together: choose a point in time or a re-play")
    store = settings.store
    firsts: dict[str, ev.Record | None] = {}  # task -> the run's first live record, found once
    found = run_task(settings, run_id, task, holds_run(settings, run_id, firsts))
    first = firsts.get(found)
    if at is not None:  # no timeline: a whole read of the journal that --at does not need
        seq, ts = _parse_at(at, lambda: first.ts if first is not None else _started(store, found, run_id))
        paths = prender.Paths(settings.runs_dir, settings.out_dir, found)
        sys.stdout.buffer.write(prender.dumps(state_at(store, found, run_id, paths, seq=seq, ts_ns=ts, first_seq=first and first.seq)))
        sys.stdout.flush()
        return 0
    steps = timeline(store, found, run_id, first.seq if first is not None else 1)
    if speed is not None:
        start = steps[0][1].ts
        played = [0]
        with interruptible(lambda: f"stopped re-playing run {run_id} (task {found}) after {played[0]} of {len(steps)} records"):
            for delay, rec in paced([rec for _, rec in steps], speed):
                if delay:
                    time.sleep(delay)  # the pace is the point of a re-play
                s = make_step(rec, start)
                played[0] += 1  # before the line shows (see tail)
                if fmt == "json":
                    emit_json_line(_step_doc(s, rec))
                else:
                    _play_line(s, rec)
        return 0
    if fmt == "json":
        emit_json({"run_id": run_id, "task_id": found, "records": len(steps), "steps": [_step_doc(s, r) for s, r in steps]})
        return 0
    first = steps[0][1]
    echo(f"run {run_id} (task {found}), started {iso_utc(first.ts)}, {len(steps)} records")
    echo(f"{'ELAPSED':>11}  {'SEQ':>8}  RUN# EVENT")
    for s, rec in steps:
        echo(_step_line(s, rec))
    return 0


def _play_line(step: Step, rec) -> None:
    e = rec.event
    if isinstance(e, ev.OutputChunk):
        text = e.data.decode("utf-8", "replace")
        for line in text.splitlines() or [""]:
            echo(f"{step.elapsed:>+10.3f}s  {e.stream}| {line}")
    else:
        echo(f"{step.elapsed:>+10.3f}s  {describe(e)}")


# -- watch -----------------------------------------------------------------------------


@click.command()
@task_option
@click.option("--poll", type=PositiveNumber(), metavar="SECONDS", help="Poll every SECONDS instead of using inotify (network filesystems).")
@streaming_format_option()
@pass_settings
def watch(settings, task, poll, fmt):
    """Keep projection files current as journals grow (every task unless --task), until stopped.

    Uses watchdog's native observer (inotify), or polling with --poll; tasks that appear
    later are picked up. Every second it also catches every task up (in case a
    notification was lost) and records silent runs as stale. SIGINT (Ctrl-C) or SIGTERM
    stops it after the current write: exit 130 after SIGINT, 0 after SIGTERM (a service
    manager's stop). Prints a line per catch-up (JSON Lines with --format json).

    With a retention policy in the root's config (runjournal.retention), it archives and
    prunes each task's runs by it when it starts and then once a day (retention.every), with
    a line each time.

    Example: runjournal watch --poll 2
    """
    from runjournal.projections import Watcher  # imports watchdog: only this command needs it
    from runjournal.runner.config import retention_policy

    chosen = chosen_task(settings, task)  # a task may get its journal after the daemon starts
    policy = retention_policy(settings.root)  # only the policy is read: watching needs no pipelines
    stop = threading.Event()

    def log(text: str, doc: dict) -> None:
        if fmt == "json":
            emit_json_line(doc)
        else:
            echo(text)

    def caught_up(t, result) -> None:
        now = time.time_ns()
        stale = f", {result.stale_marked} run(s) marked stale" if result.stale_marked else ""
        log(
            f"{iso_utc(now)}  task {t}: {result.applied} events, {result.files} files{stale}",
            {"event": "catch_up", "time": iso_utc(now), "task_id": t, "applied": result.applied, "files": result.files, "next_seq": result.next_seq, "stale_marked": result.stale_marked},
        )

    def retained(t, archived, pruned) -> None:
        now = time.time_ns()
        done = [(verb, doc) for verb, doc in (("archived", archived), ("pruned", pruned)) if doc is not None]
        what = ", ".join(f"{verb} {len(doc['runs'])} run(s) ({len(doc['units'])} units, {doc['bytes']} bytes)" for verb, doc in done)
        parts = {key: None if doc is None else {k: v for k, v in doc.items() if k not in ("task_id", "dry_run")} for key, doc in (("archive", archived), ("prune", pruned))}
        log(f"{iso_utc(now)}  task {t}: retention {what}", {"event": "retention", "time": iso_utc(now), "task_id": t, **parts})

    def warn(message: str) -> None:
        echo(f"warning: {message}", err=True)

    daemon = Watcher(
        settings.runs_dir,
        settings.out_dir,
        chosen,
        poll,
        on_catch_up=caught_up,
        warn=warn,
        store=settings.store,
        roots=settings.layout.roots,
        retention=policy,
        retention_every=policy.every_seconds,
        on_retention=retained,
    )

    def ready() -> None:
        what = f"task {chosen}" if chosen else "every task"
        log(
            f"watching {what} under {settings.runs_dir} ({daemon.observer_kind}); Ctrl-C stops",
            {"event": "ready", "runs_dir": settings.runs_dir, "task_id": chosen, "observer": daemon.observer_kind},
        )

    stopped_by: list[int] = []

    def on_signal(signum, frame) -> None:
        stopped_by.append(signum)
        # set the events from another thread: this handler may interrupt the loop while it holds them
        threading.Thread(target=lambda: (stop.set(), daemon.wake.set()), daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        daemon.run(stop, on_ready=ready)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log(
        f"stopped after {daemon.catch_ups} catch-ups ({daemon.applied} events)",
        {"event": "stopped", "catch_ups": daemon.catch_ups, "applied": daemon.applied},
    )
    return EXIT_CANCELLED if stopped_by[:1] == [signal.SIGINT] else 0
