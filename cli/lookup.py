"""Which task a command works on: the one task rule, in one place.

A run is (task, run id). A command given a run id and no task (``--task``, ``$RUNJOURNAL_TASK``,
``$MCP_RUNNER_TASK_ID``) looks for it in every task and works on the one task that holds it;
a run id in several tasks is refused, asking for ``--task`` and naming them; a run id in none
is bad input. A command on a task's journal without a run id works on the chosen task, else
``default``, and names the tasks that have a journal when that one has none. Every such error
is exit 2 (``EXIT_CODES`` in ``cli.main``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from runjournal.journal import CorruptRecord, JournalNotFound, validate_run_id
from runjournal.projections import AmbiguousRun, RunNotFound
from runjournal.projections.replay import first_record

from .output import echo

if TYPE_CHECKING:
    from runjournal.projections import Projector, TaskState

__all__ = ["chosen_task", "journal_task", "journal_tasks", "no_journal", "require_journal", "run_task", "viewed"]


def chosen_task(settings, task: str | None) -> str | None:
    """--task, else the environment's task (validated); None when neither names one."""
    if task is not None or os.environ.get("RUNJOURNAL_TASK") or os.environ.get("MCP_RUNNER_TASK_ID"):
        return settings.task(task)
    return None


def require_journal(settings, task: str) -> str:
    """``task`` if it has a journal; JournalNotFound naming the tasks that have one if not."""
    if not settings.store.exists(task):
        raise JournalNotFound(no_journal(settings, task))
    return task


def no_journal(settings, task: str) -> str:
    """That ``task`` has no journal, and which tasks have one."""
    tasks = settings.store.tasks()
    there = f"tasks with a journal: {', '.join(tasks)} (choose one with --task)" if tasks else "no task has a journal there yet"
    return f"no journal for task {task} at {settings.store.where(task)}; {there}"


def journal_task(settings, task: str | None) -> str:
    """The task a command without a run id works on (--task > environment > default), which must have a journal."""
    return require_journal(settings, settings.task(task))


def journal_tasks(settings, given: str | Sequence[str] | None) -> list[str]:
    """The chosen tasks (``--task``, once or repeated, else the environment's; each must have a
    journal), else every task that has one."""
    if given is None or isinstance(given, str):
        chosen = chosen_task(settings, given)
        return settings.store.tasks() if chosen is None else [require_journal(settings, chosen)]
    if not given:
        return journal_tasks(settings, None)
    return list(dict.fromkeys(require_journal(settings, settings.task(t)) for t in given))


def viewed(settings, task: str) -> tuple[Projector, TaskState]:
    """The task's projector, for its paths, and its state as of the journal's end (read-only)."""
    from runjournal.projections import Projector  # the projector only where a command reads runs

    projector = Projector(settings.runs_dir, settings.out_dir, task, store=settings.store, roots=settings.layout.roots)
    return projector, projector.view()


def holds_run(settings, run_id: str, firsts: dict | None = None) -> Callable[[str], bool]:
    """Whether a task holds the run: archived, or with a first live record, sought near the time
    in its id (``replay.first_record``); that record kept in ``firsts`` (task -> record or None)."""
    store = settings.store
    firsts = {} if firsts is None else firsts

    def holds(task: str) -> bool:
        if run_id in store.archived_runs(task):
            return True
        rec = firsts[task] = first_record(store, task, run_id)
        return rec is not None

    return holds


def run_task(settings, run_id: str, task: str | None, holds: Callable[[str], bool] | None = None) -> str:
    """The task that holds run ``run_id``: the chosen one, else the one task of all that holds it.

    ``holds(task)`` says whether a task holds the run (default: its journal has a record of
    it). RunNotFound if no task holds it, AmbiguousRun if several do and none was chosen. A
    task that cannot be read (damage) does not hide the run in the others: it is a warning,
    or the error itself if the run is found nowhere.
    """
    validate_run_id(run_id)
    holds = holds or holds_run(settings, run_id)
    chosen = chosen_task(settings, task)
    if chosen is not None:
        require_journal(settings, chosen)
        if not holds(chosen):
            raise RunNotFound(f"no run {run_id} in task {chosen} (`runjournal runs --task {chosen}` lists its runs)")
        return chosen
    found, unreadable = [], []
    for t in settings.store.tasks():
        try:
            if holds(t):
                found.append(t)
        except (CorruptRecord, OSError) as e:
            unreadable.append((t, e))
    if len(found) > 1:
        raise AmbiguousRun(run_id, found)
    if unreadable and not found:
        raise unreadable[0][1]
    for t, e in unreadable:
        echo(f"warning: task {t} could not be searched for run {run_id}: {e}", err=True)
    if not found:
        where = settings.store.url if settings.store_url else settings.runs_dir
        raise RunNotFound(f"no run {run_id} in any task under {where} (`runjournal runs` lists the runs)")
    return found[0]
