"""`runjournal export` / `runjournal import`: JSON Lines between machines, idempotent."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, assert_one_error_line

from runjournal.journal import Item, Journal, read_records
from runjournal.journal import events as ev

RUN_A = "2025-12-01T09-37-11-576Z-1a60ebea"
RUN_B = "2025-12-01T09-40-02-100Z-7c2e91d0"
TS = 1764581831576000000


def make_journal(directory: Path) -> None:
    stages = (ev.StagePlan(id="build", title="Build", command="make", env={"CC": "clang"}),)
    with Journal(str(directory), durability="none") as j:
        j.append_batch([Item(RUN_A, ev.RunStarted(task_id="src", pipeline_id="ci", stages=stages), TS)])
        j.append_batch([Item(RUN_B, ev.RunStarted(task_id="src", pipeline_id="docs"), TS + 1)])
        j.append_batch([Item(RUN_A, ev.OutputChunk(index=1, stream="stderr", data=bytes(range(256))), TS + 2)])
        j.append_batch([Item(RUN_B, ev.RunCompleted(summary="ok ✓"), TS + 3), Item(RUN_A, ev.RunFailed(reason="exit 2"), TS + 4)])


def runs_of(directory: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in read_records(str(directory)):
        out.setdefault(r.run_id, []).append((r.run_seq, r.ts, r.event))
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("seg-*.rjl"))}


def test_round_trip_keeps_run_ids_sequences_times_and_events(run_cli, task_journal, tmp_path: Path):
    make_journal(task_journal("src"))
    with Journal(str(task_journal("dst"))) as j:  # the destination already has a run of its own
        j.append("2025-11-30T00-00-00-000Z-00000000", ev.Heartbeat())

    code, out, err = run_cli("export", "--task", "src", "-o", "all.jsonl")
    assert (code, out, err) == (0, "", "exported 5 events to all.jsonl\n")
    exported = (tmp_path / "all.jsonl").read_text()
    assert run_cli("export", "--task", "src") == (0, exported, "")
    assert [json.loads(line)["seq"] for line in exported.splitlines()] == [1, 2, 3, 4, 5]

    head = json.loads(exported.splitlines()[-1])["chain"]
    assert run_cli("import", "all.jsonl", "--task", "dst") == (
        0,
        f"imported 5 of 5 events into task dst (0 already present)\nchain: every record matches the source's hash chain, up to sequence 5: {head}\n",
        "",
    )
    src, dst = runs_of(task_journal("src")), runs_of(task_journal("dst"))
    assert dst[RUN_A] == src[RUN_A] and dst[RUN_B] == src[RUN_B]
    assert [r.seq for r in read_records(str(task_journal("dst")))] == [1, 2, 3, 4, 5, 6]

    before = snapshot(task_journal("dst"))
    code, out, err = run_cli("import", "all.jsonl", "--task", "dst", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"task_id": "dst", "events": 5, "imported": 0, "skipped": 5, "chain": {"seq": 5, "head": head, "unchained": 0}}
    assert snapshot(task_journal("dst")) == before


def test_export_as_one_json_document_imports_the_same(run_cli, task_journal, tmp_path: Path):
    make_journal(task_journal("src"))
    code, lines, _ = run_cli("export", "--task", "src")
    code, out, err = run_cli("export", "--task", "src", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [json.loads(line) for line in lines.splitlines()]
    assert run_cli("export", "--task", "src", "--format", "json", "-o", "all.json") == (0, "", "exported 5 events to all.json\n")
    assert (tmp_path / "all.json").read_text() == out

    code, out, err = run_cli("import", "all.json", "--task", "dst")
    assert (code, err) == (0, "") and out.startswith("imported 5 of 5 events into task dst (0 already present)\nchain: every record matches")
    assert runs_of(task_journal("dst")) == runs_of(task_journal("src"))
    (tmp_path / "all.jsonl").write_text(lines)
    code, out, err = run_cli("import", "all.jsonl", "--task", "dst")
    assert (code, err) == (0, "") and out.startswith("imported 0 of 5 events into task dst (5 already present)\n")


def test_export_of_one_run(run_cli, task_journal, tmp_path: Path):
    make_journal(task_journal())
    code, out, err = run_cli("export", "--run", RUN_B)
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(o["run_id"], o["run_seq"], o["ts"], o["event"]["type"]) for o in lines] == [
        (RUN_B, 1, TS + 1, "run_started"),
        (RUN_B, 2, TS + 3, "run_completed"),
    ]
    (tmp_path / "b.jsonl").write_text(out)
    assert run_cli("import", "b.jsonl", "--task", "other")[0] == 0
    assert list(runs_of(task_journal("other"))) == [RUN_B]


def test_export_of_a_run_the_journal_does_not_have(run_cli, task_journal):
    make_journal(task_journal())
    code, out, err = run_cli("export", "--run", "2020-01-01T00-00-00-000Z-ffffffff")
    assert (code, out) == (2, "")
    assert err == f"error: no run 2020-01-01T00-00-00-000Z-ffffffff in any task under {task_journal().parent.parent} (`runjournal runs` lists the runs)\n"


@pytest.mark.parametrize("line", [3, 1])
def test_a_malformed_line_is_reported_by_number_and_nothing_is_imported(run_cli, task_journal, tmp_path: Path, line: int):
    make_journal(task_journal("src"))
    make_journal(task_journal("dst"))
    code, exported, _ = run_cli("export", "--task", "src")
    lines = exported.splitlines()
    fresh = json.loads(lines[0])  # a new run first, so that a partial import would show
    lines[line - 1] = lines[line - 1][:-7]  # cut short, as by a failed copy
    fresh["run_id"] = "2025-12-02T00-00-00-000Z-12345678"
    fresh["run_seq"] = 1
    del fresh["chain"], fresh["chain_before"]  # a line of another history: it carries no chain
    (tmp_path / "bad.jsonl").write_text("\n".join([json.dumps(fresh), *lines]) + "\n")
    before = snapshot(task_journal("dst"))

    code, out, err = run_cli("import", "bad.jsonl", "--task", "dst")
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"bad.jsonl:{line + 1}: ", "nothing was imported")
    assert snapshot(task_journal("dst")) == before


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"seq": 1, "run_id": "../x", "run_seq": 1, "ts": 0, "event": {"type": "heartbeat"}}', "run id '../x' must not contain '/'"),
        ('{"seq": 1, "run_id": "r", "run_seq": 1, "ts": 0, "event": {"type": "future_thing"}}', "future_thing"),
        ('{"seq": 1, "run_id": "r", "run_seq": 1, "ts": 0}', "missing required field `event`"),
        ("42", "Expected `object`, got `int`"),
    ],
)
def test_lines_that_parse_but_are_not_records(run_cli, tmp_path: Path, task_journal, content: str, why: str):
    (tmp_path / "x.jsonl").write_text(content + "\n")
    code, out, err = run_cli("import", "x.jsonl")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "x.jsonl:1: ", why)
    assert not task_journal().exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2, 3]", "error: x.json:item 1: Expected `object`, got `int`; nothing was imported"),
        ('[{"seq": 1}', "error: x.json: Input data was truncated; nothing was imported"),
        ('  [\n{"seq": 1, "run_id": "r", "run_seq": 2, "ts": 0, "event": {"type": "heartbeat"}}]',
         "error: x.json:item 1: run r has 0 events here and the file continues at 2: export the whole run and import that; nothing was imported"),
    ],
)
def test_a_json_array_that_is_not_an_export(run_cli, tmp_path: Path, task_journal, content: str, message: str):
    (tmp_path / "x.json").write_text(content)
    code, out, err = run_cli("import", "x.json")
    assert (code, out) == (2, "")
    assert assert_one_error_line(err) == message
    assert not task_journal().exists() or not list(read_records(str(task_journal())))


def test_a_file_that_skips_a_run_sequence(run_cli, tmp_path: Path, task_journal):
    rec = '{{"seq": {0}, "run_id": "r", "run_seq": {0}, "ts": 0, "event": {{"type": "heartbeat"}}}}'
    (tmp_path / "gap.jsonl").write_text("\n".join([rec.format(1), rec.format(2), rec.format(4)]) + "\n")
    code, out, err = run_cli("import", "gap.jsonl")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "gap.jsonl:3: run r sequence 4 follows 2; nothing was imported")


def test_a_run_that_does_not_continue_where_the_journal_is(run_cli, tmp_path: Path, task_journal):
    rec = '{{"seq": {0}, "run_id": "r", "run_seq": {0}, "ts": 0, "event": {{"type": "heartbeat"}}}}'
    (tmp_path / "late.jsonl").write_text(rec.format(3) + "\n")
    code, out, err = run_cli("import", "late.jsonl")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "run r has 0 events here and the file continues at 3", "nothing was imported")
    assert list(read_records(str(task_journal()))) == []


@pytest.mark.parametrize("bad", ["../x", "", "a\tb", ".hidden"])
def test_unsafe_ids_are_rejected(run_cli, task_journal, tmp_path: Path, bad: str):
    make_journal(task_journal())
    (tmp_path / "f.jsonl").write_text("")
    for args in (["export", "--run", bad], ["export", "--task", bad], ["import", "f.jsonl", "--task", bad]):
        code, out, err = run_cli(*args)
        assert (code, out) == (2, ""), args
        assert_one_error_line(err, "id")


def test_output_to_a_fifo_is_written_through_not_renamed_over(run_cli, task_journal, tmp_path: Path):
    """A FIFO (like /dev/null, a device) given to -o is written to, and stays a FIFO; renaming a
    temp file over it would put a regular file in its place for every program."""
    make_journal(task_journal("src"))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # the reader: a separate process that holds the FIFO open for reading and keeps what comes
    reader = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdout.buffer.write(open({str(fifo)!r}, 'rb').read())"], stdout=subprocess.PIPE)
    try:
        code, out, err = run_cli("export", "--task", "src", "-o", str(fifo))
        received, _ = reader.communicate(timeout=DEADLINE)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert (code, out, err) == (0, "", f"exported 5 events to {fifo}\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert reader.returncode == 0
    assert received == run_cli("export", "--task", "src")[1].encode()
    assert [json.loads(line)["seq"] for line in received.splitlines()] == [1, 2, 3, 4, 5]


def test_output_dash_is_stdout(run_cli, task_journal, tmp_path: Path):
    make_journal(task_journal("src"))
    code, out, err = run_cli("export", "--task", "src", "--format", "json", "-o", "-")
    assert (code, err) == (0, "")
    assert [d["seq"] for d in json.loads(out)] == [1, 2, 3, 4, 5]
    assert not (tmp_path / "-").exists()


def test_output_to_a_file_is_replaced_and_a_symlink_kept(run_cli, task_journal, tmp_path: Path):
    make_journal(task_journal("src"))
    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to(target)
    assert run_cli("export", "--task", "src", "-o", "link.jsonl") == (0, "", "exported 5 events to link.jsonl\n")
    assert (tmp_path / "link.jsonl").is_symlink()
    assert target.read_text() == run_cli("export", "--task", "src")[1]
