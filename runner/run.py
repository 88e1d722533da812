"""The runner: a pipeline run as journaled processes, with heartbeats, cancel and resume.

Every fact goes to the task journal first; the manifest and the other files are
projections, caught up in-process after each boundary event so a user who never starts
``watch`` still sees them current. Journal trouble never fails a stage: a busy lock spills
events for the next writer, a failed write is kept and retried with the next append.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from runjournal.journal import EventStore, JournalError, Layout, command_file, new_run_id, open_store, validate_run_id
from runjournal.journal import events as ev
from runjournal.journal.errors import BadInput, JournalDamaged, JournalWriteFailed, LockTimeout, SequenceConflict, StoreUnavailable
from runjournal.journal.fsutil import open_dir_below, open_own_dir, write_all
from runjournal.projections import Projector

from . import procs
from .cancel import CancelWatch
from .capture import Cancel, Outcome, run_command, seconds_text
from .config import Config, ConfigError, Limits, Pipeline, Stage
from .live import Lines, stderr_tail
from .orphans import StageGroup, describe, unfinished_groups

#: the exit code of a command that ran or watched a run, by the run's status (contract section 5)
EXIT_CODES = {"succeeded": 0, "queued": 0, "in_progress": 0, "failed": 1, "cancelled": 130}


def run_exit_code(status: str, stale: bool = False) -> int:
    """0 succeeded, queued or running; 1 failed, or stale (its runner is presumed dead); 130 cancelled."""
    if stale and status != "cancelled":
        return 1
    return EXIT_CODES.get(status, 1)


class ResumeRefused(JournalError):
    """A resume was refused (recorded in the journal as a blocked resume event)."""


class TokenRefused(ResumeRefused):
    """A resume was refused for a missing or wrong resume token: bad input, not a failed run."""


@dataclass
class RunResult:
    run_id: str
    task_id: str
    status: str
    manifest: str
    resume_token: str | None
    quiet_token: bool = False  # --quiet-token: the token stays in its file, out of printed output

    @property
    def exit_code(self) -> int:
        return run_exit_code(self.status)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "status": self.status,
            "exit_code": self.exit_code,
            "manifest": self.manifest,
            "resume_token": None if self.quiet_token else self.resume_token,
        }


def fingerprint(token: str) -> str:
    """What the manifest shows of a resume token: enough to tell tokens apart, useless to resume."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def env_fingerprint(token: str, name: str, value: str) -> str:
    """What the journal keeps of a stage's environment value: keyed by the run's resume token,
    so it tells a changed value from the same one, and nobody without the token can test guesses."""
    return "hmac-sha256:" + hmac.new(token.encode(), f"{name}={value}".encode(), hashlib.sha256).hexdigest()[:16]


def _journaled(plan: tuple[ev.StagePlan, ...], token: str, clear: tuple[str, ...] = ()) -> tuple[ev.StagePlan, ...]:
    """The plan as the journal keeps it: stage env values replaced by fingerprints (the journal
    is readable by other accounts and travels with every export; API keys must not), but for
    the names in ``clear`` (the config's ``runjournal.journalEnvInClear``), kept as they are."""
    return tuple(
        msgspec.structs.replace(p, env={k: v if k in clear else env_fingerprint(token, k, v) for k, v in p.env.items()}) if p.env else p
        for p in plan
    )


def _fingerprinted(kept: str) -> bool:
    """Whether a journaled env value is a fingerprint rather than the value in clear."""
    return kept.startswith("hmac-sha256:")


_proc_start = procs.start_time  # the name older callers (and tests) use


def runner_alive(pid: int, host: str, start: int) -> bool | None:
    """True/False for a runner on this host; None when it cannot be told (another host).

    A zombie is dead: it has finished and only waits for a parent to reap it, which in a
    container whose PID 1 reaps nothing never happens."""
    if not pid or host != socket.gethostname():
        return None
    p = procs.proc(pid)
    if p is not None:
        return p.running and (not start or p.start == start)
    try:  # no /proc entry: gone, or a system without /proc, where the kernel still knows
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: a catch-up that does not save (at a stage's start, after a heartbeat) still saves the
#: checkpoint if the last save is older than this: a long stage's catch-ups are not all replayed
HEARTBEAT_SAVE_EVERY = 30.0


class Appender:
    """Journal appends for a run that never fail the run midway; counts what went wrong.

    An event the journal refuses (a full disk, say) is kept in memory and retried with the
    next append, so a passing hiccup loses nothing. What is still unrecorded when the run
    ends is reported by ``unrecorded`` and fails the command (``Runner._drive``).
    """

    def __init__(self, store: EventStore, task: str, warn: Callable[[str], None]):
        self.store = store
        self.task = task
        self.warn = warn
        self._backlog: list[tuple[str, ev.Event]] = []
        self._mutex = threading.Lock()
        self.spills = 0
        self.failures = 0
        self.last_error: JournalError | None = None

    def append(self, run_id: str, *events: ev.Event, required: bool = False) -> bool:
        """Append (with any backlog first); ``required``: raise JournalWriteFailed (or
        JournalDamaged) instead of keeping them."""
        with self._mutex:
            items = self._backlog + [(run_id, e) for e in events]
            try:
                self.store.append_batch(self.task, items)
            except LockTimeout as e:
                if e.spilled_to is None:
                    self._backlog = items
                    return False
                self.spills += 1
                self.warn(f"journal busy: {len(items)} event(s) kept in {e.spilled_to}")
            except (JournalWriteFailed, JournalDamaged, StoreUnavailable) as e:  # a damaged journal, a server away: kept, retried
                if required:
                    raise
                self._backlog = items  # retried with the next append
                self.failures += 1
                self.last_error = e
                if self.failures == 1 or self.failures % 100 == 0:
                    self.warn(f"{e} (kept in memory, retried with the next event)")
                return False
            self._backlog = []
            return True

    @property
    def unrecorded(self) -> int:
        """Events the journal has refused so far and not taken since."""
        with self._mutex:
            return len(self._backlog)


class Heartbeats(threading.Thread):
    """Appends a heartbeat every interval while the run is alive; a failed one is counted, never raised.

    After each heartbeat ``project`` catches the projection files up, so ``.heartbeat`` (and
    the live head of the stage's log) stay current during a long stage without ``watch``.
    """

    def __init__(self, appender: Appender, run_id: str, interval: float, project: Callable[[], None] = lambda: None):
        super().__init__(name="runjournal-heartbeat", daemon=True)
        self.appender, self.run_id, self.interval, self.project = appender, run_id, interval, project
        self.stop = threading.Event()
        self.written = 0
        self.failed = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                ok = self.appender.append(self.run_id, ev.Heartbeat())
            except Exception:  # noqa: BLE001 - a heartbeat must never take the run down
                ok = False
            if not ok:
                self.failed += 1
                continue
            self.written += 1
            try:
                self.project()
            except Exception:  # noqa: BLE001 - projection trouble must not stop the heartbeats
                pass


class Runner:
    """Runs pipelines of one config for one task."""

    def __init__(
        self,
        layout: Layout,
        root: str,
        task: str,
        config: Config,
        say: Callable[[str], None] = lambda line: None,
        durability: str = "batch",
        store: EventStore | None = None,
        quiet_token: bool = False,
        stream: bool = False,
    ):
        """``quiet_token``: never print the resume token, only where its file is (for CI logs);
        ``stream``: print each stage's output as it comes (``[stage] line``, through ``say``)."""
        self.layout = layout
        self.root = root
        self.task = task
        self.config = config
        self.limits: Limits = config.limits
        self.say = say
        self.quiet_token = quiet_token
        self.stream = stream
        self.store = store if store is not None else open_store(layout.runs_dir, durability=durability, root=layout.root_of(layout.runs_dir))
        self._owns_store = store is None
        self.store.prepare(task)  # a journal that cannot be written is refused before anything runs
        self.appender = Appender(self.store, task, lambda m: say(f"warning: {m}"))
        self.projector = Projector(layout.runs_dir, layout.out_dir, task, store=self.store, roots=layout.roots)
        self.cancel = Cancel()
        self._projecting = threading.Lock()  # the heartbeat thread catches up too: one at a time
        self._projection_warning = ""
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.proc_start = _proc_start(self.pid)

    # -- entry points -----------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM cancel the run: the current stage's group gets TERM, then KILL."""

        def handler(signum, frame):
            self.cancel.request(signum)
            if self.cancel.requests == 1:
                self.say(f"cancelling ({signal.Signals(signum).name}); press Ctrl-C again to kill at once")

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def start(
        self, pipeline: Pipeline, parent_run_id: str | None = None, parent_stage: tuple[int, str] | None = None, cancel: Cancel | None = None
    ) -> RunResult:
        """Run ``pipeline`` as a new run; ``parent_stage`` (index, stage id) links it as a child
        run, ``cancel`` is then the parent run's (what cancels the parent cancels the child)."""
        run_id = new_run_id()
        token = secrets.token_urlsafe(24)
        plan = tuple(_plan(s, self.limits) for s in pipeline.stages)
        run_timeout = _ms(pipeline.timeout_seconds)
        watch_from = self._end_of_journal()  # a cancel request for this run can only come after it
        self._save_token(run_id, token)
        began = time.monotonic_ns()
        try:
            self.appender.append(run_id, ev.RunStarted(
                task_id=self.task,
                pipeline_id=pipeline.id,
                pipeline_title=pipeline.title,
                parent_run_id=parent_run_id,
                config_fingerprint=self.config.fingerprint,
                resume_token_fingerprint=fingerprint(token),
                stages=_journaled(plan, token, self.limits.journal_env_in_clear),
                heartbeat_interval_seconds=self.limits.heartbeat_interval_seconds,
                heartbeat_stale_after_seconds=self.limits.heartbeat_stale_after_seconds,
                guardrails_required=pipeline.guardrails_required,
                runner_pid=self.pid,
                runner_host=self.host,
                runner_start=self.proc_start,
                timeout_ms=run_timeout,
            ), required=True)
        except BaseException:  # not recorded (a failed write, a damaged journal, no file descriptor left...)
            self._drop_token(run_id)  # no run to resume
            raise
        if parent_run_id is not None and parent_stage is not None:
            index, stage_id = parent_stage
            self.appender.append(
                parent_run_id, ev.ChildRunLinked(index=index, stage_id=stage_id, child_run_id=run_id, pipeline_id=pipeline.id)
            )
        manifest = self.layout.manifest_path(self.task, run_id)
        self._project(wait=5.0)
        self.say(f"run {run_id} started: pipeline {pipeline.id}, task {self.task}")
        self.say(f"manifest: {manifest}")
        top = parent_stage is None
        if top and self.quiet_token:
            self.say(f"resume token: not printed; it is in {self._token_path(run_id)}, readable by you only")
        elif top:
            self.say(f"resume token: {token} (also in {self._token_path(run_id)}, readable by you only)")
        run_cancel = Cancel(parent=cancel) if cancel is not None else self.cancel
        watch_from = watch_from or 1
        status = self._drive(run_id, plan, set(range(1, len(plan) + 1)), top, began, run_cancel, run_timeout, watch_from)
        return RunResult(run_id, self.task, status, manifest, token, quiet_token=self.quiet_token)

    def exec(self, argv: list[str]) -> RunResult:
        command = shlex.join(argv)
        stage = Stage("command", "exec", command[:200] or "exec", command=command)
        return self.start(Pipeline("exec", f"exec: {command[:100]}", (stage,)))

    def resume(self, run_id: str, token: str | None, actor: str, reason: str) -> RunResult:
        validate_run_id(run_id)
        seq = self.store.run_seq(self.task, run_id)
        if seq == 0:
            raise BadInput(f"no run {run_id} in task {self.task}")
        self._project(wait=30.0)
        run = self._run(run_id)
        if run is None:
            raise BadInput(f"run {run_id} has no start event in task {self.task}")
        refusal = None
        if not token or not hmac.compare_digest(fingerprint(token), run.resume_fingerprint):
            refusal = ("a missing or wrong resume token", TokenRefused)
        elif run.status == "succeeded":
            refusal = ("the run already succeeded", ResumeRefused)
        elif run.completed_ts is None and self._alive(run):
            # after an accepted resume the live runner is that resume's: say so, it is the likely race
            holder = f"attempt {run.attempt}, started by another resume, holds it; " if run.attempt > 1 else ""
            refusal = (f"the run is still alive ({holder}its runner is running or its heartbeat is fresh)", ResumeRefused)
        if refusal is not None:
            detail, refused = refusal
            self.appender.append(run_id, ev.RunResumed(actor=actor, reason=reason, outcome="blocked", detail=detail))
            self._project(wait=5.0)
            raise refused(f"resume of run {run_id} refused: {detail}; recorded as a blocked resume")
        plan = self._with_env(self._journaled_plan(run_id), run.pipeline_id, token)
        rerun = {c.index for c in run.commands if c.status in ("failed", "cancelled", "running", "stale", "pending")}
        missing = sorted({s.pipeline for i, s in enumerate(plan, 1) if i in rerun and s.kind == "subpipeline"} - set(self.config.pipelines))
        if missing:  # found out only mid-run, this would leave the run unfinished with its runner gone
            raise ConfigError(
                f"{self.config.path}: no pipeline {', '.join(map(repr, missing))}, which run {run_id} runs as a sub-pipeline; "
                "resume with the --config the run started with"
            )
        groups = unfinished_groups(self.store.records(self.task), run_id)
        if self.store.run_seq(self.task, run_id) != seq:
            raise _changed(run_id)  # another resume won meanwhile: its stages are not ours to stop
        try:
            stopped = self._stop_orphans(run_id, groups)
        except ResumeRefused as e:
            self.appender.append(run_id, ev.RunResumed(actor=actor, reason=reason, outcome="blocked", detail=str(e)))
            self._project(wait=5.0)
            raise ResumeRefused(f"resume of run {run_id} refused: {e}; recorded as a blocked resume") from None
        attempt = run.attempt + 1
        run_timeout = self._journaled_start(run_id).timeout_ms
        watch_from = self.store.last_seq(self.task) + 1
        began = time.monotonic_ns()
        try:
            self.store.append(
                self.task,
                run_id,
                ev.RunResumed(
                    actor=actor, reason=reason, outcome="accepted", attempt=attempt, detail=stopped,
                    runner_pid=self.pid, runner_host=self.host, runner_start=self.proc_start,
                ),
                expected_seq=seq,
            )
        except SequenceConflict:
            raise _changed(run_id) from None
        self._project(wait=30.0)
        run = self._run(run_id)
        todo = {c.index for c in run.commands if c.status == "pending"}
        self.say(f"run {run_id} resumed (attempt {attempt}): {len(todo)} of {len(plan)} stage(s) to run")
        status = self._drive(run_id, plan, todo, True, began, self.cancel, run_timeout, watch_from)
        return RunResult(run_id, self.task, status, self.layout.manifest_path(self.task, run_id), None)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    # -- the run ----------------------------------------------------------------------

    def _drive(
        self, run_id: str, plan: tuple[ev.StagePlan, ...], todo: set[int], top: bool, began: int, cancel: Cancel, timeout_ms: int | None, watch_from: int
    ) -> str:
        """Run the stages in ``todo``; ``began``: the monotonic clock (ns) when this attempt
        started, for the durations its end event records (never the wall clock, which steps).
        ``cancel`` stops this run (a signal, a ``cancel_requested`` from ``watch_from`` on,
        ``timeout_ms`` after ``began``)."""
        beats = Heartbeats(self.appender, run_id, self.limits.heartbeat_interval_seconds, self._project_if_idle)
        beats.start()
        watch = CancelWatch(self.store, self.task, run_id, cancel, watch_from, self.say)
        watch.start()
        timer = None
        if timeout_ms is not None:
            timer = threading.Timer(max(0.0, timeout_ms / 1000 - _since(began) / 1e9), cancel.expire, args=(timeout_ms,))
            timer.daemon = True
            timer.start()
        try:
            status, reason = self._stages(run_id, plan, todo, cancel)
        except Exception as e:
            # the run must not be left unfinished with its runner gone: record why it ended
            self.appender.append(run_id, ev.RunFailed(reason=f"runner error: {type(e).__name__}: {e}", duration_ns=_since(began)))
            self._project(wait=30.0)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            watch.stop.set()
            beats.stop.set()
            beats.join()
            watch.join()
        took = _since(began)
        timed_out = status == "cancelled" and cancel.run_timeout_ms is not None
        if timed_out:  # the run's own timeout stopped it: a failure, as in CI, not a cancel
            status, reason = "failed", f"timed out after {seconds_text(cancel.run_timeout_ms)} (the pipeline's timeoutSeconds)"
        end = {
            "succeeded": ev.RunCompleted(summary=reason, duration_ns=took),
            "failed": ev.RunFailed(reason=reason or "a stage failed", duration_ns=took, timed_out=timed_out),
            "cancelled": ev.RunCancelled(reason=reason or "cancelled", signal=cancel.signal_name or None, duration_ns=took),
        }[status]
        # lock counters are the process's: reported once, by the top-level run
        met = self.store.writer_stats(self.task)
        stats = ev.WriterStats(
            lock_retries=met.lock_retries if top else 0,
            lock_timeouts=met.lock_timeouts if top else 0,
            spills=self.appender.spills if top else 0,
            heartbeats_failed=beats.failed,
            heartbeats_written=beats.written,
        )
        self.appender.append(run_id, end, stats)
        try:
            self.store.flush(self.task)
        except JournalError as e:
            self.say(f"warning: {e}")
        missing = self.appender.unrecorded
        if missing:
            raise JournalWriteFailed(
                f"run {run_id} {status}, but {missing} of its event(s) could not be recorded "
                f"({self.appender.last_error}); the journal shows the run unfinished"
            )
        self._project(wait=30.0)
        if reason and status != "succeeded":
            self.say(f"run {run_id} {reason}" if reason.startswith(status) else f"run {run_id} {status}: {reason}")
        else:
            self.say(f"run {run_id} {status}")
        return status

    def _stages(self, run_id: str, plan: tuple[ev.StagePlan, ...], todo: set[int], cancel: Cancel) -> tuple[str, str | None]:
        total = len(plan)
        for index, stage in enumerate(plan, 1):
            if index not in todo:
                continue
            if cancel.requests:
                return "cancelled", f"cancelled by {cancel.by} before stage {stage.id}"
            began = time.monotonic_ns()

            def started(pgid: int = 0, pgid_start: int = 0, index: int = index, stage: ev.StagePlan = stage) -> None:
                # a command stage's group is journaled before its command runs (capture's gate).
                # One catch-up per stage boundary: this one shows the previous stage's end and
                # this stage's start together; the run's end shows the last stage's end. The
                # checkpoint is saved at most every HEARTBEAT_SAVE_EVERY seconds here, and at
                # the run's end (a projector that finds it older replays to the same files).
                self.appender.append(run_id, ev.StageStarted(index=index, stage_id=stage.id, pgid=pgid, pgid_start=pgid_start))
                self._project(wait=None, save=False)
                self.say(f"[{index}/{total}] {stage.id}: {stage.title}")

            if stage.kind == "subpipeline":
                started()
                result = self._subpipeline(run_id, index, stage, began, cancel)
            else:
                result = self._command(run_id, index, stage, began, started, cancel)
            if result is not None:
                return result
        return "succeeded", None

    def _command(
        self, run_id: str, index: int, stage: ev.StagePlan, began: int, started: Callable[[int, int], None], cancel: Cancel
    ) -> tuple[str, str] | None:
        lim = self.limits
        lines = Lines(stage.id, self.say) if self.stream else None
        outcome: Outcome = run_command(
            index,
            stage.command,
            self._cwd(stage.cwd),
            self._env(run_id, stage),
            lim.output_cap_bytes,
            lim.stderr_excerpt_bytes,
            lambda events: self.appender.append(run_id, *events),
            cancel,
            lim.cancel_grace_seconds,
            on_start=started,
            timeout=None if stage.timeout_ms is None else stage.timeout_ms / 1000,
            on_output=lines.feed if lines is not None else None,
        )
        if lines is not None:
            lines.close()
        took = _since(began)
        tails = outcome.stdout.finish() + outcome.stderr.finish()
        if outcome.leftovers:
            self.say(f"      warning: stage {stage.id} left processes running when it ended; they were stopped (TERM, then KILL)")
        summary = _summary(stage, outcome)
        if outcome.exit_code == 0 and not outcome.cancelled and not outcome.timed_out:
            self.appender.append(run_id, *tails, ev.StageFinished(index=index, stage_id=stage.id, exit_code=0, summary=summary, duration_ns=took))
            self.say(f"      ok: {summary}" if summary else "      ok")
            return None
        # the limit the stage met: its own timeout, or its run's (which cancels the stage)
        limit = stage.timeout_ms if outcome.timed_out else cancel.run_timeout_ms if outcome.cancelled else None
        timed_out = limit is not None
        if timed_out:
            reason = f"stage {stage.id} timed out after {seconds_text(limit)}"
            if not outcome.timed_out:
                reason += " (the run's timeout)"
            summary = f"timed out after {seconds_text(limit)}" + (f"; {summary}" if summary else "")
        elif outcome.cancelled:
            reason = f"cancelled by {cancel.by} during stage {stage.id}"
        elif outcome.error:
            reason = f"stage {stage.id}: {outcome.error}"
        elif outcome.signal:
            reason = f"stage {stage.id} was killed by {outcome.signal}"
        else:
            reason = f"stage {stage.id} exited with {outcome.exit_code}"
        stderr = outcome.error or outcome.stderr.excerpt()
        error = ev.ErrorRecorded(
            index=index,
            stage_id=stage.id,
            command=stage.command,
            reason=reason,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            stderr=stderr,
            stderr_truncated=outcome.stderr.total > len(stderr.encode()),
            stderr_total_bytes=outcome.stderr.total,
        )
        cancelled = outcome.cancelled and not timed_out
        if stage.allow_failure and not outcome.cancelled:
            what = f"timed out after {seconds_text(limit)}" if timed_out else f"exit {outcome.exit_code}"
            note = f"{what}, failure allowed" + (f": {_summary(stage, outcome)}" if _summary(stage, outcome) else "")
            end = ev.StageSkipped(index=index, stage_id=stage.id, reason="failure allowed", exit_code=outcome.exit_code, summary=note, timed_out=timed_out)
            self.appender.append(run_id, *tails, error, end)
            self.say(f"      {note}")
            return None
        end = ev.StageFailed(
            index=index, stage_id=stage.id, exit_code=outcome.exit_code, signal=outcome.signal, summary=summary or reason, duration_ns=took,
            cancelled=cancelled, timed_out=timed_out, timeout_ms=limit,
        )  # fmt: skip
        self.appender.append(run_id, *tails, error, end)
        self.say(f"      failed: {reason}")
        if not cancelled:
            self._explain(run_id, index, stage.id, stderr)
        return ("cancelled" if outcome.cancelled else "failed"), reason

    def _explain(self, run_id: str, index: int, stage_id: str, stderr: str) -> None:
        """Below a failed stage's ``failed:`` line: the last lines of its stderr, and where its error file is."""
        lines = stderr_tail(stderr)
        if lines:
            self.say(f"      last {len(lines)} line(s) of stderr:" if len(lines) > 1 else "      last line of stderr:")
            for line in lines:
                self.say(f"      | {line}")
        else:
            self.say("      stderr: empty")
        self.say(f"      error file: {os.path.join(self.layout.run_dir(self.task, run_id), 'errors', command_file(index, stage_id, 'json'))}")

    def _subpipeline(self, run_id: str, index: int, stage: ev.StagePlan, began: int, cancel: Cancel) -> tuple[str, str] | None:
        pipeline = self.config.pipeline(stage.pipeline)
        result = self.start(pipeline, parent_run_id=run_id, parent_stage=(index, stage.id), cancel=cancel)
        summary = f"child run {result.run_id} {result.status}"
        took = _since(began)
        if result.status == "succeeded":
            self.appender.append(run_id, ev.StageFinished(index=index, stage_id=stage.id, exit_code=0, summary=summary, duration_ns=took))
            return None
        if result.status == "cancelled":
            limit = cancel.run_timeout_ms
            self.appender.append(
                run_id,
                ev.StageFailed(index=index, stage_id=stage.id, summary=summary, duration_ns=took, cancelled=limit is None, timed_out=limit is not None, timeout_ms=limit),
            )
            return "cancelled", f"cancelled during sub-pipeline {stage.id}"
        if stage.optional:
            self.appender.append(
                run_id, ev.StageSkipped(index=index, stage_id=stage.id, reason="optional sub-pipeline failed", summary=summary + " (optional)")
            )
            return None
        self.appender.append(run_id, ev.StageFailed(index=index, stage_id=stage.id, exit_code=1, summary=summary, duration_ns=took))
        return "failed", f"sub-pipeline {stage.id} ({pipeline.id}) failed"

    # -- helpers ----------------------------------------------------------------------

    def _project(self, wait: float | None, save: bool = True) -> None:
        """Catch the projection files up (``wait`` None: skip if another process is projecting;
        ``save`` false: leave the checkpoint to the next catch-up that saves, which replays
        from the older one to the same files if this process dies first)."""
        with self._projecting:
            self._catch_up(wait, save)

    def _project_if_idle(self) -> None:
        """For the heartbeat thread: catch up unless the run's own thread is catching up now."""
        if self._projecting.acquire(blocking=False):
            try:
                self._catch_up(None, save=False)
            finally:
                self._projecting.release()

    def _catch_up(self, wait: float | None, save: bool = True) -> None:
        # the journal is the record: projection files that cannot be written (a full disk)
        # are a warning, and `runjournal project` or `watch` brings them up to date later
        try:
            self.projector.catch_up(wait=wait, save_every=0.0 if save else HEARTBEAT_SAVE_EVERY)
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            message = f"projection files not updated ({e.strerror or e}{where}); the journal has the run, `runjournal project` catches them up"
            if message != self._projection_warning:
                self._projection_warning = message
                self.say(f"warning: {message}")

    def _run(self, run_id: str):
        """The run as the journal has it now: from the projector's state, or, when the
        projection files could not be caught up (a warning said why), folded in memory."""
        run = self.projector.state().runs.get(run_id)
        if run is None or self._projection_warning:
            run = self.projector.view().runs.get(run_id) or run
        return run

    def _alive(self, run) -> bool:
        """Whether the run's runner lives: asked of the process on this host; elsewhere judged
        by its heartbeat (``Projector.liveness``). A heartbeat stamped ahead of this clock by
        more than the stale limit (another host's clock) says nothing by its time: then only
        silence tells, so this watches the journal for a newer heartbeat for the stale limit."""
        alive = runner_alive(run.runner_pid, run.runner_host, run.runner_start)
        if alive is not None:
            return alive
        seen = self.projector.liveness(run.run_id)
        if seen is None or not seen.alive:
            return False
        if not seen.skew_ns:
            return True
        self.say(
            f"warning: run {run.run_id}'s newest heartbeat is stamped {seen.skew_ns / 1e9:.0f} s ahead of this machine's clock "
            f"(clock skew); watching {seen.stale_in_ns / 1e9:.0f} s for a newer one before judging the run dead"
        )
        beat = run.heartbeat_ts  # the fold updates ``run`` in place: keep what was seen
        deadline = time.monotonic() + seen.stale_in_ns / 1e9
        while (left := deadline - time.monotonic()) > 0:
            self.store.wait(self.task, self.store.last_seq(self.task), min(left, 1.0))
            self._project(wait=5.0)
            now = self._run(run.run_id)
            if now is None or now.completed_ts is not None:
                return False
            if now.heartbeat_ts != beat:
                return True  # it is still beating, whatever its clock says
        return False

    def _stop_orphans(self, run_id: str, groups: list[StageGroup]) -> str | None:
        """Before a resume reruns anything: stop what the dead runner's unfinished stages left
        running on this host (TERM, ``cancelGraceSeconds``, KILL, until it is gone), so no stage
        ever runs twice at once. Returns what it did (for the accepted resume's detail);
        ``ResumeRefused`` (its message the blocked resume's detail) if something cannot be stopped."""
        done: list[str] = []
        for group in groups:
            what = describe(group, run_id)
            if group.host != self.host:
                # nothing on another host can be seen from here: the heartbeat rule decided
                self.say(f"warning: {what} ran on host {group.host} as process group {group.pgid}; whether it still runs there cannot be checked from {self.host}")
                done.append(f"not checked: {what}, process group {group.pgid} on host {group.host}")
                continue
            if runner_alive(*group.runner):
                raise ResumeRefused(f"{what} is still run by a live runner (pid {group.runner[0]})")
            try:
                count = procs.stop_group(group.pgid, group.start, self.limits.cancel_grace_seconds)
            except procs.StopFailed as e:
                raise ResumeRefused(f"{what} left processes running that cannot be stopped: {e}") from None
            if count:
                self.say(f"stopped what {what} left running: process group {group.pgid}, {count} process(es) (TERM, then KILL)")
                done.append(f"stopped {what}: process group {group.pgid}, {count} process(es)")
        return "; ".join(done) or None

    def _journaled_plan(self, run_id: str) -> tuple[ev.StagePlan, ...]:
        return self._journaled_start(run_id).stages

    def _journaled_start(self, run_id: str) -> ev.RunStarted:
        for rec in self.store.records(self.task):
            if rec.run_id == run_id and isinstance(rec.event, ev.RunStarted):
                return rec.event
        raise BadInput(f"no start event for run {run_id}")

    def _with_env(self, plan: tuple[ev.StagePlan, ...], pipeline_id: str, token: str) -> tuple[ev.StagePlan, ...]:
        """The journaled plan with its env values: a fingerprinted one taken from the config (one
        the config no longer has is refused), one journaled in clear (``journalEnvInClear``, or a
        journal older than fingerprints) taken from the journal, like the stage's command. A
        config value that differs from the run's start is said either way."""
        pipeline = self.config.pipelines.get(pipeline_id)
        stages = {s.id: s for s in pipeline.stages} if pipeline else {}
        out = []
        for p in plan:
            if not p.env:
                out.append(p)
                continue
            given = dict(stages[p.id].env) if p.id in stages else {}
            env = {}
            for name, kept in p.env.items():
                if not _fingerprinted(kept):
                    if name in given and given[name] != kept:
                        self.say(f"warning: stage {p.id}: ${name} differs from its value when the run started; the run's value, journaled in clear, is used")
                    env[name] = kept
                    continue
                if name not in given:
                    raise ConfigError(f"{self.config.path}: stage {p.id} of pipeline {pipeline_id} has no env {name}, which the run started with; resume with the config it started with")
                # a value journaled in clear that looks like a fingerprint is the same when equal
                if given[name] != kept and env_fingerprint(token, name, given[name]) != kept:
                    self.say(f"warning: stage {p.id}: ${name} differs from its value when the run started")
                env[name] = given[name]
            out.append(msgspec.structs.replace(p, env=env))
        return tuple(out)

    def _pipeline_of(self, run_id: str) -> str:
        run = self._run(run_id)
        return run.pipeline_id if run else ""

    def _cwd(self, cwd: str | None) -> str:
        return self.root if not cwd else os.path.join(self.root, cwd)

    def _env(self, run_id: str, stage: ev.StagePlan) -> dict[str, str]:
        env = dict(os.environ)
        env.update(stage.env)
        lay = self.layout
        env.update(
            {
                "CODEX_ORCHESTRATOR_TASK_ID": self.task,
                "CODEX_ORCHESTRATOR_RUN_ID": run_id,
                "CODEX_ORCHESTRATOR_PIPELINE_ID": self._pipeline_of(run_id),
                "CODEX_ORCHESTRATOR_MANIFEST_PATH": lay.manifest_path(self.task, run_id),
                "CODEX_ORCHESTRATOR_RUN_DIR": lay.run_dir(self.task, run_id),
                "CODEX_ORCHESTRATOR_RUNS_DIR": lay.runs_dir,
                "CODEX_ORCHESTRATOR_OUT_DIR": lay.out_dir,
                "CODEX_ORCHESTRATOR_REPO_ROOT": self.root,
            }
        )
        return env

    def _token_path(self, run_id: str) -> str:
        return os.path.join(self.layout.task_dir(self.task), ".tokens", run_id)

    def _end_of_journal(self) -> int | None:
        """The next global sequence of the task's journal; None if it cannot be told now (a
        damaged journal: the append that follows refuses, saying what to do)."""
        try:
            return self.store.last_seq(self.task) + 1
        except JournalError:
            return None

    def _drop_token(self, run_id: str) -> None:
        """Remove the token of a run that was never recorded (nothing to resume)."""
        try:
            os.unlink(self._token_path(run_id))
        except OSError:
            pass

    def _save_token(self, run_id: str, token: str) -> None:
        path = self._token_path(run_id)
        task_dir = self.layout.task_dir(self.task)
        try:
            tfd = open_dir_below(self.layout.root_of(task_dir), task_dir)  # no link followed below the root
            try:
                dfd = open_own_dir(".tokens", 0o700, dir_fd=tfd)  # never a planted link: its target is not chmodded
            finally:
                os.close(tfd)
            try:
                fd = os.open(run_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                try:
                    write_all(fd, (token + "\n").encode())
                except OSError:
                    os.unlink(run_id, dir_fd=dfd)
                    raise
                finally:
                    os.close(fd)
            finally:
                os.close(dfd)
        except OSError as e:
            raise JournalWriteFailed(f"cannot save the resume token in {path}: {e.strerror or e}; nothing was run") from None


def _changed(run_id: str) -> ResumeRefused:
    return ResumeRefused(
        f"run {run_id} changed while resuming (another resume won, or its runner is still writing); check `runjournal status {run_id}`"
    )


def _since(began: int) -> int:
    """Nanoseconds since ``began`` on the monotonic clock: never negative, whatever the wall clock does."""
    return max(0, time.monotonic_ns() - began)


def _ms(seconds: float | None) -> int | None:
    """A timeout as the journal keeps it: whole milliseconds (at least 1), None for none."""
    return None if seconds is None else max(1, round(seconds * 1000))


def _plan(stage: Stage, limits: Limits) -> ev.StagePlan:
    timeout = stage.timeout_seconds if stage.timeout_seconds is not None else limits.stage_timeout_seconds
    return ev.StagePlan(
        id=stage.id,
        title=stage.title,
        kind=stage.kind,
        command=stage.command,
        pipeline=stage.pipeline,
        allow_failure=stage.allow_failure,
        optional=stage.optional,
        cwd=stage.cwd,
        env=dict(stage.env),
        summary_hint=stage.summary_hint,
        timeout_ms=_ms(timeout) if stage.kind == "command" else None,
    )


def _summary(stage: ev.StagePlan, outcome: Outcome) -> str | None:
    first = outcome.stdout.first_line() or outcome.stderr.first_line()
    if stage.summary_hint and first:
        return f"{stage.summary_hint}: {first}"
    return stage.summary_hint or first or None


def default_actor() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or f"uid {os.getuid()}"
