"""`runjournal init`: a starter config that runs on this machine, never overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import assert_one_error_line, clean_env
from helpers.runner_support import cli, manifest, metrics

from runjournal.runner import starter_text


def test_init_writes_a_starter_that_start_runs(tmp_path: Path):
    p = cli(tmp_path, "init")
    assert p.returncode == 0, p.stderr
    config = tmp_path / "codex.orchestrator.json"
    assert p.stdout == f"wrote {config}: edit its stages, then `runjournal plan` and `runjournal start`\n"
    assert config.read_text() == starter_text()

    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["status"] == "succeeded"
    doc = manifest(tmp_path, result["run_id"])
    stages = json.loads(config.read_text())["pipelines"][0]["stages"]
    assert [c["id"] for c in doc["commands"]] == [s["id"] for s in stages]
    assert {c["status"] for c in doc["commands"]} == {"succeeded"}
    assert [m["status"] for m in metrics(tmp_path)] == ["succeeded"]


def test_a_second_init_refuses_and_leaves_the_file_alone(tmp_path: Path):
    assert cli(tmp_path, "init").returncode == 0
    config = tmp_path / "codex.orchestrator.json"
    config.write_text('{"pipelines": [{"id": "mine", "stages": [{"id": "a", "command": "true"}]}]}\n')
    before = (config.read_bytes(), config.stat().st_mtime_ns)

    p = cli(tmp_path, "init")
    assert p.returncode == 2
    assert p.stdout == ""
    assert_one_error_line(p.stderr, f"{config} already exists; not overwriting it")
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["codex.orchestrator.json"]


def test_the_guides_quick_start_and_ci_recipe_run_from_anywhere_in_the_checkout(tmp_path: Path):
    """`runjournal init` at the repository's top, then `plan && start --quiet-token` in a subdirectory."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()

    def here(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runjournal", *args], capture_output=True, text=True, cwd=cwd, env=clean_env(), timeout=60)

    assert here(repo, "init").returncode == 0
    planned = here(repo / "src", "plan")
    assert (planned.returncode, planned.stderr) == (0, "")
    started = here(repo / "src", "start", "--quiet-token", "--format", "json")
    assert started.returncode == 0, started.stderr
    result = json.loads(started.stdout)
    assert (result["status"], result["resume_token"]) == ("succeeded", None)
    assert result["manifest"] == str(repo / ".runs" / "default" / "cli" / result["run_id"] / "manifest.json")
    assert not (repo / "src" / ".runs").exists()


def test_init_under_a_root_that_does_not_exist_creates_nothing(tmp_path: Path):
    missing = tmp_path / "nope" / "deeper"
    p = cli(tmp_path, "--root", missing, "init")  # the later --root wins
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"error: --root {missing} does not exist (the root is never created: create it, or give an existing directory)\n"
    assert os.listdir(tmp_path) == []
