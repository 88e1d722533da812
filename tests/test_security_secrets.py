"""Stage env values (API keys) never enter the journal: it keeps the names and a fingerprint
keyed by the run's resume token; the stage still gets the value, and a resume takes it from
the config, saying so when it changed. Only the names a project lists in
``runjournal.journalEnvInClear`` are journaled as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


# -- runjournal.journalEnvInClear: chosen variables journaled as they are -------------

CLEAR = {"journalEnvInClear": ["MODE"]}


def _plan_env(exported: str) -> dict[str, str]:
    started = next(json.loads(line) for line in exported.splitlines() if json.loads(line)["event"]["type"] == "run_started")
    return started["event"]["stages"][0]["env"]


def test_a_variable_named_in_journal_env_in_clear_is_journaled_and_exported_as_it_is(tmp_path: Path):
    env = {"MODE": "nightly-arm64", "API_KEY": SECRET}
    write_config(tmp_path, pipeline("p", cmd("use", 'test "$MODE" = nightly-arm64 && test "$API_KEY" = "$EXPECTED" && test -e go', env={**env, "EXPECTED": SECRET})), limits=CLEAR)
    started = cli(tmp_path, "start", "p", "--format", "json")
    assert started.returncode == 1, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    journal = b"".join(f.read_bytes() for f in (task_dir(tmp_path) / "journal").iterdir() if f.is_file())
    assert b"nightly-arm64" in journal
    assert SECRET.encode() not in journal
    exported = cli(tmp_path, "export").stdout
    assert SECRET not in exported
    plan = _plan_env(exported)
    assert plan["MODE"] == "nightly-arm64"
    assert [name for name, v in plan.items() if v.startswith("hmac-sha256:")] == ["API_KEY", "EXPECTED"]

    (tmp_path / "go").touch()
    resumed = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert resumed.returncode == 0, resumed.stderr
    assert "differs" not in resumed.stdout + resumed.stderr


def test_a_resume_says_when_a_clear_value_changed_and_uses_the_journaled_one(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("use", 'test -e go && echo "$MODE" > mode.txt', env={"MODE": "nightly"})), limits=CLEAR)
    run_id = json.loads(cli(tmp_path, "start", "p", "--format", "json").stdout)["run_id"]
    write_config(tmp_path, pipeline("p", cmd("use", 'test -e go && echo "$MODE" > mode.txt', env={"MODE": "weekly"})), limits=CLEAR)
    (tmp_path / "go").touch()
    resumed = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [
        "warning: stage use: $MODE differs from its value when the run started; the run's value, journaled in clear, is used",
        f"run {run_id} resumed (attempt 2): 1 of 1 stage(s) to run",
        "[1/1] use: use",
        "      ok",
        f"run {run_id} succeeded",
    ]
    assert (tmp_path / "mode.txt").read_text() == "nightly\n"


def test_a_clear_value_gone_from_the_config_is_taken_from_the_journal(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("use", 'test -e go && echo "$MODE" > mode.txt', env={"MODE": "nightly"})), limits=CLEAR)
    run_id = json.loads(cli(tmp_path, "start", "p", "--format", "json").stdout)["run_id"]
    write_config(tmp_path, pipeline("p", cmd("use", 'test -e go && echo "$MODE" > mode.txt')))
    (tmp_path / "go").touch()
    resumed = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "mode.txt").read_text() == "nightly\n"


@pytest.mark.parametrize(
    "value, message",
    [
        ("MODE", "runjournal.journalEnvInClear must be a list of variable names"),
        (["MODE", ""], "runjournal.journalEnvInClear has '': a variable name must be a non-empty string without '=' or NUL"),
        (["A=B"], "runjournal.journalEnvInClear has 'A=B': a variable name must be a non-empty string without '=' or NUL"),
        (["A\0B"], "runjournal.journalEnvInClear has 'A\\x00B': a variable name must be a non-empty string without '=' or NUL"),
        ([7], "runjournal.journalEnvInClear has 7: a variable name must be a non-empty string without '=' or NUL"),
    ],
)
def test_a_bad_journal_env_in_clear_is_one_error_line_and_runs_nothing(tmp_path: Path, value, message):
    config = write_config(tmp_path, pipeline("p", cmd("use", "touch ran")), limits={"journalEnvInClear": value})
    p = cli(tmp_path, "start", "p")
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"error: {config}: {message}\n"
    assert not (tmp_path / "ran").exists()
