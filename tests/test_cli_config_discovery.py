"""Where the CLI finds its root and config: upward from the current directory to the repository's
top, never a silent starter, never a root that does not exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env
from helpers.runner_support import cmd, pipeline, write_config

from runjournal.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def here(cwd: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI run in ``cwd`` without --root, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "runjournal", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository (``.git``) with a subdirectory ``sub/deeper``, and no config yet."""
    top = tmp_path / "repo"
    (top / ".git").mkdir(parents=True)
    (top / "sub" / "deeper").mkdir(parents=True)
    return top


def _runs_dirs(top: Path) -> list[Path]:
    return sorted(Path(d) / n for d, names, _ in os.walk(top) for n in names if n == ".runs")


def _not_found(where: str, root: Path, command: str = "start") -> str:
    return (
        f"error: no codex.orchestrator.json in {where}: write one in {root} with `runjournal init`, "
        f"run the embedded starter with `runjournal {command} --starter`, or name one with --config FILE\n"
    )


# -- no config: refused, saying where it looked -------------------------------------------


@pytest.mark.parametrize("command", ["start", "plan"])
def test_no_config_up_to_the_repository_top_is_refused(repo: Path, command: str):
    deeper = repo / "sub" / "deeper"
    p = here(deeper, command)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == _not_found(f"{deeper} or its parents up to {repo} (the repository root)", deeper, command)
    assert _runs_dirs(repo) == []  # nothing was run or recorded, anywhere


def test_a_config_above_the_repository_is_not_used(repo: Path):
    write_config(repo.parent, pipeline("outside", cmd("a", "touch ran")))
    p = here(repo, "start")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == _not_found(f"{repo} (the repository root)", repo)
    assert not (repo.parent / "ran").exists()


def test_no_config_in_a_named_root_is_refused_naming_it(tmp_path: Path):
    p = here(tmp_path, "--root", tmp_path, "start")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == _not_found(f"{tmp_path} (--root)", tmp_path)
    p = here(tmp_path, "start", env={"RUNJOURNAL_ROOT": str(tmp_path)})
    assert (p.returncode, p.stderr) == (2, _not_found(f"{tmp_path} ($RUNJOURNAL_ROOT)", tmp_path))
    assert not (tmp_path / ".runs").exists()


# -- a config found upward: its directory is the root --------------------------------------


def test_start_in_a_subdirectory_runs_the_projects_config_with_runs_at_its_root(repo: Path):
    write_config(repo, pipeline("ci", cmd("where", 'pwd; echo "$CODEX_ORCHESTRATOR_REPO_ROOT"')))
    deeper = repo / "sub" / "deeper"
    p = here(deeper, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["manifest"] == str(repo / ".runs" / "default" / "cli" / result["run_id"] / "manifest.json")
    assert _runs_dirs(repo) == [repo / ".runs"]  # no sub/deeper/.runs
    log = repo / ".runs" / "default" / "cli" / result["run_id"] / "commands" / "01-where.log"
    assert log.read_text() == f"{repo}\n{repo}\n"  # stages run in the root, as with --root

    # every command finds the same root from there: the run is listed
    listed = here(deeper, "runs", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [result["run_id"]]


def test_exec_in_a_subdirectory_runs_there_and_is_recorded_at_the_root(repo: Path):
    write_config(repo, pipeline("ci", cmd("a", "true")))
    deeper = repo / "sub" / "deeper"
    p = here(deeper, "exec", "--format", "json", "--", "pwd")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    run_dir = repo / ".runs" / "default" / "cli" / result["run_id"]
    assert (run_dir / "commands" / "01-exec.log").read_text() == f"{deeper}\n"
    assert _runs_dirs(repo) == [repo / ".runs"]


def test_the_nearest_config_wins(repo: Path):
    write_config(repo, pipeline("top", cmd("a", "true")))
    write_config(repo / "sub", pipeline("inner", cmd("a", "true")))
    p = here(repo / "sub" / "deeper", "plan", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert (json.loads(p.stdout)["config"], json.loads(p.stdout)["pipeline_id"]) == (str(repo / "sub" / "codex.orchestrator.json"), "inner")


# -- the starter, only when asked for ------------------------------------------------------


def test_starter_runs_the_embedded_pipeline_without_a_config(repo: Path):
    p = here(repo, "start", "--starter", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["status"] == "succeeded"
    doc = json.loads(Path(result["manifest"]).read_text())
    assert (doc["pipeline_id"], [c["id"] for c in doc["commands"]]) == ("hello", ["where", "system", "check"])
    assert _runs_dirs(repo) == [repo / ".runs"]


def test_starter_and_config_exclude_each_other(tmp_path: Path):
    config = write_config(tmp_path, pipeline("p", cmd("a", "true")))
    p = here(tmp_path, "start", "--starter", "--config", config)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == "error: --starter and --config exclude each other: give one (see `runjournal start --help`)\n"
    assert not (tmp_path / ".runs").exists()


def test_the_readme_command_runs_in_a_fresh_clone(repo: Path):
    """The README's first command, in a checkout without codex.orchestrator.json: the starter runs."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) == 2, blocks  # one to set up and run, one to test
    setup = blocks[0]
    assert "\n" not in setup
    runjournal = setup.rsplit("&& ", 1)[1].split()
    assert runjournal[0] == ".venv/bin/runjournal"
    p = here(repo, *runjournal[1:])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].endswith(" succeeded")
    assert _runs_dirs(repo) == [repo / ".runs"]


# -- a root that does not exist: an error for every command, never created -----------------


def _invoke(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main([*args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_root_that_does_not_exist_is_refused_by_every_command(tmp_path: Path, capsys, monkeypatch, command: str):
    for name in ("RUNJOURNAL_ROOT", "CODEX_ORCHESTRATOR_ROOT"):
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path / "nope"
    code, out, err = _invoke(capsys, "--root", str(missing), command)
    assert (code, out) == (2, "")
    assert err == f"error: --root {missing} does not exist (the root is never created: create it, or give an existing directory)\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("variable", ["RUNJOURNAL_ROOT", "CODEX_ORCHESTRATOR_ROOT"])
def test_a_root_variable_that_does_not_exist_is_refused(tmp_path: Path, variable: str):
    missing = tmp_path / "nope"
    p = here(tmp_path, "runs", env={variable: str(missing)})
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"error: ${variable} {missing} does not exist (the root is never created: create it, or give an existing directory)\n"
    assert not missing.exists()


def test_init_and_start_agree_on_a_missing_root(tmp_path: Path):
    missing = tmp_path / "nope"
    init, start = here(tmp_path, "--root", missing, "init"), here(tmp_path, "--root", missing, "start", "--starter")
    assert (init.returncode, init.stderr) == (start.returncode, start.stderr) == (2, f"error: --root {missing} does not exist (the root is never created: create it, or give an existing directory)\n")
    assert not missing.exists()


def test_init_in_a_subdirectory_writes_where_start_then_finds_it(repo: Path):
    deeper = repo / "sub" / "deeper"
    p = here(deeper, "init")
    assert (p.returncode, p.stdout) == (0, f"wrote {deeper / 'codex.orchestrator.json'}: edit its stages, then `runjournal plan` and `runjournal start`\n")
    started = here(deeper, "start", "--format", "json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["manifest"].startswith(str(deeper / ".runs") + os.sep)
