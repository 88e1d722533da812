"""Stage env values (API keys) never enter the journal: it keeps the names and a fingerprint
keyed by the run's resume token; the stage still gets the value, and a resume takes it from
the config, saying so when it changed."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.runner_support import cli, cmd, pipeline, task_dir, token_file, write_config

SECRET = "sk-live-0123456789abcdef"


def test_a_stage_env_value_is_used_but_never_journaled_or_exported(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("use", 'test "$API_KEY" = "$EXPECTED" && test -e go', env={"API_KEY": SECRET, "EXPECTED": SECRET})))
    started = cli(tmp_path, "start", "p", "--format", "json")
    assert started.returncode == 1  # no `go` yet: the stage failed, so the run can be resumed
    run_id = json.loads(started.stdout)["run_id"]
    journal = task_dir(tmp_path) / "journal"
    assert all(SECRET.encode() not in f.read_bytes() for f in journal.iterdir() if f.is_file())
    exported = cli(tmp_path, "export").stdout
    assert SECRET not in exported
    plan = next(json.loads(line) for line in exported.splitlines() if json.loads(line)["event"]["type"] == "run_started")["event"]["stages"][0]
    assert sorted(plan["env"]) == ["API_KEY", "EXPECTED"]
    assert all(v.startswith("hmac-sha256:") for v in plan["env"].values())

    (tmp_path / "go").touch()
    resumed = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert resumed.returncode == 0, resumed.stderr  # the stage got the value from the config again
    assert "differs" not in resumed.stdout + resumed.stderr


def test_a_resume_says_when_a_value_changed_since_the_start(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("use", "test -e go", env={"API_KEY": SECRET})))
    run_id = json.loads(cli(tmp_path, "start", "p", "--format", "json").stdout)["run_id"]
    write_config(tmp_path, pipeline("p", cmd("use", "test -e go", env={"API_KEY": "sk-rotated"})))
    (tmp_path / "go").touch()
    resumed = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: stage use: $API_KEY differs from its value when the run started" in resumed.stdout
