"""Bad input: damaged and random bytes fed to the reader, `check`, recovery and `import`;
malformed configs, ids and command-line arguments.

Whatever the input, the outcome is a clean read of the valid part or a clear error (a
``JournalError``; on the command line one ``error: ...`` line and exit 1 or 2), never
another exception, never a traceback, never a hang. What the user sees for each bad input
is listed in docs/guarantees.md ("Bad input").
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import _LOCATION_VARS as LOCATION_VARS
from helpers import assert_one_error_line, clean_env, file_store_of
from helpers import time_bound as bounded
from helpers.damage import Damage, export_damage, journal_damage
from helpers.histories import T0, RunScript, interleave, make_run_id, write
from helpers.records import linked_batch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runjournal.cli.main import main
from runjournal.journal import BadInput, CorruptRecord, Item, Journal, JournalError, JournalReader, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.events import Record
from runjournal.journal.transfer import export_lines, import_records, parse_export
from runjournal.journal.writer import HEAD

#: the longest one read, check or import of these small journals may take before it counts as a hang
TIME_LIMIT = 10.0


def time_bound(what: str):
    """Hang (the test fails) if the block runs longer than TIME_LIMIT."""
    return bounded(what, TIME_LIMIT)


# -- the pristine journal ---------------------------------------------------------------

RUN_A, RUN_B = make_run_id(1), make_run_id(2)
PLANS = (ev.StagePlan(id="build", title="Build", command="make"), ev.StagePlan(id="test", title="Test", command="make test", env={"CI": "1"}))


def pristine_batches() -> Iterator[list[Item]]:
    """Batches of one to three records, of every size from an empty output to one over 1 MiB."""
    yield [Item(RUN_A, ev.RunStarted(task_id="fz", pipeline_id="ci", stages=PLANS), T0)]
    yield [
        Item(RUN_A, ev.StageStarted(index=1, stage_id="build"), T0 + 1),
        Item(RUN_A, ev.OutputChunk(index=1, stream="stdout", data=b""), T0 + 2),
        Item(RUN_A, ev.OutputChunk(index=1, stream="stdout", data=b"x" * 100), T0 + 3),
    ]
    yield [Item(RUN_B, ev.RunStarted(task_id="fz", pipeline_id="docs", stages=PLANS), T0 + 4)]
    yield [Item(RUN_A, ev.OutputChunk(index=1, stream="stderr", data=bytes(range(256)) * 280), T0 + 5)]  # 70 KiB
    for i in range(6):
        yield [Item(RUN_B, ev.Heartbeat(), T0 + 6 + i)]
    yield [
        Item(RUN_A, ev.ErrorRecorded(index=1, stage_id="build", command="make", reason="exit 2", exit_code=2, stderr="boom\n" * 100), T0 + 20),
        Item(RUN_A, ev.StageFailed(index=1, stage_id="build", exit_code=2), T0 + 21),
        Item(RUN_B, ev.OutputTruncated(index=1, stream="stdout", total_bytes=99_999, kept_head_bytes=10, kept_tail_bytes=5000, dropped_bytes=94_989, tail=b"t" * 5000), T0 + 22),
    ]
    yield [Item(RUN_B, ev.OutputChunk(index=2, stream="stdout", data=bytes(i % 251 for i in range(1_100_000))), T0 + 23)]  # crosses a 1 MiB read
    yield [
        Item(RUN_A, ev.RunResumed(actor="fz", reason="again", outcome="accepted", attempt=2), T0 + 30),
        Item(RUN_A, ev.StageSkipped(index=1, stage_id="build"), T0 + 31),
        Item(RUN_A, ev.RunCompleted(summary="ok ✓"), T0 + 32),
    ]
    yield [Item(RUN_B, ev.RunFailed(reason="stage failed"), T0 + 40)]


class Pristine:
    """The journal every example damages a copy of (not a dataclass: hypothesis would print it all)."""

    def __init__(self, files: dict[str, bytes], records: list[Record]):
        self.files = files  # segment name -> bytes
        self.records = records

    def __repr__(self) -> str:
        return f"Pristine({len(self.files)} segments, {len(self.records)} records)"

    @property
    def last_seq(self) -> int:
        return len(self.records)


@pytest.fixture(scope="module")
def pristine() -> Iterator[Pristine]:
    """Several segments (4 KiB each, so most batches start one), with a repaired torn tail in the middle."""
    tmp = Path(tempfile.mkdtemp(prefix="runjournal-fuzz-"))
    d = tmp / "journal"
    batches = list(pristine_batches())
    with Journal(str(d), durability="none", segment_bytes=4096) as j:
        for batch in batches[:5]:
            j.append_batch(batch)
    last = fmt.list_segments(str(d))[-1][1]
    with open(d / last, "ab") as f:  # a torn write, as left by a killed writer: cut by the next one
        f.write(fmt.encode_batch([b"\x96" * 40, b"\x00" * 10])[:30])
    with Journal(str(d), durability="none", segment_bytes=4096) as j:
        for batch in batches[5:]:
            j.append_batch(batch)
    files = {name: (d / name).read_bytes() for _, name in fmt.list_segments(str(d))}
    records = list(read_records(str(d)))
    assert check(str(d)).ok and len(files) >= 5 and any(r.event.__struct_config__.tag == "tail_repaired" for r in records)
    shutil.rmtree(tmp)
    yield Pristine(files, records)


@contextmanager
def journal_of(files: dict[str, bytes]) -> Iterator[str]:
    """A scratch journal directory holding ``files``."""
    tmp = tempfile.mkdtemp(prefix="runjournal-fuzz-")
    d = os.path.join(tmp, "journal")
    os.mkdir(d)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    try:
        yield d
    finally:
        shutil.rmtree(tmp)


def read_all(directory: str) -> tuple[list[Record], JournalError | None, JournalReader]:
    """Every record a reader yields, and the JournalError it stopped with (None: a clean end).
    Any other exception fails the test."""
    reader = JournalReader(directory)
    got: list[Record] = []
    with time_bound("reading"):
        try:
            for rec in reader.records():
                got.append(rec)
        except JournalError as e:
            return got, e, reader
    return got, None, reader


def is_a_shorter_copy(files: dict[str, bytes], pristine: dict[str, bytes]) -> bool:
    """The files are the first pristine segments, unchanged but for the last one, cut short."""
    names = sorted(files)
    if not names:
        return True
    if sorted(pristine)[: len(names)] != names:
        return False
    *whole, last = names
    return all(files[n] == pristine[n] for n in whole) and pristine[last].startswith(files[last])


def assert_prefix(got: list[Record], pristine: Pristine, reframed: bool) -> None:
    """What was read is the original history from sequence 1 (whatever segment is gone), in
    order, with nothing made up."""
    assert [r.seq for r in got] == list(range(1, 1 + len(got)))
    if not reframed:  # re-framed records pass their checksums: their content may differ
        assert got == pristine.records[: len(got)]


def assert_clear_corruption(error: JournalError, files: dict[str, bytes]) -> None:
    assert isinstance(error, CorruptRecord), repr(error)
    assert error.segment in files, (error.segment, sorted(files))
    assert 0 <= error.offset <= len(files[error.segment])
    assert f"{error.segment} at byte {error.offset}" in str(error)


# -- 1. the reader, check and recovery on damaged journals --------------------------------


@given(damage=journal_damage())
def test_a_damaged_journal_reads_as_a_prefix_then_a_clear_error(pristine: Pristine, damage: list[Damage]):
    files = dict(pristine.files)
    for step in damage:
        step.apply(files, pristine.last_seq)
    reframed = any(step.kind == "reframe" for step in damage)
    with journal_of(files) as d:
        got, error, reader = read_all(d)
        event(f"read: {type(error).__name__ if error else 'clean'}, {'all' if len(got) == pristine.last_seq else 'a prefix'}")
        assert_prefix(got, pristine, reframed)
        if error is not None:
            assert_clear_corruption(error, files)
        elif reader.position.segment:  # polling again (as `tail -f` does) finds nothing new, and no error
            with time_bound("polling again"):
                assert list(reader.records(reader.position)) == []

        with time_bound("check"):
            report = check(d)
        assert report.ok == (not report.problems)
        if error is not None:
            assert not report.ok, "the reader stopped at damage that verify does not report"
        if report.ok and len(got) < pristine.last_seq and not reframed:
            assert is_a_shorter_copy(files, pristine.files), "records are missing and verify reports nothing"

        # the next writer (cutting a torn tail, if that is what it finds) keeps every record a reader could read
        try:
            with time_bound("recovery"), Journal(d, durability="none", lock_timeout=2.0) as j:
                j.recover()
        except JournalError:
            pass
        after, _, _ = read_all(d)
        assert after[: len(got)] == got


segment_names = st.sampled_from([fmt.segment_name(1), fmt.segment_name(0), fmt.segment_name(2), fmt.segment_name(10**19)])


@given(
    segments=st.dictionaries(segment_names, st.binary(max_size=5000), min_size=1, max_size=3),
    with_header=st.booleans(),
)
def test_random_bytes_as_segments(segments: dict[str, bytes], with_header: bool):
    files = {n: (fmt.encode_header(int(n[4:24]), 1) if with_header else b"") + data for n, data in segments.items()}
    with journal_of(files) as d:
        got, error, _ = read_all(d)
        assert got == []
        if error is not None:
            assert_clear_corruption(error, files)
        with time_bound("check"):
            report = check(d)
        assert error is None or not report.ok


# -- 2. import of damaged exports ---------------------------------------------------------


class Export:
    """A real export, as lines without their newlines."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines

    def __repr__(self) -> str:
        return f"Export({len(self.lines)} lines)"


@pytest.fixture(scope="module")
def export() -> Iterator[Export]:
    """A real export: three runs (a success, a failure, a resumed one) interleaved."""
    a = RunScript(make_run_id(11), stages=2).stage(1).stage(2).complete()
    b = RunScript(make_run_id(12), stages=2, start_ts=T0 + 2_000_000).stage(1).fail_stage(2).fail()
    c = RunScript(make_run_id(13), stages=1, start_ts=T0 + 4_000_000).fail_stage(1).fail().resume().stage(1).complete()
    tmp = Path(tempfile.mkdtemp(prefix="runjournal-fuzz-"))
    write(str(tmp / "journal"), interleave([a, b, c]), batch=7)
    store, task = file_store_of(tmp / "journal")
    lines = [line.rstrip(b"\n") for line in export_lines(store, task)]
    shutil.rmtree(tmp)
    yield Export(lines)


def segment_bytes(directory: str) -> dict[str, bytes]:
    return {n: Path(directory, n).read_bytes() for _, n in fmt.list_segments(directory)} if os.path.isdir(directory) else {}


def import_file(directory: str, content: bytes, source: str = "fz.jsonl") -> int:
    """What `runjournal import` does, in this process: parse every line, then append what is new."""
    with time_bound("import"):
        records = parse_export(io.BytesIO(content), source)
        store, task = file_store_of(directory, durability="none", lock_timeout=2.0)
        with store:
            return import_records(store, task, records)


def assert_refused(error: JournalError, content: bytes, source: str = "fz.jsonl") -> None:
    message = str(error)
    assert "\n" not in message, message
    if content.lstrip()[:1] == b"[":  # one JSON array: the document, or one of its items, is named
        assert re.fullmatch(rf"{re.escape(source)}(:item [1-9]\d*)?: .+; nothing was imported", message), message
        return
    m = re.fullmatch(rf"{re.escape(source)}:(\d+): .+; nothing was imported", message)
    assert m, message
    assert 1 <= int(m.group(1)) <= content.count(b"\n") + 1, message


def records_of(directory: str) -> list[Record]:
    return list(read_records(directory)) if os.path.isdir(directory) else []


def check_import(directory: str, content: bytes) -> None:
    """Import ``content``: all or nothing, verified clean, idempotent, and as the file has it."""
    before, records_before = segment_bytes(directory), records_of(directory)
    have = {r.run_id: r.run_seq for r in records_before}
    try:
        added = import_file(directory, content)
    except JournalError as e:
        event(f"import refused: {str(e).split(': ', 1)[1][:25]}")
        assert_refused(e, content)
        assert records_of(directory) == records_before
        assert not before or segment_bytes(directory) == before
        return
    parsed = parse_export(io.BytesIO(content), "fz.jsonl")
    new = [r for r in parsed if r.run_seq > have.get(r.run_id, 0)]
    event(f"imported: {'nothing' if not new else 'some'}")
    assert added == len(new)
    with time_bound("check"):
        assert check(directory).ok
    held = {(r.run_id, r.run_seq): (r.ts, r.event) for r in read_records(directory)}
    assert all(held[(r.run_id, r.run_seq)] == (r.ts, r.event) for r in new)
    after = segment_bytes(directory)
    assert import_file(directory, content) == 0  # idempotent: the second import adds nothing
    assert segment_bytes(directory) == after


@given(damage=export_damage(), seeded=st.integers(0, 60))
def test_a_damaged_export_imports_whole_or_not_at_all(export: Export, damage, seeded: int):
    lines = export.lines
    for step in damage:
        lines = step.apply(lines)
    content = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory(prefix="runjournal-fuzz-") as tmp:
        d = os.path.join(tmp, "journal")
        if seeded % (len(export.lines) + 1):  # the destination has the first lines already
            import_file(d, b"\n".join(export.lines[: seeded % (len(export.lines) + 1)]))
        check_import(d, content)


@given(content=st.one_of(st.binary(max_size=4000), st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n")))
def test_random_bytes_as_an_export(content: bytes):
    with tempfile.TemporaryDirectory(prefix="runjournal-fuzz-") as tmp:
        check_import(os.path.join(tmp, "journal"), content)


# -- 3. the same through the command line, in real processes (a few examples: slower) ------

_names = itertools.count(1)
FEW = settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_clean_exit(code: int, err: str, reports: bool = False) -> None:
    """Exit 0, 1 or 2; stderr empty or one ``error: ...`` line; no traceback. An error exit has that
    line, unless the command ``reports`` its findings on stdout (`verify` exits 1 for a bad journal)."""
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if err or (code and not (reports and code == 1)):
        assert_one_error_line(err)


@FEW
@given(damage=export_damage())
def test_cli_import_of_a_damaged_export(run_cli, tmp_path: Path, export: Export, damage):
    lines = export.lines
    for step in damage:
        lines = step.apply(lines)
    name = f"x{next(_names)}"
    (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run_cli("import", f"{name}.jsonl", "--task", name)
    assert_clean_exit(code, err)
    if code:
        assert out == "" and err.rstrip().endswith("nothing was imported")


@FEW
@given(damage=journal_damage())
def test_cli_verify_tail_export_of_a_damaged_journal(run_cli, tmp_path: Path, pristine: Pristine, damage: list[Damage]):
    files = dict(pristine.files)
    for step in damage:
        step.apply(files, pristine.last_seq)
    name = f"j{next(_names)}"
    d = tmp_path / ".runs" / name / "journal"
    d.mkdir(parents=True)
    for n, data in files.items():
        (d / n).write_bytes(data)
    for command in ("verify", "tail", "export"):
        code, out, err = run_cli(command, "--task", name)
        assert_clean_exit(code, err, reports=command == "verify")


# -- 4. malformed configs, ids and arguments: one clean error line each ----------------------

RUN = make_run_id(1)
PIPELINE = '{"pipelines": [{"id": "p", "stages": [{"id": "s", "command": "true"}]}]'


def config_with(limits: str) -> bytes:
    return (PIPELINE + ', "runjournal": {' + limits + "}}").encode()


def stage_with(fields: str) -> bytes:
    return ('{"pipelines": [{"id": "p", "stages": [{"id": "s", ' + fields + "}]}]}").encode()


def heartbeat_line(run_id: str = "r", run_seq: int = 1, ts: int = 0, event_json: str = '{"type": "heartbeat"}') -> bytes:
    """One export line (a heartbeat unless ``event_json`` says otherwise)."""
    return f'{{"seq": 1, "run_id": "{run_id}", "run_seq": {run_seq}, "ts": {ts}, "event": {event_json}}}\n'.encode()


@dataclass(frozen=True)
class Row:
    """One bad input: the arguments, the files it needs (relative to the root), the exit code and the
    exact error line (``{root}`` stands for the root directory)."""

    args: tuple[str, ...]
    code: int
    message: str
    files: tuple[tuple[str, bytes | None], ...] = ()  # None: a directory
    env: tuple[tuple[str, str], ...] = ()
    with_run: bool = False


def row(id: str, args: str | tuple[str, ...], code: int, message: str, **kw) -> pytest.param:
    return pytest.param(Row(tuple(args.split()) if isinstance(args, str) else args, code, message, **kw), id=id)


HELP = "(see `runjournal {} --help`)"

CONFIG_ROWS = [
    row("config is a JSON array", "plan --config c.json", 2, "c.json: the config must be a JSON object with a 'pipelines' list", files=(("c.json", b"[1, 2]"),)),
    row("config nested 100000 deep", "plan --config c.json", 2, "c.json: not valid JSON: nested too deeply", files=(("c.json", b"[" * 100_000 + b"]" * 100_000),)),
    row(
        "config with a 5000-digit number",
        "plan --config c.json",
        2,
        "c.json: not valid JSON: an integer of 5000 digits (at most 4300 are read)",
        files=(("c.json", config_with('"outputCapBytes": 1' + "0" * 4999)),),
    ),
    row("limit of 1e999 (infinity)", "plan --config c.json", 2, "c.json: runjournal.cancelGraceSeconds must be a number <= 9223372036", files=(("c.json", config_with('"cancelGraceSeconds": 1e999')),)),
    row("limit NaN", "plan --config c.json", 2, "c.json: runjournal.cancelGraceSeconds must be a number >= 0", files=(("c.json", config_with('"cancelGraceSeconds": NaN')),)),
    row("limit 10**20", "plan --config c.json", 2, "c.json: runjournal.heartbeatIntervalSeconds must be a number <= 9223372036", files=(("c.json", config_with('"heartbeatIntervalSeconds": 100000000000000000000')),)),
    row("output cap of 1 TB", "plan --config c.json", 2, "c.json: runjournal.outputCapBytes must be a number <= 33554432", files=(("c.json", config_with('"outputCapBytes": 1000000000000')),)),
    row("limits a list", "plan --config c.json", 2, "c.json: field 'runjournal' must be an object", files=(("c.json", (PIPELINE + ', "runjournal": []}').encode()),)),
    row("pipelines an object", "plan --config c.json", 2, "c.json: field 'pipelines' must be a non-empty list", files=(("c.json", b'{"pipelines": {"id": "p"}}'),)),
    row("pipeline a string", "plan --config c.json", 2, "c.json: pipeline #1: must be an object", files=(("c.json", b'{"pipelines": ["p"]}'),)),
    row("pipeline id a number", "plan --config c.json", 2, "c.json: pipeline #1: field 'id' must be a non-empty string", files=(("c.json", b'{"pipelines": [{"id": 5, "stages": []}]}'),)),
    row("title a number", "plan --config c.json", 2, "c.json: pipeline 'p': field 'title' must be a non-empty string", files=(("c.json", b'{"pipelines": [{"id": "p", "title": 5, "stages": []}]}'),)),
    row("stages an object", "plan --config c.json", 2, "c.json: pipeline 'p': field 'stages' must be a non-empty list", files=(("c.json", b'{"pipelines": [{"id": "p", "stages": {"id": "s"}}]}'),)),
    row("tags a string", "plan --config c.json", 2, "c.json: pipeline 'p': field 'tags' must be a list of strings", files=(("c.json", b'{"pipelines": [{"id": "p", "tags": "ci", "stages": [{"id": "s", "command": "true"}]}]}'),)),
    row(
        "guardrailsRequired a string",
        "plan --config c.json",
        2,
        "c.json: pipeline 'p': field 'guardrailsRequired' must be true or false",
        files=(("c.json", b'{"pipelines": [{"id": "p", "guardrailsRequired": "yes", "stages": [{"id": "s", "command": "true"}]}]}'),),
    ),
    row("stage a number", "plan --config c.json", 2, "c.json: pipeline 'p' stage #1: must be an object", files=(("c.json", b'{"pipelines": [{"id": "p", "stages": [5]}]}'),)),
    row("stage id a list", "plan --config c.json", 2, "c.json: pipeline 'p' stage #1: field 'id' must be a non-empty string", files=(("c.json", b'{"pipelines": [{"id": "p", "stages": [{"id": ["s"], "command": "true"}]}]}'),)),
    row("kind a list", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': unknown kind ['command'] (expected 'command' or 'subpipeline')", files=(("c.json", stage_with('"kind": ["command"], "command": "true"')),)),
    row("command a number", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'command' must be a non-empty string", files=(("c.json", stage_with('"command": 5')),)),
    row("cwd a number", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'cwd' must be a non-empty string", files=(("c.json", stage_with('"command": "true", "cwd": 5')),)),
    row("env a list", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'env' must be an object of string values", files=(("c.json", stage_with('"command": "true", "env": ["A=1"]')),)),
    row(
        "optional a string",
        "plan --config c.json",
        2,
        "c.json: pipeline 'p' stage 's': field 'optional' must be true or false",
        files=(("c.json", b'{"pipelines": [{"id": "p", "stages": [{"id": "s", "kind": "subpipeline", "pipeline": "q", "optional": "no"}]}, {"id": "q", "stages": [{"id": "t", "command": "true"}]}]}'),),
    ),
    row("NUL in a command", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'command' must not contain NUL", files=(("c.json", stage_with('"command": "tr\\u0000ue"')),)),
    row("NUL in a cwd", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'cwd' must not contain NUL", files=(("c.json", stage_with('"command": "true", "cwd": "a\\u0000"')),)),
    row("NUL in an env value", "plan --config c.json", 2, "c.json: pipeline 'p' stage 's': field 'env' value of 'A' must not contain NUL", files=(("c.json", stage_with('"command": "true", "env": {"A": "x\\u0000"}')),)),
    row(
        "'=' in an env name",
        "plan --config c.json",
        2,
        "c.json: pipeline 'p' stage 's': field 'env' has the name 'A=B': a variable name must not be empty or contain '=' or NUL",
        files=(("c.json", stage_with('"command": "true", "env": {"A=B": "x"}')),),
    ),
    row(
        "empty env name",
        "plan --config c.json",
        2,
        "c.json: pipeline 'p' stage 's': field 'env' has the name '': a variable name must not be empty or contain '=' or NUL",
        files=(("c.json", stage_with('"command": "true", "env": {"": "x"}')),),
    ),
    row("config not UTF-8", "plan --config c.json", 2, "c.json: not valid JSON: 'utf-8' codec can't decode byte 0xe9 in position 15: invalid continuation byte", files=(("c.json", b'{"pipelines": "\xe9t\xe9"}'),)),
    row("config empty", "plan --config c.json", 2, "c.json: not valid JSON: Expecting value: line 1 column 1 (char 0)", files=(("c.json", b""),)),
    row("--config a directory", "plan --config cdir", 2, f"Invalid value for '--config': File 'cdir' is a directory. {HELP.format('plan')}", files=(("cdir", None),)),
    row("root config a directory", "plan", 2, "cannot read config {root}/codex.orchestrator.json: Is a directory", files=(("codex.orchestrator.json", None),)),
]

ID_ROWS = [
    row("task id of 300 bytes", ("tail", "--task", "é" * 150), 2, f"task id '{'é' * 40}'... is 300 bytes as UTF-8, longer than 200"),
    row("task id of 300 characters", ("tail", "--task", "x" * 300), 2, f"task id '{'x' * 40}'... is longer than 200 characters"),
    row("task id .", "tail --task .", 2, "task id '.' must not start with '.'"),
    row("task id ..", "tail --task ..", 2, "task id '..' must not contain '..'"),
    row("task id a..b", "tail --task a..b", 2, "task id 'a..b' must not contain '..'"),
    row("task id with U+0085", ("tail", "--task", "a\x85b"), 2, "task id 'a\\x85b' must not contain control characters"),
    row("task id not UTF-8", ("tail", "--task", "a\udcffb"), 2, "task id 'a\\udcffb' is not valid UTF-8"),
    row("task id with a right-to-left override", ("tail", "--task", "a\u202eb"), 2, "no journal for task a<U+202E>b at {root}/.runs/a<U+202E>b/journal; no task has a journal there yet"),
    row("run id empty", ("show", ""), 2, "run id must not be empty"),
    row("run id of 201 characters", ("status", "x" * 201), 2, f"run id '{'x' * 40}'... is longer than 200 characters"),
    row("parent run id ..", "start --parent-run ..", 2, "run id '..' must not contain '..'"),
    row("import: run id with NUL", "import nul.jsonl", 2, "nul.jsonl:1: run id 'a\\x00b' must not contain control characters; nothing was imported", files=(("nul.jsonl", heartbeat_line("a\\u0000b")),)),
    row("import: run_seq 0", "import zero.jsonl", 2, "zero.jsonl:1: run_seq 0 is not a run sequence (1, 2, 3 ...) - at `$.run_seq`; nothing was imported", files=(("zero.jsonl", heartbeat_line(run_seq=0)),)),
    row(
        "import: ts below -2**63",
        "import ts.jsonl",
        2,
        "ts.jsonl:1: Integer -99999999999999999999 is out of range (msgpack holds 64 bits) - at `$.ts`; nothing was imported",
        files=(("ts.jsonl", heartbeat_line(ts=-99999999999999999999)),),
    ),
    row(
        "import: event field of 2**64",
        "import big.jsonl",
        2,
        "big.jsonl:1: Integer 18446744073709551616 is out of range (msgpack holds 64 bits) - at `$.event.index`; nothing was imported",
        files=(("big.jsonl", heartbeat_line(event_json='{"type": "stage_started", "index": 18446744073709551616, "stage_id": "s"}')),),
    ),
    row(
        "import: a run that starts in the middle",
        "import late.jsonl",
        2,
        "late.jsonl:1: run r has 0 events here and the file continues at 3: export the whole run and import that; nothing was imported",
        files=(("late.jsonl", heartbeat_line(run_seq=3)),),
    ),
    row("import: random bytes", "import junk.bin", 2, "junk.bin:1: JSON is malformed: byte 0xff at 1 is not UTF-8 (invalid start byte); nothing was imported", files=(("junk.bin", b"\x00\xff\x13 not json"),)),
    row("import: a directory", "import jdir", 2, f"Invalid value for 'FILE': File 'jdir' is a directory. {HELP.format('import')}", files=(("jdir", None),)),
]

ARG_ROWS = [
    row("--durability bogus", "start --durability bogus", 2, f"No such option '--durability'. {HELP.format('start')}"),
    row("option misspelt", "tail --folow", 2, f"No such option '--folow'. Did you mean '--follow'? {HELP.format('tail')}"),
    row("--limit 0", "runs --limit 0", 2, f"Invalid value for '--limit': 0 is not in the range x>=1. {HELP.format('runs')}"),
    row("--limit -3", "runs --limit -3", 2, f"Invalid value for '--limit': -3 is not in the range x>=1. {HELP.format('runs')}"),
    row("--limit abc", "runs --limit abc", 2, f"Invalid value for '--limit': 'abc' is not a valid integer range. {HELP.format('runs')}"),
    row("--since -1", "tail --since -1", 2, f"Invalid value for '--since': -1 is not in the range x>=1. {HELP.format('tail')}"),
    row("--poll 0", "watch --poll 0", 2, f"Invalid value for '--poll': 0.0 is not in the range x>0. {HELP.format('watch')}"),
    row("--poll nan", "watch --poll nan", 2, f"Invalid value for '--poll': 'nan' is not a finite number. {HELP.format('watch')}"),
    row("--poll inf", "watch --poll inf", 2, f"Invalid value for '--poll': 'inf' is not a finite number. {HELP.format('watch')}"),
    row("--speed nan", f"replay {RUN} --speed nan", 2, f"Invalid value for '--speed': 'nan' is not a finite number. {HELP.format('replay')}"),
    row("--speed inf", f"replay {RUN} --speed inf", 2, f"Invalid value for '--speed': 'inf' is not a finite number. {HELP.format('replay')}"),
    row("--speed -1", f"replay {RUN} --speed -1", 2, f"Invalid value for '--speed': -1.0 is not in the range x>0. {HELP.format('replay')}"),
    *[
        row(
            f"--at {at!r}",
            ("replay", RUN, "--at", at),
            2,
            f"Invalid value for '--at': {at!r} is not a sequence number, +SECONDS or an ISO-8601 time (e.g. 42, +12.5s, 2025-12-01T09:37:20Z) {HELP.format('replay')}",
            with_run=True,
        )
        for at in ("+inf", "+1e300", "²", "", "-1", "2025-13-01", "+5s5")
    ],
    row("--events 0", "bench --events 0", 2, f"Invalid value for '--events': 0 is not in the range x>=1000. {HELP.format('bench')}"),
    row("--writers 0", "bench --writers 0", 2, f"Invalid value for '--writers': 0 is not in the range 1<=x<=512. {HELP.format('bench')}"),
    row("--root a file", "--root afile verify", 2, "Invalid value for '--root': Directory 'afile' is a file. (see `runjournal --help`)", files=(("afile", b""),)),
    row("--root inside a file", "--root afile/sub runs", 2, "--root {root}/afile/sub: {root}/afile is a file", files=(("afile", b""),)),
    row("--runs-dir inside a file", "--runs-dir afile/x verify", 2, "--runs-dir {root}/afile/x: {root}/afile is a file", files=(("afile", b""),)),
    row("$RUNJOURNAL_ROOT a file", "verify", 2, "$RUNJOURNAL_ROOT {root}/afile is a file, not a directory", files=(("afile", b""),), env=(("RUNJOURNAL_ROOT", "afile"),)),
    row("resume --reason blank", ("resume", RUN, "--reason", " "), 2, "--reason must not be empty: say why the run is resumed (the manifest schema requires it)"),
]


def make_row_files(root: Path, r: Row) -> None:
    for name, data in r.files:
        if data is None:
            (root / name).mkdir()
        else:
            (root / name).write_bytes(data)
    if r.with_run:
        write(str(root / ".runs" / "default" / "journal"), RunScript(RUN, stages=1).stage(1).complete().items)


@pytest.mark.parametrize("r", CONFIG_ROWS + ID_ROWS + ARG_ROWS)
def test_bad_input_gives_one_clean_error_line(tmp_path: Path, monkeypatch, capsys, r: Row):
    make_row_files(tmp_path, r)
    monkeypatch.chdir(tmp_path)  # relative names in messages, as in the docs
    for name in LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in r.env:
        monkeypatch.setenv(name, value)
    argv = list(r.args) if r.env else ["--root", str(tmp_path), *r.args]  # the variable names the root
    capsys.readouterr()
    with time_bound(" ".join(r.args)), pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (r.code, ""), err
    assert assert_one_error_line(err) == "error: " + r.message.format(root=tmp_path)


@pytest.mark.parametrize("command", ["show", "status", "replay"])
def test_a_directory_that_is_not_a_task_does_not_hide_every_run(tmp_path: Path, monkeypatch, capsys, command: str):
    write(str(tmp_path / ".runs" / "nightly" / "journal"), RunScript(RUN, stages=1).stage(1).complete().items)
    (tmp_path / ".runs" / "a..b" / "journal").mkdir(parents=True)  # made by hand: not a valid task id
    for name in LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--root", str(tmp_path), command, RUN])
    out, err = capsys.readouterr()
    assert (exit_.value.code, err) == (0, "") and RUN in out


# -- 5. what the fuzz run found: each was a traceback, a hang or a silent loss --------------


def one_record_journal(directory: Path) -> None:
    with Journal(str(directory), durability="none") as j:
        j.append("a", ev.Heartbeat())


def test_a_directory_named_like_a_segment_is_reported_by_check(journal_dir: Path):
    one_record_journal(journal_dir)
    (journal_dir / fmt.segment_name(2)).mkdir()
    report = check(str(journal_dir))
    assert [(p.segment, p.kind, p.detail) for p in report.problems] == [
        (fmt.segment_name(1), "corrupt", "segment is not sealed but another follows it"),
        (fmt.segment_name(2), "bad-header", "is a directory, not a segment file"),
    ]


def test_a_directory_in_the_chain_is_corruption_for_readers_and_writers(journal_dir: Path):
    with Journal(str(journal_dir), durability="none", segment_bytes=100) as j:
        for _ in range(3):
            j.append("a", ev.Heartbeat())
    second = fmt.list_segments(str(journal_dir))[1][1]
    (journal_dir / second).unlink()
    (journal_dir / second).mkdir()
    with pytest.raises(CorruptRecord, match=f"{second} at byte 0: is a directory, not a segment file"):
        list(read_records(str(journal_dir)))
    (journal_dir / HEAD).unlink()  # as after a reboot: the writer reads the chain
    with pytest.raises(CorruptRecord, match=f"{second} at byte 0: is a directory"), Journal(str(journal_dir)) as j:
        j.append("a", ev.Heartbeat())


CHECK = "import sys; from runjournal.journal import check; print(check(sys.argv[1]).ok)"
READ = "import sys; from runjournal.journal import CorruptRecord, read_records\ntry: list(read_records(sys.argv[1]))\nexcept CorruptRecord as e: print(e)"


def run_for_at_most(seconds: float, script: str, directory: Path) -> str:
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True, text=True, env=clean_env(), timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not return within {seconds} s")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_fifo_named_like_a_segment_does_not_hang_verify(journal_dir: Path):
    one_record_journal(journal_dir)
    os.mkfifo(journal_dir / fmt.segment_name(2))
    assert run_for_at_most(3, CHECK, journal_dir) == "False\n"
    assert [(p.segment, p.detail) for p in check(str(journal_dir)).problems][1:] == [(fmt.segment_name(2), "is a FIFO, not a segment file")]


def test_a_fifo_in_the_chain_does_not_hang_readers(journal_dir: Path):
    with Journal(str(journal_dir), durability="none", segment_bytes=100) as j:
        for _ in range(3):
            j.append("a", ev.Heartbeat())
    second = fmt.list_segments(str(journal_dir))[1][1]
    (journal_dir / second).unlink()
    os.mkfifo(journal_dir / second)
    out = run_for_at_most(3, READ, journal_dir)
    assert out.startswith(f"corrupt record in {second} at byte 0: is a FIFO, not a segment file"), out


FLUSH = "import sys; from runjournal.journal import Journal\nwith Journal(sys.argv[1]) as j: j.flush()\nprint('flushed')"


def test_a_fifo_in_pending_is_set_aside_without_hanging_a_writer(journal_dir: Path):
    one_record_journal(journal_dir)
    pending = journal_dir / "pending"
    pending.mkdir(exist_ok=True)
    os.mkfifo(pending / "01795726964628116759-17522-000001.rjp")
    assert run_for_at_most(5, FLUSH, journal_dir) == "flushed\n"
    assert os.listdir(pending) == ["01795726964628116759-17522-000001.rjp.damaged"]
    assert [p.kind for p in check(str(journal_dir)).problems] == ["damaged-spill"]


def test_a_missing_first_segment_is_reported(journal_dir: Path):
    with Journal(str(journal_dir), durability="none", segment_bytes=100) as j:  # one record per segment
        j.append("a", ev.Heartbeat())  # run a: all of it in the first segment
        j.append("b", ev.Heartbeat())
        j.append("b", ev.Heartbeat())
    (journal_dir / fmt.segment_name(1)).unlink()
    second = fmt.segment_name(2)
    missing = f"segment starts at sequence 2, expected 1: the journal's first segment {fmt.segment_name(1)} is missing"
    with pytest.raises(CorruptRecord, match=f"{second} at byte 0: {missing}"):
        list(read_records(str(journal_dir)))
    assert [(p.segment, p.kind, p.detail) for p in check(str(journal_dir)).problems] == [(second, "unreachable-segment", missing)]
    (journal_dir / HEAD).unlink()  # as after a reboot: the writer reads the chain
    with pytest.raises(CorruptRecord, match=missing), Journal(str(journal_dir)) as j:
        j.append("b", ev.Heartbeat())


def test_a_reader_racing_a_rollover_does_not_report_corruption(journal_dir: Path, monkeypatch):
    with Journal(str(journal_dir), durability="none", segment_bytes=400) as j:
        j.append("a", ev.Heartbeat())
    seg = journal_dir / fmt.segment_name(1)
    batch = fmt.encode_batch([ev.encoder.encode(Record(2, "a", 2, T0, ev.Heartbeat())), ev.encoder.encode(Record(3, "a", 3, T0, ev.Heartbeat()))])
    with open(seg, "ab") as f:
        f.write(batch[:20])  # a writer is in the middle of its write() ...
    listed = fmt.list_segments
    calls = []

    def writer_moves_on(directory):
        calls.append(directory)
        if len(calls) == 2:  # ... and, after the reader has scanned the segment, finishes it and rolls over
            with open(seg, "ab") as f:
                f.write(batch[20:])
            with Journal(str(journal_dir), durability="none", segment_bytes=400) as j:
                j.append("a", ev.OutputChunk(index=1, stream="stdout", data=b"x" * 500))
        return listed(directory)

    monkeypatch.setattr(fmt, "list_segments", writer_moves_on)
    assert [r.seq for r in read_records(str(journal_dir))] == [1, 2, 3, 4]
    assert [n for _, n in listed(str(journal_dir))] == [fmt.segment_name(1), fmt.segment_name(4)]


@pytest.mark.parametrize("where", ["read_records", "check"])
def test_a_record_with_a_string_that_is_not_utf8_is_corruption(journal_dir: Path, where: str):
    one_record_journal(journal_dir)
    payload = ev.encoder.encode(Record(2, "b", 1, T0, ev.Heartbeat()))
    assert payload.count(b"\xa1b") == 1
    seg = journal_dir / fmt.segment_name(1)
    offset = seg.stat().st_size
    with open(seg, "ab") as f:  # run id "\x80": framed and checksummed like any record
        f.write(linked_batch(f.name, [payload.replace(b"\xa1b", b"\xa1\x80")]))
    at = payload.index(b"\xa1b") + 1
    detail = f"record does not decode: a string is not UTF-8 (byte 0x80 at {at}: invalid start byte)"
    if where == "read_records":
        with pytest.raises(CorruptRecord, match=re.escape(f"at byte {offset}: {detail}")):
            list(read_records(str(journal_dir)))
    else:
        assert [(p.offset, p.kind, p.detail) for p in check(str(journal_dir)).problems] == [(offset, "corrupt", detail)]


@pytest.mark.parametrize("where", ["read_records", "check"])
def test_a_record_nested_too_deeply_is_corruption(journal_dir: Path, where: str):
    one_record_journal(journal_dir)
    heartbeat = ev.encoder.encode(Record(2, "b", 1, T0, ev.Heartbeat()))
    assert heartbeat.endswith(b"\x81\xa4type\xa9heartbeat\xc0")
    deep = heartbeat[: -len(b"\x81\xa4type\xa9heartbeat\xc0")] + b"\x82\xa4type\xa9heartbeat\xa1x" + b"\x91" * 100_000 + b"\x01\xc0"
    seg = journal_dir / fmt.segment_name(1)
    offset = seg.stat().st_size
    with open(seg, "ab") as f:  # an unknown field holding 100,000 nested arrays, checksummed
        f.write(linked_batch(f.name, [deep]))
    at = len(heartbeat) - len(b"\x81\xa4type\xa9heartbeat\xc0") + len(b"\x82\xa4type\xa9heartbeat\xa1x") + 30  # the 33rd array or map
    detail = f"record does not decode: values nested too deeply (more than 32 levels at byte {at})"
    if where == "read_records":
        with pytest.raises(CorruptRecord, match=re.escape(f"at byte {offset}: {detail}")):
            list(read_records(str(journal_dir)))
    else:
        assert [(p.offset, p.kind, p.detail) for p in check(str(journal_dir)).problems] == [(offset, "corrupt", detail)]


@pytest.mark.parametrize(
    "items, where",
    [
        ([Item("a", ev.Heartbeat(), 1 << 64)], "Integer 18446744073709551616 is out of range (msgpack holds 64 bits) - at `$.ts`"),
        ([Item("a", ev.Heartbeat(), -(1 << 63) - 1)], "Integer -9223372036854775809 is out of range (msgpack holds 64 bits) - at `$.ts`"),
        (
            [Item("a", ev.Heartbeat(), T0), Item("a", ev.StageStarted(index=1 << 64, stage_id="s"), T0)],
            "event 2 of 2: Integer 18446744073709551616 is out of range (msgpack holds 64 bits) - at `$.event.index`",
        ),
    ],
    ids=["ts of 2**64", "ts below -2**63", "an event field of 2**64"],
)
def test_an_append_with_an_integer_outside_64_bits_is_bad_input(journal_dir: Path, items: list[Item], where: str):
    with Journal(str(journal_dir), durability="none") as j:
        j.append("a", ev.Heartbeat())
        with pytest.raises(BadInput, match=re.escape(f"{where}; nothing was written")):
            j.append_batch(items)
        with pytest.raises(BadInput, match=re.escape("Integer 18446744073709551616 is out of range (msgpack holds 64 bits) - at `$.event.index`; nothing was written")):
            j.append("a", ev.StageStarted(index=1 << 64, stage_id="s"))
        assert [(r.seq, r.run_seq) for r in j.append_batch([Item("a", ev.Heartbeat())])] == [(2, 2)]
    assert [r.seq for r in read_records(str(journal_dir))] == [1, 2]
    assert check(str(journal_dir)).ok


def test_an_integer_outside_64_bits_is_bad_input_when_the_lock_is_busy_too(journal_dir: Path):
    one_record_journal(journal_dir)
    holder = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "helpers" / "lock_holder.py"), str(journal_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert holder.stdout.readline() == f"locked {holder.pid}\n"
        with Journal(str(journal_dir), lock_timeout=0.2) as j, pytest.raises(BadInput, match=r"- at `\$\.ts`; nothing was written"):
            j.append_batch([Item("a", ev.Heartbeat(), 1 << 64)])  # refused, not spilled
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    assert not (journal_dir / "pending").exists()
