"""Run ids become projection paths: they are checked at every boundary.

The writer and every store refuse an id the command line refuses (nothing written); a record
with such an id already in a journal (written by something else, or by an older version) is
reported by `verify` and skipped by projections with a warning, never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers.histories import T0, RunScript, make_run_id, populate
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import FileStore, InvalidId, Item, Journal, Record, validate_run_id
from runjournal.journal import events as ev
from runjournal.journal import format as fmt


def hostile_run_ids() -> st.SearchStrategy[str]:
    """Strings that must never name a path component: traversal, separators, dot files,
    control characters, empty, too long."""
    word = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
    return st.one_of(
        st.just(""),
        st.builds(lambda a, b: f"{a}/{b}", word, word),
        st.builds(lambda a, b: f"{a}\\{b}", word, word),
        st.builds(lambda a, b: f"{a}..{b}", word, word),
        st.builds(lambda a: "." + a, word),
        st.builds(lambda a, c, b: f"{a}{c}{b}", word, st.sampled_from([chr(i) for i in [*range(0x20), *range(0x7F, 0xA0)]]), word),
        st.builds(lambda n: "x" * n, st.integers(201, 400)),
        st.sampled_from(["../../../../outside/x", "/etc/passwd", "..", ".", "a/../../b"]),
    )


@given(hostile_run_ids())
def test_the_writer_and_the_store_refuse_a_hostile_run_id_and_write_nothing(tmp_path_factory, run_id: str):
    with pytest.raises(InvalidId):
        validate_run_id(run_id)  # what the command line refuses ...
    runs = tmp_path_factory.mktemp("runs")
    with FileStore(str(runs), durability="none") as store:
        store.append("t", make_run_id(1), ev.Heartbeat())
        for append in (
            lambda: store.append("t", run_id, ev.Heartbeat()),
            lambda: store.append_batch("t", [Item(make_run_id(1), ev.Heartbeat()), Item(run_id, ev.Heartbeat())]),
            lambda: store.writer("t").append(run_id, ev.Heartbeat(), expected_seq=0),
        ):
            with pytest.raises(InvalidId):  # ... every way into the journal refuses too
                append()
        assert store.last_seq("t") == 1


def planted(tmp_path: Path, run_id: str) -> Path:
    """A root whose journal holds a run started under ``run_id``, written past the writer (as a
    journal from elsewhere could be): framed and checksummed like any record."""
    journal = Path(populate(tmp_path / "root", RunScript(make_run_id(1), stages=1).stage(1).complete().items))
    last = FileStore(str(tmp_path / "root" / ".runs")).last_seq("default")
    events = [
        ev.RunStarted(task_id="default", pipeline_id="evil", stages=(ev.StagePlan(id="s", title="s", command="true"),)),
        ev.StageStarted(index=1, stage_id="s"),
        ev.OutputChunk(index=1, stream="stdout", data=b"pwned\n"),
        ev.Heartbeat(),
    ]
    records = [Record(last + n, run_id, n, T0 + n, event) for n, event in enumerate(events, 1)]
    segment = journal / fmt.list_segments(str(journal))[-1][1]
    with open(segment, "ab") as f:
        f.write(fmt.encode_batch([ev.encoder.encode(r) for r in records]))
    return journal


def tree_hash(top: Path, skip: Path) -> str:
    h = hashlib.sha256()
    for directory, dirs, files in os.walk(top):  # walked top-down, so pruning ``dirs`` skips ``skip``
        dirs[:] = sorted(d for d in dirs if Path(directory, d) != skip)
        h.update(str(Path(directory).relative_to(top)).encode() + b"\0\0")
        for name in sorted(files):
            path = Path(directory, name)
            h.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("run_id", ["../../../../outside/x", "../escape", "/tmp/abs", "a/b", ".hidden"])
def test_a_hostile_id_already_in_a_journal_is_reported_and_never_projected(tmp_path: Path, run_cli, run_id: str):
    journal = planted(tmp_path, run_id)
    root = tmp_path / "root"
    outside = tree_hash(tmp_path, skip=root)
    code, out, err = run_cli("--root", root, "verify", "--format", "json")
    assert code == 1, err
    problems = json.loads(out)["problems"]
    assert [p["kind"] for p in problems] == ["invalid-id"]
    assert problems[0]["detail"].startswith(f"run id {run_id!r} must not")
    for args in (("project",), ("project", "--rebuild"), ("runs", "--format", "json")):
        code, out, err = run_cli("--root", root, *args)
        assert code == 0, (args, err)
        if args[0] == "project":
            assert err == f"warning: task default: the journal holds run ids that cannot name a path, not projected: {run_id!r} (`runjournal verify --task default` lists them)\n"
        else:
            assert [r["run_id"] for r in json.loads(out)] == [make_run_id(1)]
    assert tree_hash(tmp_path, skip=root) == outside  # nothing was written outside the root
    written = {p.name for p in (root / ".runs" / "default" / "cli").iterdir()}
    assert written == {make_run_id(1)}
    assert "pwned" not in (root / ".runs" / "default" / "metrics.json").read_text()
    assert journal.is_dir()


def test_the_journal_class_refuses_too(tmp_path: Path):
    with Journal(str(tmp_path / "journal"), durability="none") as j:
        with pytest.raises(InvalidId, match=r"run id 'a\.\.b' must not contain '\.\.'"):
            j.append("a..b", ev.Heartbeat())
        with pytest.raises(InvalidId, match=r"run id '/etc/x' must not contain '/'"):
            j.append_batch([Item("/etc/x", ev.Heartbeat())])
        assert j.append(make_run_id(1), ev.Heartbeat()).seq == 1
