"""Determinism: incremental projection, in any batches and across restarts, equals a rebuild byte for byte."""

from __future__ import annotations

import tempfile
from pathlib import Path

from helpers.histories import SECOND, T0, RunScript, make_run_id
from helpers.trees import copy_journal, diff, projection_tree
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import events as ev
from runjournal.journal.writer import Item, Journal
from runjournal.projections import Projector

#: gaps between a run's events, in seconds: around the 30 s heartbeat throttle and stale limit
gaps = st.sampled_from([0.001, 0.2, 1.0, 5.0, 29.999, 30.0, 31.0, 45.0, 120.0])
output_chunks = st.lists(st.binary(max_size=40), max_size=3)
stage_outcomes = st.sampled_from(["succeeded", "failed", "allowed", "running"])
run_endings = st.sampled_from(["completed", "failed", "cancelled", "unfinished", "stale"])


@st.composite
def stage_histories(draw, script: RunScript, index: int) -> str:
    """One stage of a run: start, output, heartbeats, an end (or none); returns how it ended."""
    script.start_stage(index, draw(gaps))
    for chunk in draw(output_chunks):
        script.output(index, chunk, draw(st.sampled_from(["stdout", "stderr"])), draw(gaps))
    if draw(st.booleans()):
        script.add(
            ev.OutputTruncated(index=index, stream="stdout", total_bytes=200_000, kept_head_bytes=65_536, kept_tail_bytes=4096, dropped_bytes=130_368, tail=b"...the end\n"),
            draw(gaps),
        )
    for _ in range(draw(st.integers(0, 3))):
        script.heartbeat(draw(gaps))
    outcome = draw(stage_outcomes)
    if outcome == "succeeded":
        script.finish_stage(index, gap=draw(gaps))
    elif outcome == "failed":
        script.fail_stage(index, exit_code=draw(st.integers(1, 255)), stderr=draw(st.text(max_size=30)), gap=draw(gaps))
    elif outcome == "allowed":
        script.add(ev.StageSkipped(index=index, stage_id=script.stage_id(index), reason="failure allowed", exit_code=3), draw(gaps))
    return outcome


@st.composite
def run_histories(draw, n: int, start_ts: int, parent: RunScript | None = None) -> list[RunScript]:
    """A run (and maybe a child run it starts), from start to any ending, maybe resumed once."""
    stages = draw(st.integers(1, 3))
    with_child = parent is None and draw(st.booleans())
    kinds = ["command"] * stages
    if with_child:
        kinds[-1] = "subpipeline"
    script = RunScript(make_run_id(n, start_ts), start_ts=start_ts, stages=stages, kinds=kinds, parent=parent.run_id if parent else None)
    scripts = [script]
    succeeded: set[int] = set()
    for attempt in (1, 2):
        ended_early = False
        for index in range(1, stages + 1):
            if index in succeeded:
                script.skip_stage(index)
                continue
            if kinds[index - 1] == "subpipeline" and attempt == 1:
                script.start_stage(index, draw(gaps))
                child = draw(run_histories(n + 100, script.ts + SECOND, parent=script))[0]
                script.link_child(index, child.run_id)
                scripts.append(child)
                script.finish_stage(index, gap=draw(gaps))
                succeeded.add(index)
                continue
            outcome = draw(stage_histories(script, index))
            if outcome == "succeeded":
                succeeded.add(index)
            if outcome in ("failed", "running"):
                ended_early = True
                break
        ending = draw(run_endings)
        if ending == "completed" and not ended_early:
            script.complete(draw(gaps))
        elif ending == "failed":
            script.fail(gap=draw(gaps))
        elif ending == "cancelled":
            script.cancel(draw(gaps))
        elif ending == "stale":
            script.stale(draw(gaps))
        else:
            if draw(st.booleans()):
                script.add(ev.WriterStats(lock_retries=draw(st.integers(0, 5)), spills=draw(st.integers(0, 1)), heartbeats_written=7), draw(gaps))
            break  # unfinished: nothing more happens to it
        if attempt == 2 or ending == "completed" or not draw(st.booleans()):
            break
        outcome = draw(st.sampled_from(["accepted", "blocked"]))
        script.resume(outcome, draw(gaps))
        if outcome == "blocked":
            break
    return scripts


@st.composite
def interleaved_journals(draw) -> list[Item]:
    """Several runs' events in one commit order, as concurrent runners would append them."""
    scripts: list[RunScript] = []
    for n in range(draw(st.integers(1, 4))):
        scripts.extend(draw(run_histories(n + 1, T0 + n * draw(st.integers(0, 40)) * SECOND)))
    queues = [list(s.items) for s in scripts]
    order: list[Item] = []
    while any(queues):
        live = [q for q in queues if q]
        queue = live[draw(st.integers(0, len(live) - 1))]
        order.append(queue.pop(0))
    return order


# what happens after each appended batch: nothing, a catch-up, or a new projector then a catch-up
steps = st.sampled_from(["none", "catch_up", "restart"])
batch_plans = st.lists(st.tuples(st.integers(1, 12), steps), min_size=1, max_size=40)


@given(items=interleaved_journals(), plan=batch_plans)
def test_incremental_projection_equals_rebuild(items, plan):
    with tempfile.TemporaryDirectory() as tmp:
        live, fresh = Path(tmp) / "live", Path(tmp) / "fresh"
        journal_dir = live / ".runs" / "default" / "journal"
        projector = Projector(str(live / ".runs"), str(live / "out"), "default", sync=False)
        at = 0
        with Journal(str(journal_dir), durability="none") as journal:
            for size, step in plan * (1 + len(items) // max(1, sum(s for s, _ in plan))):
                if at >= len(items):
                    break
                journal.append_batch(items[at : at + size])
                at += size
                if step == "restart":
                    projector = Projector(str(live / ".runs"), str(live / "out"), "default", sync=False)
                if step != "none":
                    projector.catch_up(wait=5.0)
        Projector(str(live / ".runs"), str(live / "out"), "default", sync=False).catch_up(wait=5.0)

        copy_journal(live, fresh)
        Projector(str(fresh / ".runs"), str(fresh / "out"), "default", sync=False).rebuild()

        incremental, rebuilt = projection_tree(live), projection_tree(fresh)
        assert incremental == rebuilt, diff(incremental, rebuilt)
        assert any(p.endswith("manifest.json") for p in rebuilt)


def test_one_record_at_a_time_equals_rebuild(tmp_path):
    """The finest batching there is, on a fixed history with every kind of event."""
    from helpers.histories import interleave, lifecycle

    a = lifecycle(make_run_id(1))
    b = RunScript(make_run_id(2), start_ts=T0 + SECOND, stages=2).stage(1).fail_stage(2).fail().resume(gap=40).skip_stage(1)
    b.stage(2).complete()
    c = RunScript(make_run_id(3), start_ts=T0 + 2 * SECOND)
    c.start_stage(1)
    for _ in range(20):
        c.heartbeat(7.0)
    c.stale(90)
    items = interleave([a, b, c])
    live, fresh = tmp_path / "live", tmp_path / "fresh"
    with Journal(str(live / ".runs" / "default" / "journal"), durability="none") as journal:
        for it in items:
            journal.append_batch([it])
            Projector(str(live / ".runs"), str(live / "out"), "default", sync=False).catch_up()
    copy_journal(live, fresh)
    Projector(str(fresh / ".runs"), str(fresh / "out"), "default", sync=False).rebuild()
    incremental, rebuilt = projection_tree(live), projection_tree(fresh)
    assert incremental == rebuilt, diff(incremental, rebuilt)
