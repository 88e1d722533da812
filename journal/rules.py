"""The rules a run's history follows (docs/events.md, "Rules of a run's history").

Written once: ``check`` reports every record that breaks one (kind ``history``, with its
sequence), and the writer refuses the one it can tell from a run's sequence alone (a second
``run_started``). The fold of the projections tolerates every violation (a journal is hostile
input), so these rules say what a sound history is, not what can be read.

1. A run has one ``run_started``, its first record: attempts after the first begin with an
   accepted ``run_resumed``. (Events under an id that was never started, as a library user
   may append, are not a run's history: no other rule judges them.)
2. After the run ended (``run_completed``, ``run_failed``, ``run_cancelled``) and until an
   accepted ``run_resumed``, only ``heartbeat``, ``writer_stats``, ``run_resumed``,
   ``run_stale`` and ``approval`` follow (a heartbeat thread may outlive the end by one beat;
   a refused resume is recorded as a blocked one).
3. An accepted ``run_resumed`` gives the next attempt: one more than the run's current one.
4. Stage events (``stage_*``, ``output``, ``output_truncated``, ``error``,
   ``child_run_linked``) name a stage of the run's plan: index 1 to the number of stages.
"""

from __future__ import annotations

from . import events as ev
from .errors import HistoryViolation
from .events import JOURNAL_RUN, Record

ENDS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)
AFTER_END = (ev.Heartbeat, ev.WriterStats, ev.RunResumed, ev.RunStale, ev.ApprovalRecorded)
STAGE_EVENTS = (
    ev.StageStarted, ev.StageFinished, ev.StageFailed, ev.StageSkipped,
    ev.OutputChunk, ev.OutputTruncated, ev.ErrorRecorded, ev.ChildRunLinked,
)  # fmt: skip


def started_twice(run_id: str, run_seq: int) -> HistoryViolation:
    """The writer's error for a ``run_started`` appended to a run that has events (rule 1)."""
    return HistoryViolation(
        f"run {run_id} already has {run_seq - 1} event(s): a run is started once (a later attempt "
        "begins with a run_resumed); nothing was written"
    )


class History:
    """Follows every run through its records in commit order; ``violation`` says which rule a
    record breaks. Keeps a few integers per run."""

    def __init__(self) -> None:
        #: run id -> [stages in the plan (-1: unknown), attempt, ended (0 or 1)]
        self._runs: dict[str, list[int]] = {}

    def forget(self) -> None:
        """Judge no run known so far any more: records of theirs were lost (a region set aside)."""
        for state in self._runs.values():
            state[0] = -1

    def violation(self, rec: Record) -> str | None:
        if rec.run_id == JOURNAL_RUN:
            return None
        event = rec.event
        state = self._runs.get(rec.run_id)
        if state is None:
            if type(event) is ev.RunStarted:
                self._runs[rec.run_id] = [len(event.stages), event.attempt, 0]
            else:
                self._runs[rec.run_id] = [-1, 1, 0]  # not started (yet): no plan to judge stages by
            return None
        if type(event) is ev.RunStarted:
            if state[0] < 0:
                return f"run_started for run {rec.run_id} after other events of it"
            return f"a second run_started for run {rec.run_id}"
        stages, attempt, ended = state
        if stages < 0:
            return None
        if ended and not isinstance(event, AFTER_END):
            return f"{_tag(event)} after run {rec.run_id} ended, with no accepted resume"
        if isinstance(event, ENDS):
            state[2] = 1
        elif type(event) is ev.RunResumed and event.outcome == "accepted":
            state[2] = 0
            state[1] = event.attempt or attempt + 1
            if event.attempt and event.attempt != attempt + 1:
                return f"run {rec.run_id} resumed as attempt {event.attempt} after attempt {attempt}"
        elif isinstance(event, STAGE_EVENTS) and not 1 <= event.index <= stages:
            return f"{_tag(event)} names stage {event.index} of run {rec.run_id}, whose plan has {stages}"
        return None


def _tag(event: ev.Event) -> str:
    return type(event).__struct_config__.tag
