"""`runjournal verify [--repair] [--format json]` (contract section 5)."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import pytest
from helpers import assert_one_error_line

from runjournal.journal import Item, Journal
from runjournal.journal import events as ev
from runjournal.journal import format as fmt

SEG1 = fmt.segment_name(1)
RUN_A = "2025-12-01T09-37-11-576Z-1a60ebea"
RUN_B = "2025-12-01T09-40-02-100Z-7c2e91d0"


def make_journal(directory: Path) -> None:
    with Journal(str(directory), durability="none") as j:
        for run in (RUN_A, RUN_B):
            j.append_batch([Item(run, ev.StageStarted(index=1, stage_id="build")), Item(run, ev.Heartbeat())])
            j.append(run, ev.RunCompleted())


def tear(directory: Path) -> int:
    """Leave what a writer killed in the middle of write() leaves; return where it starts."""
    seg = directory / SEG1
    offset = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(fmt.encode_frame(b"\x96" + b"x" * 40, continues=False)[:20])
    return offset


def check_shape(doc: dict) -> None:
    assert {"ok", "records", "runs", "segments", "bytes", "problems"} <= set(doc)
    assert isinstance(doc["ok"], bool)
    assert all(isinstance(doc[k], int) for k in ("records", "runs", "segments", "bytes"))
    for p in doc["problems"]:
        assert set(p) == {"segment", "offset", "kind", "detail"}


def test_a_clean_journal(run_cli, task_journal):
    d = task_journal()
    make_journal(d)
    size = (d / SEG1).stat().st_size
    code, out, err = run_cli("verify")
    assert (code, err) == (0, "")
    first, chain = out.splitlines()
    assert first == f"{d}: ok: 6 records, 2 runs, 1 segments, {size} bytes"
    assert re.fullmatch(r"chain: head [0-9a-f]{64} at sequence 6 \(stored from the first record\)", chain), chain

    code, out, err = run_cli("verify", "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    check_shape(doc)
    assert {k: doc[k] for k in ("ok", "records", "runs", "segments", "bytes", "problems")} == {
        "ok": True, "records": 6, "runs": 2, "segments": 1, "bytes": size, "problems": [],
    }  # fmt: skip


def test_a_torn_tail_is_reported_then_repaired(run_cli, task_journal):
    d = task_journal("nightly")
    make_journal(d)
    offset = tear(d)
    detail = "incomplete frame at the end of the segment (left by a crashed writer; `verify --repair` cuts it)"

    code, out, err = run_cli("verify", "--task", "nightly")
    assert (code, err) == (1, "")
    assert out.splitlines()[0].startswith(f"{d}: 1 problem(s): 6 records, 2 runs, 1 segments, {offset + 20} bytes")
    assert out.splitlines()[1:-1] == [f"problem: torn-tail in {SEG1} at byte {offset}: {detail}"]
    assert out.splitlines()[-1].startswith("chain: head ")

    code, out, _ = run_cli("verify", "--task", "nightly", "--format", "json")
    doc = json.loads(out)
    check_shape(doc)
    assert code == 1 and doc["ok"] is False
    assert doc["problems"] == [{"segment": SEG1, "offset": offset, "kind": "torn-tail", "detail": detail}]

    code, out, err = run_cli("verify", "--task", "nightly", "--repair")
    assert (code, err) == (0, "")
    assert f"repaired: cut 20 bytes from {SEG1} at byte {offset} (copy kept in torn/{SEG1}.{offset}.torn)" in out.splitlines()
    assert (d / "torn" / f"{SEG1}.{offset}.torn").stat().st_size == 20

    code, out, _ = run_cli("verify", "--task", "nightly", "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True
    assert json.loads(out)["records"] == 7  # the repair is on record


def test_corruption_in_the_middle_is_reported_and_not_cut(run_cli, task_journal):
    d = task_journal()
    make_journal(d)
    data = bytearray((d / SEG1).read_bytes())
    data[fmt.HEADER_LEN + fmt.FRAME_LEN + 5] ^= 0x04  # inside the first record's payload
    (d / SEG1).write_bytes(bytes(data))
    expected = f"problem: corrupt in {SEG1} at byte {fmt.HEADER_LEN}: payload checksum mismatch"

    for args in (["verify"], ["verify", "--repair"]):
        code, out, err = run_cli(*args)
        assert (code, err) == (1, ""), args
        assert expected in out.splitlines(), args
    assert (d / SEG1).read_bytes() == bytes(data)
    assert not (d / "torn").exists()


def test_garbage_in_the_journal_directory_is_a_problem_not_a_traceback(run_cli, task_journal):
    d = task_journal()
    d.mkdir(parents=True)
    (d / SEG1).write_bytes(os.urandom(300))
    (d / "notes.txt").write_bytes(os.urandom(300))
    code, out, err = run_cli("verify", "--format", "json")
    assert (code, err) == (1, "")
    doc = json.loads(out)
    check_shape(doc)
    assert [(p["segment"], p["offset"], p["kind"]) for p in doc["problems"]] == [(SEG1, 0, "bad-header")]

    code, out, err = run_cli("verify", "--repair")
    assert (code, err) == (1, "")
    assert f"problem: bad-header in {SEG1} at byte 0: not a runjournal segment (bad magic)" in out


def test_stray_files_beside_good_segments_are_ignored(run_cli, task_journal):
    d = task_journal()
    make_journal(d)
    (d / "notes.txt").write_bytes(os.urandom(300))
    (d / "seg-1.rjl").write_bytes(os.urandom(300))  # not a segment name: 20 digits
    code, out, err = run_cli("verify")
    assert (code, err) == (0, "")
    assert ": ok: 6 records" in out


def test_no_journal_is_bad_input(run_cli, tmp_path: Path):
    code, out, err = run_cli("verify", "--task", "missing")
    assert (code, out) == (2, "")
    assert err == f"error: no journal for task missing at {tmp_path / '.runs' / 'missing' / 'journal'}; no task has a journal there yet\n"


def test_no_journal_for_the_default_task_names_the_tasks_that_have_one(run_cli, task_journal, tmp_path: Path):
    for task in ("nightly", "adhoc"):
        make_journal(task_journal(task))
    code, out, err = run_cli("verify")
    assert (code, out) == (2, "")
    assert err == (
        f"error: no journal for task default at {tmp_path / '.runs' / 'default' / 'journal'}; "
        "tasks with a journal: adhoc, nightly (choose one with --task)\n"
    )


def test_a_journal_path_that_is_a_file(run_cli, task_journal):
    d = task_journal()
    d.parent.mkdir(parents=True)
    d.write_bytes(b"not a directory")
    code, out, err = run_cli("verify")
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"no journal for task default at {d}")


@pytest.mark.parametrize(
    ("task", "why"),
    [
        ("../x", "must not contain '/'"),
        ("..", "must not contain '..'"),
        ("", "must not be empty"),
        ("a\x01b", "must not contain control characters"),
        ("a\x7fb", "must not contain control characters"),
        (".hidden", "must not start with '.'"),
        ("a\\b", "must not contain '/' or '\\'"),
    ],
)
def test_an_unsafe_task_id_is_rejected(run_cli, tmp_path: Path, task: str, why: str):
    code, out, err = run_cli("verify", "--task", task)
    assert (code, out) == (2, "")
    assert_one_error_line(err, "task id", why)
    assert not (tmp_path / ".runs").exists()
