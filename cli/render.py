"""One-line descriptions of records for `tail` and `replay`."""

from __future__ import annotations

from runjournal.journal import iso_utc
from runjournal.journal import events as ev
from runjournal.journal.events import Record
from runjournal.journal.text import for_terminal


def describe(event: ev.Event) -> str:
    e = event
    if isinstance(e, ev.RunStarted):
        return f"run started: pipeline {e.pipeline_id} attempt {e.attempt}" + (f" (parent {e.parent_run_id})" if e.parent_run_id else "")
    if isinstance(e, ev.StageStarted):
        return f"stage {e.index} {e.stage_id} started"
    if isinstance(e, ev.StageFinished):
        return f"stage {e.index} {e.stage_id} succeeded (exit {e.exit_code})"
    if isinstance(e, ev.StageFailed):
        how = f"exit {e.exit_code}" if e.exit_code is not None else f"signal {e.signal}"
        return f"stage {e.index} {e.stage_id} failed ({how})"
    if isinstance(e, ev.StageSkipped):
        return f"stage {e.index} {e.stage_id} skipped: {e.reason}"
    if isinstance(e, ev.CancelRequested):
        return f"cancel requested by {e.actor}" + (f": {e.reason}" if e.reason else "")
    if isinstance(e, ev.OutputChunk):
        text = e.data.decode("utf-8", "replace").rstrip("\n").replace("\n", " | ")
        return f"stage {e.index} {e.stream}: {text[:100]}"
    if isinstance(e, ev.OutputTruncated):
        return f"stage {e.index} {e.stream}: {e.dropped_bytes} of {e.total_bytes} bytes left out"
    if isinstance(e, ev.Heartbeat):
        return "heartbeat"
    if isinstance(e, ev.ErrorRecorded):
        return f"error in stage {e.index} {e.stage_id}: {e.reason}"
    if isinstance(e, ev.RunCompleted):
        return "run succeeded"
    if isinstance(e, ev.RunFailed):
        return f"run failed: {e.reason}"
    if isinstance(e, ev.RunCancelled):
        return f"run cancelled: {e.reason}"
    if isinstance(e, ev.RunResumed):
        return f"resume {e.outcome} by {e.actor}: {e.reason}"
    if isinstance(e, ev.ChildRunLinked):
        return f"stage {e.index} {e.stage_id} started child run {e.child_run_id}"
    if isinstance(e, ev.ApprovalRecorded):
        return f"approved by {e.actor}"
    if isinstance(e, ev.WriterStats):
        return f"writer stats: {e.lock_retries} lock retries, {e.spills} spills, {e.heartbeats_failed} heartbeats failed"
    if isinstance(e, ev.RunStale):
        return f"run presumed dead: no heartbeat since {iso_utc(e.last_heartbeat_ts)} ({e.observer})"
    if isinstance(e, ev.RegionQuarantined):
        lost = e.next_seq - e.first_lost_seq
        return f"damaged region set aside: {e.bytes_set_aside} bytes of {e.segment} at byte {e.offset}, {lost} record(s) lost ({e.detail})"
    if isinstance(e, ev.TailRepaired):
        return f"torn tail cut: {e.bytes_cut} bytes of {e.segment} at byte {e.offset}"
    return type(e).__name__


def record_line(rec: Record) -> str:
    """One line of `tail`, safe for a terminal whatever the record holds."""
    run = rec.run_id or "(journal)"
    return for_terminal(f"{rec.seq:>8}  {iso_utc(rec.ts)}  {run}  #{rec.run_seq:<4} {describe(rec.event)}")
