"""Retention: which ended runs leave the live journal (``archive``) and which archived runs are
deleted for good (``prune``), by the same selectors; the store moves and deletes
(``EventStore.archive``, ``prune_archive``).

Archiving appends one ``runs_archived`` record first (what the projections need of every
archived run: ``state.Snapshot``), then asks the store to move the oldest units of records that
hold nothing else. Pruning deletes archived units whose runs are all selected, then records
that those runs are gone, then removes their projection directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec

from runjournal.journal import EventStore, InvalidId, JournalError, validate_run_id
from runjournal.journal import events as ev
from runjournal.journal.events import JOURNAL_RUN
from runjournal.journal.fsutil import Below

from .rebuild import remove
from .render import Paths
from .state import Run, Snapshot, TaskState, WriterTotals, read_snapshot, snapshot

ENDED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Selection:
    """Which runs: ``before`` and ``older_than`` (ns since the epoch) by the time a run ended,
    ``keep_last`` all but the newest N by start; every one given must hold."""

    before: int | None = None
    keep_last: int | None = None
    older_than: int | None = None

    def __bool__(self) -> bool:
        return not (self.before is None and self.keep_last is None and self.older_than is None)

    def pick(self, runs: list[Run]) -> list[Run]:
        """The runs chosen, oldest first."""
        picked = sorted(runs, key=lambda r: (r.started_ts, r.run_id))
        if self.keep_last is not None:
            picked = picked[: max(0, len(picked) - self.keep_last)]
        for limit in (self.before, self.older_than):
            if limit is not None:
                picked = [r for r in picked if (r.completed_ts or 0) < limit]
        return picked


class Fold:
    """The live journal folded as a rebuild folds it, with what an archive needs besides: each
    run's share of the writer totals, its last sequence, the last snapshot, the runs it holds."""

    def __init__(self, store: EventStore, task: str):
        self.state = TaskState(task_id=task)
        self.writers: dict[str, WriterTotals] = {}
        self.run_seqs: dict[str, int] = {}
        self.earlier: Snapshot | None = None
        self.snapshot_seq = 0  # the last runs_archived record
        for rec in store.records(task):
            self.state.apply(rec)
            self.run_seqs[rec.run_id] = rec.run_seq
            event = rec.event
            if type(event) is ev.WriterStats:
                self.writers.setdefault(rec.run_id, WriterTotals()).add(event)
            elif type(event) is ev.RunsArchived:
                try:
                    self.earlier = read_snapshot(event.state)
                except (msgspec.DecodeError, msgspec.ValidationError) as e:  # the next snapshot would lose what it held
                    raise JournalError(
                        f"the runs_archived record of sequence {rec.seq} in {store.where(task)} does not read back ({e}): archive and prune stop here"
                    ) from None
                self.snapshot_seq = rec.seq
            elif type(event) in (ev.RunCompleted, ev.RunFailed, ev.RunCancelled):
                ended = self.state.runs.get(rec.run_id)
                for cmd in ended.commands if ended is not None else ():
                    cmd.log = []  # the fold renders nothing: an ended run's output leaves memory
            if len(self.state.dirty_commands) > 1024:
                self.state.dirty_commands = set()


def archivable(state: TaskState) -> list[Run]:
    """Runs that may be archived: ended, not already archived, not stale, and not the newest
    run of their pipeline when it failed or was cancelled (`resume` would continue that one)."""
    newest: dict[str, Run] = {}
    for run in state.runs.values():
        if run.parent_run_id is None:
            top = newest.get(run.pipeline_id)
            if top is None or (run.started_ts, run.run_id) > (top.started_ts, top.run_id):
                newest[run.pipeline_id] = run
    resumable = {r.run_id for r in newest.values() if r.status in ("failed", "cancelled")}
    return [
        r
        for r in state.runs.values()
        if r.status in ENDED and r.completed_ts is not None and r.stale_since_ts is None and r.run_id not in state.archived and r.run_id not in resumable
    ]


def archive(store: EventStore, task: str, selection: Selection, dry_run: bool = False) -> dict:
    """Archive the task's runs ``selection`` picks; what was (or would be) done, as a document."""
    fold = Fold(store, task)
    picked = selection.pick(archivable(fold.state))
    doc = {"task_id": task, "runs": [r.run_id for r in picked], "dry_run": dry_run, "units": [], "bytes": 0, "stored_bytes": 0}
    if dry_run:
        return doc
    everything = {**fold.state.archived, **{r.run_id: fold.writers.get(r.run_id, WriterTotals()) for r in picked}}
    covered = fold.snapshot_seq
    if picked:
        state = snapshot(fold.state, everything, fold.earlier)
        # none raced a resume or cancel, and no other archive or prune recorded meanwhile (its
        # runs would be missing from this snapshot): SequenceConflict, nothing changed
        expected = {r.run_id: fold.run_seqs.get(r.run_id, 0) for r in picked} | {JOURNAL_RUN: fold.run_seqs.get(JOURNAL_RUN, 0)}
        covered = store.record(task, ev.RunsArchived(runs=tuple(sorted(everything)), state=state), expected).seq
    # (with nothing new picked: what an earlier archive left to move, or left half moved)
    moved = store.archive(task, covered, set(everything))
    doc.update(snapshot_seq=covered, units=[u.name for u in moved], bytes=sum(u.bytes for u in moved), stored_bytes=sum(u.stored_bytes for u in moved))
    return doc


def prune(store: EventStore, task: str, selection: Selection, paths: Paths, dry_run: bool = False) -> dict:
    """Delete the task's archived runs ``selection`` picks, with their projection directories.
    A run goes only with every unit it has records in, a unit only with every run in it."""
    fold = Fold(store, task)
    units = [u for u in store.archive_units(task) if not u.pruned]
    archived = [r for r in fold.state.runs.values() if r.run_id in fold.state.archived]
    picked = {r.run_id for r in selection.pick(archived)} - set(fold.run_seqs)  # none with live records
    while True:  # drop runs that share a unit with one that stays, until nothing changes
        staying = {run for u in units if not set(u.runs) <= picked | {""} for run in u.runs}
        if not staying & picked:
            break
        picked -= staying
    going = [u for u in units if set(u.runs) <= picked | {""} and set(u.runs) & picked]
    held = {run for u in units for run in u.runs}
    picked = {run for u in going for run in u.runs if run} | {r for r in picked if r not in held}
    doc = {"task_id": task, "runs": sorted(picked), "dry_run": dry_run, "units": [u.name for u in going], "bytes": sum(u.stored_bytes for u in going)}
    if dry_run or not picked:
        return doc
    store.prune_archive(task, {u.name for u in going})
    remaining = {rid: w for rid, w in fold.state.archived.items() if rid not in picked}
    state = snapshot(fold.state, remaining, fold.earlier)
    gone = ev.RunsArchived(runs=tuple(sorted(remaining)), state=state, pruned=tuple(sorted(picked)))
    rec = store.record(task, gone, {JOURNAL_RUN: fold.run_seqs.get(JOURNAL_RUN, 0)})
    _remove_run_dirs(paths, sorted(picked))
    doc["snapshot_seq"] = rec.seq
    return doc


def _remove_run_dirs(paths: Paths, run_ids: list[str]) -> None:
    """The pruned runs' projection directories, through descriptors: nothing below the runs
    dir is followed through a link, and an id that is not a valid run id names nothing."""
    with Below(paths.runs_dir) as below:
        try:
            cli = below.dir(os.path.join(paths.task_dir, "cli"), create=False)
        except OSError:  # a link or a file where the task's cli/ should be: nothing of ours to remove
            return
        if cli is None:
            return
        for run_id in run_ids:
            try:
                validate_run_id(run_id)
            except InvalidId:
                continue
            remove(run_id, cli)
