"""Commands that operate on a run from any terminal: logs (its captured output), cancel."""

from __future__ import annotations

import time

import click

from runjournal.journal import BadInput, JournalError
from runjournal.journal import events as ev
from runjournal.projections import Projector
from runjournal.runner import default_actor, runner_alive
from runjournal.runner.cancel import request_cancel
from runjournal.runner.live import Lines, marked, truncation_note

from .context import format_option, pass_settings, run_id_argument, streaming_format_option, task_option
from .lookup import run_task
from .output import echo, emit_json, interruptible
from .projection_cmds import emit_json_line

#: how long `logs -f` waits for new records before it looks whether the runner still lives
FOLLOW_WAIT = 0.5
ENDS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)


class RunLog:
    """A run's output from its records, as lines: each stage's head, the truncation marker
    where the cap cut it, its tail (``emit(index, stage_id, stream, text)``); ``stage``: one
    stage's only. Also follows what tells whether the run ended and whether its runner lives."""

    def __init__(self, run_id: str, emit):
        self.run_id = run_id
        self.emit = emit
        self.plan: tuple[ev.StagePlan, ...] = ()
        self.only: int | None = None
        self.lines: dict[int, Lines] = {}
        self.ended = False
        self.runner = (0, "", 0)
        self.stale_after = 30
        self.last_ts = 0
        self.printed = 0

    def apply(self, rec) -> None:
        e = rec.event
        self.last_ts = max(self.last_ts, rec.ts)
        if isinstance(e, ev.RunStarted):
            self.plan, self.stale_after = e.stages, e.heartbeat_stale_after_seconds
            self.runner = (e.runner_pid, e.runner_host, e.runner_start)
        elif isinstance(e, ev.RunResumed) and e.outcome == "accepted":
            self.ended = False
            self.runner = (e.runner_pid, e.runner_host, e.runner_start)
        elif isinstance(e, ENDS):
            self.ended = True
            for lines in self.lines.values():
                lines.close()
        elif isinstance(e, (ev.OutputChunk, ev.OutputTruncated)) and self.wanted(e.index):
            lines = self._lines(e.index)
            if isinstance(e, ev.OutputChunk):
                lines.feed(e.stream, e.data)
            else:
                lines.note(e.stream, truncation_note(e))
                lines.feed(e.stream, e.tail)
        elif isinstance(e, (ev.StageFinished, ev.StageFailed, ev.StageSkipped)) and e.index in self.lines:
            self.lines[e.index].close()

    def wanted(self, index: int) -> bool:
        return self.only is None or index == self.only

    def choose(self, stage: str) -> None:
        """Only stage ``stage`` (its id, or its index from 1); BadInput naming the stages if there is none."""
        for i, p in enumerate(self.plan, 1):
            if stage in (p.id, str(i)):
                self.only = i
                return
        known = ", ".join(p.id for p in self.plan)
        raise BadInput(f"run {self.run_id} has no stage {stage!r} (its stages: {known})")

    def alive(self) -> bool:
        """Whether the run's runner lives: asked of the process on this host, else judged by the run's last record."""
        found = runner_alive(*self.runner)
        if found is not None:
            return found
        return time.time_ns() - self.last_ts < self.stale_after * 1_000_000_000

    def _lines(self, index: int) -> Lines:
        lines = self.lines.get(index)
        if lines is None:
            stage_id = self.plan[index - 1].id if 0 < index <= len(self.plan) else str(index)

            def out(stream: str, text: str, index: int = index, stage_id: str = stage_id) -> None:
                self.printed += 1
                self.emit(index, stage_id, stream, text)

            lines = self.lines[index] = Lines(stage_id, lines=out)
        return lines


@click.command()
@run_id_argument
@click.argument("stage", required=False)
@task_option
@click.option("--follow", "-f", "follow_", is_flag=True, help="Keep printing output as the run writes it, until the run ends (Ctrl-C stops: exit 130).")
@streaming_format_option("one JSON document on stdout; with -f")
@pass_settings
def logs(settings, run_id, stage, task, follow_, fmt):
    """Print a run's captured output from the journal, every stage's or STAGE's (its id or number).

    Each line is marked with its stage, and stderr lines as such: `[build] ...`,
    `[build:stderr] ...`. Where the output cap cut a stream, a `[runjournal: N bytes of stderr
    left out here ...]` line stands between its head and its tail. --follow keeps printing as
    the run goes on and stops when it ends (exit 1 if its runner is gone instead). With
    --format json: one document, {"run_id", "task_id", "lines": [{"index", "stage_id",
    "stream", "line"}]}; with -f, one such line object per line (JSON Lines).

    Example: runjournal logs 2025-12-01T09-40-02-100Z-7c2e91d0 build -f
    """
    found = run_task(settings, run_id, task)
    store = settings.store

    collected: list[dict] = []

    def emit(index: int, stage_id: str, stream: str, text: str) -> None:
        if fmt == "json":
            doc = {"index": index, "stage_id": stage_id, "stream": stream, "line": text}
            emit_json_line(doc) if follow_ else collected.append(doc)
        else:
            echo(marked(stage_id, stream, text))

    log = RunLog(run_id, emit)
    if not follow_:
        _read(store, found, log, stage)
        if fmt == "json":
            emit_json({"run_id": run_id, "task_id": found, "lines": collected})
        return 0
    with interruptible(lambda: f"stopped following run {run_id} (task {found}) after {log.printed} line(s)"):
        return _follow(store, found, log, stage)


def _read(store, task: str, log: RunLog, stage: str | None) -> tuple[int, str | None]:
    """Print the run's output so far; return where the journal ended (next sequence, hint)."""
    reading = store.records(task)
    records, next_seq = [], 1
    for rec in reading:
        next_seq = rec.seq + 1
        if rec.run_id == log.run_id:
            records.append(rec)
    for rec in records[:1]:
        log.apply(rec)
    if stage is not None:
        log.choose(stage)
    for rec in records[1:]:
        log.apply(rec)
    if not log.ended:
        for lines in log.lines.values():
            lines.close()  # what is printed now ends its lines (a follow prints the rest as it comes)
    return next_seq, reading.hint


def _follow(store, task: str, log: RunLog, stage: str | None) -> int:
    """Print the run's output so far, then as it comes, until the run ends (0) or its runner is found gone (1)."""
    next_seq, hint = _read(store, task, log, stage)
    while not log.ended:
        store.wait(task, next_seq - 1, FOLLOW_WAIT)
        reading = store.records(task, next_seq, hint)
        for rec in reading:
            next_seq = rec.seq + 1
            if rec.run_id == log.run_id:
                log.apply(rec)
        hint = reading.hint or hint
        if not log.ended and not log.alive():
            for lines in log.lines.values():
                lines.close()
            echo(f"run {log.run_id} (task {task}): its runner is gone (no heartbeat for over {log.stale_after} s); stopped following", err=True)
            return 1
    return 0


@click.command()
@run_id_argument
@task_option
@click.option("--reason", default="", help="Why, for the journal and the run's reason.")
@click.option("--actor", default=None, help="Who cancels (default: $USER).")
@format_option
@pass_settings
def cancel(settings, run_id, task, reason, actor, fmt):
    """Cancel a run from any terminal: its runner stops it as on Ctrl-C, within a second.

    Records a cancel request in the run's journal; the runner, which watches for one, stops
    the current stage (TERM, cancelGraceSeconds, KILL) and ends the run as cancelled. A run
    whose runner is gone (stale) is closed as cancelled at once, after what its stage left
    running on this host is stopped. Exit 0 when recorded; 1 if the run has ended already.

    Example: runjournal cancel 2025-12-01T09-40-02-100Z-7c2e91d0 --reason "deploy frozen"
    """
    found = run_task(settings, run_id, task)
    projector = Projector(settings.runs_dir, settings.out_dir, found, store=settings.store, roots=settings.layout.roots)
    run = projector.view().runs.get(run_id)
    if run is None:
        raise BadInput(f"run {run_id} has no start event in task {found}: nothing to cancel")
    if run.completed_ts is not None:
        raise JournalError(f"run {run_id} (task {found}) has already ended ({run.status}); nothing to cancel")
    alive = runner_alive(run.runner_pid, run.runner_host, run.runner_start)
    if alive is None:  # another host: its heartbeat tells
        alive = run.stale_since_ts is None
    result = request_cancel(settings.store, found, run_id, actor or default_actor(), reason, alive)
    if fmt == "json":
        emit_json({"run_id": run_id, "task_id": found, "outcome": result.outcome, "detail": result.detail or None})
    elif result.outcome == "requested":
        where = f"pid {run.runner_pid} on {run.runner_host}" if run.runner_pid else "its runner"
        echo(f"cancel of run {run_id} (task {found}) recorded; its runner ({where}) stops it within a second")
    else:
        echo(f"run {run_id} (task {found}) closed as {result.detail}")
    return 0
