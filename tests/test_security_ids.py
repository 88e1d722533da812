"""Task and run ids become paths: they are checked at every boundary.

The writer, every store and the projector refuse an id the command line refuses (nothing
written); every command-line entry that takes an id (an argument, an option, a variable, the
records of an import file) refuses a hostile one with one ``error:`` line and exit 2, writing
nothing anywhere; a record with such an id already in a journal (written by something else,
or by an older version) is reported by `verify` and skipped by projections with a warning,
never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import _LOCATION_VARS, clean_env, time_bound
from helpers.histories import T0, RunScript, make_run_id, populate
from helpers.strategies import CLIMB, hostile_ids
from helpers.trees import changes, fingerprint
from helpers.records import linked_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runjournal.cli.main import cli, main
from runjournal.journal import FileStore, InvalidId, Item, Journal, Layout, Record, open_store, validate_run_id, validate_task_id
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.transfer import export_lines, import_records, parse_lines
from runjournal.projections import Projector
from runjournal.projections.render import Paths


def nested(base: Path) -> Path:
    """A directory CLIMB levels below ``base``: a relative hostile id that got through would
    still write below ``base``, where the test looks."""
    return base.joinpath(*(f"up{n}" for n in range(CLIMB)))


def refusal(validate, value: str) -> str:
    """The message ``validate`` refuses ``value`` with (the strategy's ids are all refused)."""
    with pytest.raises(InvalidId) as refused:
        validate(value)
    return str(refused.value)


def export_line(run_id: str, run_seq: int = 1, ascii_only: bool = True) -> bytes:
    """One line of an export: a heartbeat of ``run_id``."""
    doc = {"seq": run_seq, "run_id": run_id, "run_seq": run_seq, "ts": T0 + run_seq, "event": {"type": "heartbeat"}}
    return json.dumps(doc, ensure_ascii=ascii_only).encode() + b"\n"


@given(data=st.data())
def test_the_writer_and_the_store_refuse_a_hostile_run_id_and_write_nothing(tmp_path_factory, data):
    base = tmp_path_factory.mktemp("store")
    run_id = data.draw(hostile_ids(str(base / "outside")), label="run_id")
    message = refusal(validate_run_id, run_id)  # what the command line refuses ...
    runs = nested(base) / "runs"
    with FileStore(str(runs), durability="none") as store:
        store.append("t", make_run_id(1), ev.Heartbeat())
        before = fingerprint(base)
        for append in (
            lambda: store.append("t", run_id, ev.Heartbeat()),
            lambda: store.append_batch("t", [Item(make_run_id(1), ev.Heartbeat()), Item(run_id, ev.Heartbeat())]),
            lambda: store.writer("t").append(run_id, ev.Heartbeat(), expected_seq=0),
        ):
            with pytest.raises(InvalidId) as refused:  # ... every way into the journal refuses too
                append()
            assert str(refused.value) == message
        assert changes(before, fingerprint(base)) == []
        assert store.last_seq("t") == 1


def projector(store, task: str, runs: Path) -> Projector:
    return Projector(str(runs), str(runs.parent / "out"), task, store=store)


#: every EventStore method that takes a task id, and what else builds paths from one (the
#: projector, its paths, the layout), called with the store, the task id and the runs dir
TASK_CALLS = {
    "append": lambda s, t, runs: s.append(t, make_run_id(1), ev.Heartbeat()),
    "append_batch": lambda s, t, runs: s.append_batch(t, [Item(make_run_id(1), ev.Heartbeat())]),
    "prepare": lambda s, t, runs: s.prepare(t),
    "flush": lambda s, t, runs: s.flush(t),
    "where": lambda s, t, runs: s.where(t),
    "exists": lambda s, t, runs: s.exists(t),
    "last_seq": lambda s, t, runs: s.last_seq(t),
    "run_seq": lambda s, t, runs: s.run_seq(t, make_run_id(1)),
    "run_seqs": lambda s, t, runs: s.run_seqs(t, [make_run_id(1)]),
    "records": lambda s, t, runs: list(s.records(t)),
    "identity": lambda s, t, runs: s.identity(t),
    "wait": lambda s, t, runs: s.wait(t, 0, 0.0),
    "subscribe": lambda s, t, runs: s.subscribe(lambda task: None, t).stop(),
    "check": lambda s, t, runs: s.check(t),
    "repair": lambda s, t, runs: s.repair(t),
    "import_records": lambda s, t, runs: import_records(s, t, parse_lines([export_line(make_run_id(1))], "f")),
    "export_lines": lambda s, t, runs: list(export_lines(s, t)),
    "Projector.catch_up": lambda s, t, runs: projector(s, t, runs).catch_up(),
    "Projector.rebuild": lambda s, t, runs: projector(s, t, runs).rebuild(),
    "Projector.view": lambda s, t, runs: projector(s, t, runs).view(),
    "Projector.save": lambda s, t, runs: projector(s, t, runs).save(),
    "Paths": lambda s, t, runs: Paths(str(runs), str(runs.parent / "out"), t),
    "Layout.task_dir": lambda s, t, runs: Layout(str(runs), str(runs.parent / "out")).task_dir(t),
}


@pytest.mark.parametrize("url", ["{}", "file://{}"], ids=["path", "file-url"])
@given(data=st.data())
def test_every_store_and_the_projector_refuse_a_hostile_task_id_and_write_nothing(tmp_path_factory, url: str, data):
    base = tmp_path_factory.mktemp("store")
    task = data.draw(hostile_ids(str(base / "outside")), label="task")
    message = refusal(validate_task_id, task)
    runs = nested(base) / "runs"
    with open_store(url.format(runs), durability="none") as store:
        store.append("t", make_run_id(1), ev.Heartbeat())
        before = fingerprint(base)
        for name, call in TASK_CALLS.items():
            with pytest.raises(InvalidId) as refused:
                call(store, task, runs)
            assert str(refused.value) == message, name
            assert changes(before, fingerprint(base)) == [], name


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
        f.write(linked_batch(f.name, [ev.encoder.encode(r) for r in records]))
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


# -- every command-line entry ------------------------------------------------------------

RUN = make_run_id(1)  # the run in the journal, where only the task id is hostile
IMPORTED = make_run_id(2)  # a valid run in an import file, beside the hostile record
#: the longest a refusal may take; commands that follow or watch would run until this were an id let through
BOUND = 20.0


@dataclass(frozen=True)
class Place:
    """One copy of a scene: the directory above it all (hashed whole), the root, an export of
    RUN, where `export -o` would write, and the directory absolute hostile ids point into."""

    base: Path
    root: Path
    export: Path
    output: Path
    outside: Path


def after_dashes(value: str) -> list[str]:
    """A positional argument: after ``--`` where it would read as an option."""
    return ["--", value] if value.startswith("-") else [value]


@dataclass(frozen=True)
class Entry:
    """One way an id reaches the command line: the command, its parameter that takes the id
    (``file``: the records of an import file), and the arguments after the command's name."""

    command: str
    param: str
    args: Callable[[str, Place], list[str]]

    @property
    def takes_task(self) -> bool:
        return self.param == "task"


ENTRIES = [
    # run ids
    Entry("status", "run_id", lambda i, p: after_dashes(i)),
    Entry("status", "run_id", lambda i, p: ["--watch", *after_dashes(i)]),
    Entry("show", "run_id", lambda i, p: after_dashes(i)),
    Entry("replay", "run_id", lambda i, p: after_dashes(i)),
    Entry("replay", "run_id", lambda i, p: ["--at", "1", *after_dashes(i)]),
    Entry("replay", "run_id", lambda i, p: ["--speed", "1000", *after_dashes(i)]),
    Entry("resume", "run_id", lambda i, p: ["--token", "x", *after_dashes(i)]),
    Entry("tail", "run_id", lambda i, p: ["--run", i]),
    Entry("tail", "run_id", lambda i, p: ["-f", "--run", i]),
    Entry("export", "run_id", lambda i, p: ["--run", i]),
    Entry("export", "run_id", lambda i, p: ["--run", i, "-o", str(p.output)]),
    Entry("logs", "run_id", lambda i, p: after_dashes(i)),
    Entry("cancel", "run_id", lambda i, p: after_dashes(i)),
    Entry("start", "parent_run", lambda i, p: ["--parent-run", i]),
    # task ids: ``t`` is ["--task", id], or [] where a variable carries the id
    Entry("start", "task", lambda t, p: t),
    Entry("exec", "task", lambda t, p: [*t, "--", "true"]),
    Entry("resume", "task", lambda t, p: [RUN, "--token", "x", *t]),
    Entry("status", "task", lambda t, p: [RUN, *t]),
    Entry("status", "task", lambda t, p: [RUN, "--watch", *t]),
    Entry("runs", "task", lambda t, p: t),
    Entry("show", "task", lambda t, p: [RUN, *t]),
    Entry("replay", "task", lambda t, p: [RUN, *t]),
    Entry("tail", "task", lambda t, p: t),
    Entry("tail", "task", lambda t, p: ["-f", *t]),
    Entry("logs", "task", lambda t, p: [RUN, *t]),
    Entry("cancel", "task", lambda t, p: [RUN, *t]),
    Entry("project", "task", lambda t, p: t),
    Entry("project", "task", lambda t, p: ["--rebuild", *t]),
    Entry("watch", "task", lambda t, p: t),
    Entry("watch", "task", lambda t, p: ["--poll", "0.05", *t]),
    Entry("verify", "task", lambda t, p: t),
    Entry("verify", "task", lambda t, p: ["--repair", *t]),
    Entry("upgrade", "task", lambda t, p: t),
    Entry("export", "task", lambda t, p: t),
    Entry("export", "task", lambda t, p: ["-o", str(p.output), *t]),
    Entry("import", "task", lambda t, p: [str(p.export), *t]),
    # run ids in a file: the file is made for each id (see ``hostile_export``)
    Entry("import", "file", lambda f, p: [f]),
]
#: where a task id comes from besides --task (contract section 3)
TASK_VARIABLES = ("RUNJOURNAL_TASK", "MCP_RUNNER_TASK_ID")


def test_every_parameter_that_takes_an_id_has_an_entry():
    """A command or option added later that takes a run or task id is added to ENTRIES."""
    takes_ids = {(name, p.name) for name, command in cli.commands.items() for p in command.params if p.name in ("run_id", "parent_run", "task")}
    assert takes_ids == {(e.command, e.param) for e in ENTRIES if e.param != "file"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """The directories an example copies: one whose root has RUN (failed) journaled and
    projected, one whose root is empty; both with an export of RUN beside the root."""
    base = tmp_path_factory.mktemp("scene")
    root = nested(base) / "root"
    populate(root, RunScript(RUN, stages=1).stage(1).fail().items)
    for args in (["project"], ["export", "-o", str(base / "run.jsonl")]):
        done = subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), *args], capture_output=True, env=clean_env(), cwd=root, timeout=60)
        assert done.returncode == 0, done.stderr
    empty = tmp_path_factory.mktemp("scene")
    (nested(empty) / "root").mkdir(parents=True)
    shutil.copy(base / "run.jsonl", empty / "run.jsonl")
    for scene in (base, empty):
        (scene / "outside").mkdir()
        (scene / "outside" / "precious").write_text("keep me")
    return {"journaled": base, "empty": empty}


def hostile_export(place: Place, run_id: str, data) -> tuple[str, str]:
    """An import file whose one bad record carries ``run_id``, among records of a valid run;
    the file's name and where its bad record is (a line number, or an array's item)."""
    ascii_only = data.draw(st.booleans(), label="escape every non-ASCII character")
    before = data.draw(st.integers(0, 2), label="valid records before the bad one")
    records = [export_line(IMPORTED, n) for n in range(1, before + 1)]
    records.append(export_line(run_id, 1, ascii_only))
    records += [export_line(IMPORTED, n) for n in range(before + 1, before + 1 + data.draw(st.integers(0, 2), label="after"))]
    path = place.base / f"hostile-{len(list(place.base.glob('hostile-*')))}.jsonl"
    if data.draw(st.booleans(), label="as one JSON array"):
        path.write_bytes(b"[" + b",\n".join(r.rstrip(b"\n") for r in records) + b"]\n")
        return str(path), f"item {before + 1}"
    path.write_bytes(b"".join(records))
    return str(path), str(before + 1)


def is_utf8(value: str) -> bool:
    """Whether ``value`` can be in a file at all (an undecodable byte from argv cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_main(place: Place, argv: list[str], env: dict[str, str], capsys) -> tuple[int, str, str]:
    """``runjournal --root ROOT *argv`` in this process, in the root, with only ``env`` set of
    the variables that say where things are; bounded in time."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _LOCATION_VARS:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(place.root)
        capsys.readouterr()
        with time_bound(" ".join(argv[:3]), BOUND), pytest.raises(SystemExit) as exit_:
            main(["--root", str(place.root), *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@settings(max_examples=max(settings().max_examples // 2, 1), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_cli_entry_refuses_a_hostile_id_with_one_error_line_and_writes_nothing(scenes: dict[str, Path], capsys, data):
    base = Path(tempfile.mkdtemp(prefix="runjournal-ids-")) / "base"
    try:
        shutil.copytree(scenes[data.draw(st.sampled_from(sorted(scenes)), label="scene")], base, symlinks=True)
        root = nested(base) / "root"
        place = Place(base, root, base / "run.jsonl", base / "exported.jsonl", base / "outside")
        ids = hostile_ids(str(place.outside))
        for entry in ENTRIES:
            value = data.draw(ids if entry.param != "file" else ids.filter(is_utf8), label=f"{entry.command} {entry.param}")
            env: dict[str, str] = {}
            if entry.takes_task:
                message = refusal(validate_task_id, value)
                # a variable cannot hold NUL, and an empty one is unset (the task is then 'default')
                carriers = ["--task", *TASK_VARIABLES] if value and "\0" not in value else ["--task"]
                carrier = data.draw(st.sampled_from(carriers), label="carried by")
                args = entry.args(["--task", value] if carrier == "--task" else [], place)
                if carrier != "--task":
                    env[carrier] = value
            elif entry.param == "file":
                name, where = hostile_export(place, value, data)
                message = f"{name}:{where}: {refusal(validate_run_id, value)}; nothing was imported"
                args = entry.args(name, place)
            else:
                message = refusal(validate_run_id, value)
                args = entry.args(value, place)
            fmt_args = data.draw(st.sampled_from([[], ["--format", "json"]]), label="format")
            argv = [entry.command, *fmt_args, *args]
            before = fingerprint(base)
            code, out, err = run_main(place, argv, env, capsys)
            assert (code, out, err) == (2, "", f"error: {message}\n"), (argv, env)
            assert changes(before, fingerprint(base)) == [], (argv, env)
    finally:
        shutil.rmtree(base.parent)


#: ids only a real argv carries (a byte that is not UTF-8), and one of each other kind;
#: "{outside}" is the scene's directory outside the root
ARGV_IDS = ["a\udcffb", "x\x1b[2J\x1b]0;TITLE\x07", "../../x", "{outside}/x"]
#: commands that follow or watch until stopped, and one that runs a command
LONG_RUNNING = {
    "watch --task": ("task", lambda i: ["watch", "--task", i]),
    "tail -f --run": ("run_id", lambda i: ["tail", "-f", "--run", i]),
    "status --watch": ("run_id", lambda i: ["status", "--watch", *after_dashes(i)]),
    "exec --task": ("task", lambda i: ["exec", "--task", i, "--", "true"]),
}


@pytest.mark.parametrize("value", ARGV_IDS, ids=ascii)
@pytest.mark.parametrize("entry", LONG_RUNNING)
def test_a_real_process_refuses_a_hostile_id_in_argv_and_exits(scenes: dict[str, Path], tmp_path: Path, entry: str, value: str):
    base = tmp_path / "base"
    shutil.copytree(scenes["journaled"], base, symlinks=True)
    root = nested(base) / "root"
    value = value.format(outside=base / "outside")
    param, args = LONG_RUNNING[entry]
    message = refusal(validate_task_id if param == "task" else validate_run_id, value)
    before = fingerprint(base)
    argv = [sys.executable, "-m", "runjournal", "--root", str(root), *args(value)]
    done = subprocess.run([os.fsencode(a) for a in argv], capture_output=True, env=clean_env(), cwd=root, timeout=BOUND)
    assert (done.returncode, done.stdout, done.stderr) == (2, b"", f"error: {message}\n".encode())
    assert changes(before, fingerprint(base)) == []
