"""`runjournal init`: a starter config that runs on this machine, never overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import assert_one_error_line
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
