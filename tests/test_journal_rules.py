"""The rules of a run's history (journal/rules.py): verify reports every record that breaks
one, with its sequence; the writer refuses the append it can judge (a second run_started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runjournal.journal import HistoryViolation, Journal, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal import spill
from runjournal.journal.events import Record, encoder
from runjournal.journal.spill import PENDING_DIR

PLAN = (ev.StagePlan(id="build", title="Build", command="make"), ev.StagePlan(id="test", title="Test", command="make test"))
A, B, C, D, E = (f"2025-12-01T09-37-11-576Z-0000000{n}" for n in range(1, 6))
T0 = 1_764_581_831_576_000_000


def written(directory: Path, history: list[tuple[str, ev.Event]]) -> None:
    """A journal holding ``history`` as it is, as a hand-made or damaged one would: one batch
    per record, in a segment written directly (the writer would refuse some of these)."""
    directory.mkdir(parents=True)
    run_seqs: dict[str, int] = {}
    records = []
    for seq, (run_id, event) in enumerate(history, 1):
        run_seqs[run_id] = run_seqs.get(run_id, 0) + 1
        records.append(Record(seq, run_id, run_seqs[run_id], T0 + seq, event))
    data = fmt.encode_header(1, 1) + b"".join(fmt.encode_batch([encoder.encode(r)]) for r in records)
    (directory / fmt.segment_name(1)).write_bytes(data)


def test_verify_reports_each_broken_rule_with_its_sequence(tmp_path: Path):
    d = tmp_path / "journal"
    written(d, [
        (A, ev.RunStarted(task_id="t", pipeline_id="p", stages=PLAN)),         # 1
        (A, ev.StageStarted(index=1, stage_id="build")),                        # 2
        (A, ev.RunCompleted()),                                                 # 3
        (A, ev.Heartbeat()),                                                    # 4: a last beat: fine
        (A, ev.StageStarted(index=2, stage_id="test")),                         # 5: after the end
        (A, ev.RunStarted(task_id="t", pipeline_id="p", stages=PLAN)),          # 6: started twice
        (B, ev.RunStarted(task_id="t", pipeline_id="p", stages=PLAN[:1])),      # 7
        (B, ev.OutputChunk(index=2, stream="stdout", data=b"x")),               # 8: no stage 2
        (C, ev.RunStarted(task_id="t", pipeline_id="p", stages=PLAN)),          # 9
        (C, ev.RunFailed(reason="boom")),                                       # 10
        (C, ev.RunResumed(actor="me", reason="r", outcome="blocked")),          # 11: fine
        (C, ev.RunResumed(actor="me", reason="r", outcome="accepted", attempt=3)),  # 12: skips 2
        (C, ev.StageStarted(index=1, stage_id="build")),                        # 13: fine again
        (D, ev.Heartbeat()),                                                    # 14: never started: not judged
        (D, ev.RunCompleted()),                                                 # 15
        (D, ev.RunCompleted()),                                                 # 16
        (E, ev.Heartbeat()),                                                    # 17
        (E, ev.RunStarted(task_id="t", pipeline_id="p")),                       # 18: started late
    ])  # fmt: skip
    report = check(str(d))
    assert [(p.kind, p.detail) for p in report.problems] == [
        ("history", f"sequence 5: stage_started after run {A} ended, with no accepted resume"),
        ("history", f"sequence 6: a second run_started for run {A}"),
        ("history", f"sequence 8: output names stage 2 of run {B}, whose plan has 1"),
        ("history", f"sequence 12: run {C} resumed as attempt 3 after attempt 1"),
        ("history", f"sequence 18: run_started for run {E} after other events of it"),
    ]
    assert {p.segment for p in report.problems} == {fmt.segment_name(1)}
    assert report.records == 18


def test_the_writer_refuses_a_second_run_started_and_writes_nothing(tmp_path: Path):
    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as j:
        j.append(A, ev.RunStarted(task_id="t", pipeline_id="p"))
        j.append(A, ev.RunCompleted())
        with pytest.raises(HistoryViolation, match=rf"^run {A} already has 2 event\(s\): a run is started once"):
            j.append(A, ev.RunStarted(task_id="t", pipeline_id="p"))
        with pytest.raises(HistoryViolation):
            j.append_batch([(B, ev.RunStarted(task_id="t", pipeline_id="p")), (B, ev.RunStarted(task_id="t", pipeline_id="p"))])
        j.append(E, ev.Heartbeat())
        with pytest.raises(HistoryViolation):
            j.append(E, ev.RunStarted(task_id="t", pipeline_id="p"))
    assert [(r.run_id, type(r.event)) for r in read_records(str(d))] == [(A, ev.RunStarted), (A, ev.RunCompleted), (E, ev.Heartbeat)]
    assert check(str(d)).ok


def test_a_spill_that_breaks_a_rule_is_set_aside_not_merged(tmp_path: Path):
    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as j:
        j.append(A, ev.RunStarted(task_id="t", pipeline_id="p"))
    spill.write(str(d), "01795726964628116759-17522-000001.rjp", spill.encode([(A, ev.RunStarted(task_id="t", pipeline_id="p"), T0)]))
    with Journal(str(d), durability="none") as j:
        j.flush()  # merges what is pending
        j.append(A, ev.Heartbeat())  # the journal goes on
    assert os.listdir(d / PENDING_DIR) == ["01795726964628116759-17522-000001.rjp.refused"]
    assert [type(r.event) for r in read_records(str(d))] == [ev.RunStarted, ev.Heartbeat]
    assert [p.kind for p in check(str(d)).problems] == ["refused-spill"]


def test_an_import_whose_history_breaks_a_rule_is_refused_whole(tmp_path: Path):
    from helpers.runner_support import cli

    from runjournal.journal.transfer import to_json_line

    lines = [
        Record(1, A, 1, T0, ev.RunStarted(task_id="t", pipeline_id="p", stages=PLAN)),
        Record(2, A, 2, T0 + 1, ev.StageStarted(index=1, stage_id="build")),
        Record(3, A, 3, T0 + 2, ev.OutputChunk(index=9, stream="stdout", data=b"x")),
    ]
    (tmp_path / "runs.jsonl").write_bytes(b"".join(to_json_line(r) for r in lines))
    done = cli(tmp_path, "import", str(tmp_path / "runs.jsonl"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: {tmp_path / 'runs.jsonl'}:3: output names stage 9 of run {A}, whose plan has 2 (a rule of a run's history); nothing was imported\n"
    assert not (tmp_path / ".runs" / "default" / "journal").exists() or not list(read_records(str(tmp_path / ".runs" / "default" / "journal")))
