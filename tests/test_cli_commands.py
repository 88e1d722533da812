"""What every command shares (contract section 5), checked over every entry of ``COMMANDS``:
help that ends with an example, exit 2 for an unknown run or bad input, the one task rule for
run ids, and a --format help that says JSON Lines where the command streams."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_one_error_line
from helpers.histories import RunScript, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture
from helpers.runner_support import cmd, pipeline, write_config

from runjournal.cli.main import COMMANDS, cli

KNOWN = make_run_id(1)
UNKNOWN = make_run_id(99)


def _command(name: str):
    return cli.get_command(None, name)


def _takes_a_run_id(name: str) -> bool:
    return any(p.name == "run_id" for p in _command(name).params)


@pytest.fixture
def journals(tmp_path: Path, monkeypatch) -> Path:
    """Task nightly holds run KNOWN; task default holds another run; a config; the working
    directory is the root (the cases name files in it)."""
    monkeypatch.chdir(tmp_path)
    populate(tmp_path, RunScript(KNOWN, task="nightly").stage(1).complete().items, task="nightly")
    populate(tmp_path, RunScript(make_run_id(2)).items)
    write_config(tmp_path, pipeline("ci", cmd("build", "true")))
    (tmp_path / "bad.jsonl").write_text("not json\n")
    return tmp_path


#: for each command, an invocation that is bad input (an unknown run where the command takes a
#: run id), and what its one error line says. A new command needs a row.
BAD_INPUT = {
    "init": ([], "codex.orchestrator.json already exists"),
    "plan": (["no-such-pipeline"], "no-such-pipeline"),
    "start": (["no-such-pipeline"], "no-such-pipeline"),
    "exec": (["--task", "../x", "--", "true"], "task id '../x' must not contain '/'"),
    "resume": ([UNKNOWN, "--token", "x"], f"no run {UNKNOWN} in any task under"),
    "status": ([UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "runs": (["--task", "no-such-task"], "no journal for task no-such-task at"),
    "show": ([UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "replay": ([UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "tail": (["--run", UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "project": (["--task", "no-such-task"], "no journal for task no-such-task at"),
    "watch": (["--task", "../x"], "task id '../x' must not contain '/'"),
    "verify": (["--task", "no-such-task"], "no journal for task no-such-task at"),
    "upgrade": (["--task", "no-such-task"], "no journal for task no-such-task at"),
    "archive": (["--task", "no-such-task", "--keep-last", "1"], "no journal for task no-such-task at"),
    "prune": (["--task", "no-such-task", "--keep-last", "1"], "no journal for task no-such-task at"),
    "export": (["--run", UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "import": (["bad.jsonl"], "bad.jsonl:1"),
    "copy": (["--to", "elsewhere", "--task", "no-such-task"], "no journal for task no-such-task"),
    "bench": (["--events", "10"], "'--events'"),
    "logs": ([UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "cancel": ([UNKNOWN], f"no run {UNKNOWN} in any task under"),
    "report": (["--task", "no-such-task"], "no journal for task no-such-task at"),
}


def test_every_command_has_a_bad_input_case():
    assert set(COMMANDS) <= set(BAD_INPUT), "a new command needs a row in BAD_INPUT"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_input_and_an_unknown_run_exit_2_with_one_line(journals, invoke, name):
    args, says = BAD_INPUT[name]
    if _takes_a_run_id(name):
        assert UNKNOWN in args, f"{name} takes a run id: its case is an unknown run"
    (journals / "elsewhere").mkdir()
    code, out, err = invoke(name, *args)
    assert (code, out) == (2, ""), err
    assert_one_error_line(err, says)


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if _takes_a_run_id(n)))
def test_a_run_id_is_looked_up_in_every_task(journals, invoke, name):
    """The one task rule: no --task and the run in one task (nightly, not default) is found
    there; in several tasks it is refused, naming them."""
    args = [a if a != UNKNOWN else KNOWN for a in BAD_INPUT[name][0]]
    code, _, err = invoke(name, *args)
    assert f"no run {KNOWN}" not in err and "no journal for task default" not in err
    populate(journals, RunScript(KNOWN, task="copy").items, task="copy")
    code, out, err = invoke(name, *args)
    assert (code, out) == (2, "")
    assert err == f"error: run {KNOWN} is in several tasks: copy, nightly; choose one with --task\n"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_ends_with_an_example(invoke, name):
    code, out, err = invoke(name, "--help")
    assert (code, err) == (0, "")
    last = out.split("Options:")[0].strip().split("\n\n")[-1]  # the description's last paragraph
    example = " ".join(last.split())
    assert example.startswith(f"Example: runjournal {name}"), last


#: commands that print JSON Lines with --format json (always, or in a streaming mode)
STREAMING = {"tail": "with -f", "replay": "with --speed", "status": "with --watch", "watch": "", "logs": "with -f"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_format_help_says_json_lines_where_the_command_streams(name):
    [option] = [p for p in _command(name).params if p.name == "fmt"] or [None]
    if option is None:
        pytest.skip(f"{name} has no --format")
    help_text = option.help
    if name in STREAMING:
        assert f"{STREAMING[name]}, JSON Lines (one JSON object per line)".lstrip(", ") in help_text, help_text
    else:
        assert "JSON Lines" not in help_text, help_text
