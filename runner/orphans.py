"""What a dead runner may have left running: the process groups of its unfinished stages.

A runner killed mid-stage (SIGKILL, OOM killer) cannot end its stage: the stage's shell runs
on in its own session, orphaned. Each ``stage_started`` event names the stage's process group
(``pgid``) and when its leader started (``pgid_start``); the run's ``run_started`` or accepted
``run_resumed`` names the host and the runner process. From these a resume finds every stage of
the run (and of the child runs it started for sub-pipelines) that started and never ended, and
on this host stops what is left of it before it runs anything again (``Runner.resume``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runjournal.journal import Record
from runjournal.journal import events as ev


@dataclass(frozen=True)
class StageGroup:
    """The process group of a stage that started and never ended."""

    run_id: str
    index: int
    stage_id: str
    attempt: int
    pgid: int
    start: int  # the group leader's start time, clock ticks since boot
    host: str
    #: the runner that started the stage: pid, host, start time (``runner_alive``'s arguments)
    runner: tuple[int, str, int]


def unfinished_groups(records: Iterable[Record], run_id: str) -> list[StageGroup]:
    """The stages of run ``run_id``, and of its child runs, that started a process group and
    have no end event after it, in the order they started. One pass over the task's records;
    only the run and its children are kept."""
    tracked = {run_id}
    runner: dict[str, tuple[int, str, int]] = {}
    attempt: dict[str, int] = {}
    open_: dict[tuple[str, int], StageGroup] = {}
    for rec in records:
        rid, e = rec.run_id, rec.event
        if rid not in tracked:
            if not (isinstance(e, ev.RunStarted) and e.parent_run_id in tracked):
                continue
            tracked.add(rid)  # a child run: its stages are this run's too
        if isinstance(e, ev.RunStarted):
            runner[rid], attempt[rid] = (e.runner_pid, e.runner_host, e.runner_start), e.attempt
        elif isinstance(e, ev.RunResumed) and e.outcome == "accepted":
            runner[rid], attempt[rid] = (e.runner_pid, e.runner_host, e.runner_start), e.attempt or attempt.get(rid, 1) + 1
        elif isinstance(e, ev.StageStarted):
            open_.pop((rid, e.index), None)
            pid, host, start = runner.get(rid, (0, "", 0))
            if e.pgid:
                open_[(rid, e.index)] = StageGroup(rid, e.index, e.stage_id, attempt.get(rid, 1), e.pgid, e.pgid_start, host, (pid, host, start))
        elif isinstance(e, (ev.StageFinished, ev.StageFailed, ev.StageSkipped)):
            open_.pop((rid, e.index), None)
        elif isinstance(e, ev.ChildRunLinked):
            tracked.add(e.child_run_id)
    return list(open_.values())


def describe(group: StageGroup, run_id: str) -> str:
    """``stage two (attempt 1)``, or ``stage build of child run <id>`` for a child run's stage."""
    where = "" if group.run_id == run_id else f" of child run {group.run_id}"
    return f"stage {group.stage_id}{where} (attempt {group.attempt})"
