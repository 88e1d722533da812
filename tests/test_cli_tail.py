"""`runjournal tail [--run ID] [--since SEQ] [--format json] [-f]` (contract section 5)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from helpers import DEADLINE, assert_one_error_line, clean_env
from helpers.records import linked_batch

from runjournal.journal import Item, Journal
from runjournal.journal import events as ev
from runjournal.journal import format as fmt

RUN_A = "2025-12-01T09-37-11-576Z-1a60ebea"
RUN_B = "2025-12-01T09-40-02-100Z-7c2e91d0"
TS = 1764581831576000000  # 2025-12-01T09:37:11.576Z
MS = 1_000_000


def make_journal(directory: Path) -> None:
    with Journal(str(directory), durability="none") as j:
        j.append_batch(
            [
                Item(RUN_A, ev.RunStarted(task_id="default", pipeline_id="ci"), TS),
                Item(RUN_A, ev.StageStarted(index=1, stage_id="build"), TS + 5 * MS),
                Item(RUN_B, ev.RunStarted(task_id="default", pipeline_id="docs", attempt=2), TS + 7 * MS),
                Item(RUN_A, ev.OutputChunk(index=1, stream="stdout", data=b"compiling\nlinking\n"), TS + 9 * MS),
                Item(RUN_A, ev.StageFailed(index=1, stage_id="build", exit_code=2), TS + 1000 * MS),
            ]
        )


LINES = [
    f"       1  2025-12-01T09:37:11.576Z  {RUN_A}  #1    run started: pipeline ci attempt 1",
    f"       2  2025-12-01T09:37:11.581Z  {RUN_A}  #2    stage 1 build started",
    f"       3  2025-12-01T09:37:11.583Z  {RUN_B}  #1    run started: pipeline docs attempt 2",
    f"       4  2025-12-01T09:37:11.585Z  {RUN_A}  #3    stage 1 stdout: compiling | linking",
    f"       5  2025-12-01T09:37:12.576Z  {RUN_A}  #4    stage 1 build failed (exit 2)",
]


def test_text(run_cli, task_journal):
    make_journal(task_journal())
    assert run_cli("tail") == (0, "\n".join(LINES) + "\n", "")


def test_one_run_from_a_sequence_on(run_cli, task_journal):
    make_journal(task_journal("nightly"))
    assert run_cli("tail", "--task", "nightly", "--run", RUN_A) == (0, "\n".join(LINES[i] for i in (0, 1, 3, 4)) + "\n", "")
    assert run_cli("tail", "--task", "nightly", "--since", "3") == (0, "\n".join(LINES[2:]) + "\n", "")


def test_json_is_one_array(run_cli, task_journal):
    make_journal(task_journal())
    code, out, err = run_cli("tail", "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert [(o["seq"], o["run_id"], o["run_seq"], o["event"]["type"]) for o in doc] == [
        (1, RUN_A, 1, "run_started"),
        (2, RUN_A, 2, "stage_started"),
        (3, RUN_B, 1, "run_started"),
        (4, RUN_A, 3, "output"),
        (5, RUN_A, 4, "stage_failed"),
    ]
    assert doc[0]["ts"] == TS and doc[0]["time"] == "2025-12-01T09:37:11.576Z"
    assert msgspec.json.decode(json.dumps(doc[3]["event"]), type=ev.OutputChunk).data == b"compiling\nlinking\n"


def test_json_of_an_empty_selection_is_an_empty_array(run_cli, task_journal):
    make_journal(task_journal())
    assert run_cli("tail", "--format", "json", "--since", "6") == (0, "[\n]\n", "")


def test_an_unknown_run_is_bad_input(run_cli, task_journal):
    make_journal(task_journal())
    code, out, err = run_cli("tail", "--run", "no-such-run")
    assert (code, out) == (2, "")
    assert err == f"error: no run no-such-run in any task under {task_journal().parent.parent} (`runjournal runs` lists the runs)\n"
    code, out, err = run_cli("tail", "--task", "default", "--run", "no-such-run", "-f")
    assert (code, out) == (2, "")
    assert err == "error: no run no-such-run in task default (`runjournal runs --task default` lists its runs)\n"


def test_a_run_is_found_in_the_one_task_that_holds_it(run_cli, task_journal):
    make_journal(task_journal("nightly"))
    assert run_cli("tail", "--run", RUN_B) == (0, LINES[2] + "\n", "")
    make_journal(task_journal("copy"))
    code, out, err = run_cli("tail", "--run", RUN_B)
    assert (code, out) == (2, "")
    assert err == f"error: run {RUN_B} is in several tasks: copy, nightly; choose one with --task\n"
    assert run_cli("tail", "--run", RUN_B, "--task", "copy") == (0, LINES[2] + "\n", "")


def test_follow_prints_what_is_appended_after_it_started(task_journal, tmp_path: Path):
    d = task_journal()
    make_journal(d)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runjournal", "--root", str(tmp_path), "tail", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=tmp_path,
    )
    try:
        lines = _read_lines(proc, 5)
        assert [line.decode() for line in lines] == LINES
        with Journal(str(d)) as j:
            j.append_batch([Item(RUN_B, ev.RunCompleted(), TS + 2000 * MS)])
        assert _read_lines(proc, 1) == [f"       6  2025-12-01T09:37:13.576Z  {RUN_B}  #2    run succeeded".encode()]
    finally:
        proc.terminate()
        proc.wait(DEADLINE)
        proc.stdout.close()
        proc.stderr.close()


def _read_lines(proc: subprocess.Popen, count: int) -> list[bytes]:
    """``count`` lines from the process's stdout, waiting at most DEADLINE for them."""
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + DEADLINE
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"tail -f printed {data!r}, not {count} lines, within {DEADLINE:.0f} s"
        chunk = os.read(fd, 65536)
        assert chunk, f"tail -f exited: {proc.stderr.read()!r}"
        data += chunk
    lines = data.split(b"\n")
    assert len(lines) == count + 1 and lines[-1] == b"", data
    return lines[:-1]


@pytest.mark.parametrize(
    ("run", "why"),
    [("../x", "must not contain '/'"), ("", "must not be empty"), ("a\nb", "control characters"), (".x", "must not start with '.'")],
)
def test_an_unsafe_run_id_is_rejected(run_cli, task_journal, run: str, why: str):
    make_journal(task_journal())
    code, out, err = run_cli("tail", "--run", run)
    assert (code, out) == (2, "")
    assert_one_error_line(err, "run id", why)


def test_no_journal(run_cli, task_journal):
    code, out, err = run_cli("tail", "--task", "nothing-here")
    assert (code, out) == (2, "")
    assert err == f"error: no journal for task nothing-here at {task_journal('nothing-here')}; no task has a journal there yet\n"
    make_journal(task_journal("nightly"))
    code, out, err = run_cli("tail")
    assert (code, out) == (2, "")
    assert err == f"error: no journal for task default at {task_journal()}; tasks with a journal: nightly (choose one with --task)\n"


def test_garbage_named_like_a_segment_is_an_error_not_a_traceback(run_cli, task_journal):
    d = task_journal()
    d.mkdir(parents=True)
    (d / fmt.segment_name(1)).write_bytes(os.urandom(300))
    code, out, err = run_cli("tail")
    assert (code, out) == (1, "")
    assert_one_error_line(err, f"corrupt record in {fmt.segment_name(1)} at byte 0: not a runjournal segment (bad magic)")


def test_an_event_type_from_a_newer_version_stops_tail_with_a_clear_error(run_cli, task_journal):
    d = task_journal()
    make_journal(d)
    seg = d / fmt.segment_name(1)
    offset = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(linked_batch(f.name, [msgspec.msgpack.encode([6, RUN_A, 5, TS, {"type": "future_thing"}, None])]))
    code, out, err = run_cli("tail")
    assert code == 1 and out == "\n".join(LINES) + "\n"
    assert_one_error_line(
        err,
        f"record in {seg.name} at byte {offset} has unknown event type 'future_thing': "
        "it was written by a newer runjournal; upgrade to read this journal",
    )


def test_a_reader_that_goes_away_early_is_not_an_error(task_journal, tmp_path: Path):
    """`runjournal tail | head -1`: the pipe closes long before 3,000 events are printed."""
    with Journal(str(task_journal("big")), durability="none") as j:
        j.append_batch([Item(RUN_A, ev.Heartbeat(), 1_764_581_831_576_000_000 + i) for i in range(3000)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "runjournal", "--root", str(tmp_path), "tail", "--task", "big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        cwd=tmp_path,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` exits
    assert proc.wait(DEADLINE) == 0
    assert first.startswith(b"       1  ")
    assert proc.stderr.read() == b""
    proc.stderr.close()
