"""`runjournal start`: runs a pipeline, prints the contract's result, keeps the token private."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from helpers import assert_one_error_line, clean_env
from helpers.runner_support import argv, cli, cmd, manifest, metrics, pipeline, task_dir, token_file, write_config

RUN_ID = re.compile(r"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z-[0-9a-f]{8}$")


def test_start_json_prints_exactly_the_contract_object(tmp_path: Path):
    write_config(tmp_path, pipeline("build", cmd("compile", "echo compiled"), cmd("check", "true")))
    p = cli(tmp_path, "start", "--task", "nightly", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)  # one JSON document: the progress lines went to stderr
    assert list(result) == ["run_id", "task_id", "status", "exit_code", "manifest", "resume_token"]
    run_id = result["run_id"]
    assert RUN_ID.match(run_id)
    path = task_dir(tmp_path, "nightly") / "cli" / run_id / "manifest.json"
    assert result == {
        "run_id": run_id,
        "task_id": "nightly",
        "status": "succeeded",
        "exit_code": 0,
        "manifest": str(path),
        "resume_token": token_file(tmp_path, run_id, "nightly").read_text().strip(),
    }
    assert f"run {run_id} started: pipeline build, task nightly" in p.stderr
    doc = manifest(tmp_path, run_id, "nightly")
    assert (doc["status"], doc["pipeline_id"], doc["task_id"]) == ("succeeded", "build", "nightly")
    assert [(c["id"], c["status"], c["exit_code"]) for c in doc["commands"]] == [("compile", "succeeded", 0), ("check", "succeeded", 0)]
    assert doc["commands"][0]["summary"] == "compiled"
    log = tmp_path / doc["commands"][0]["log_path"]
    assert log.read_text() == "compiled\n"


def test_start_text_prints_run_id_manifest_and_token(tmp_path: Path):
    write_config(tmp_path, pipeline("build", cmd("compile", "echo compiled")))
    p = cli(tmp_path, "start")
    assert p.returncode == 0, p.stderr
    run_id = (task_dir(tmp_path) / ".tokens").iterdir().__next__().name
    token = token_file(tmp_path, run_id).read_text().strip()
    assert p.stdout.splitlines() == [
        f"run {run_id} started: pipeline build, task default",
        f"manifest: {task_dir(tmp_path) / 'cli' / run_id / 'manifest.json'}",
        f"resume token: {token} (also in {token_file(tmp_path, run_id)}, readable by you only)",
        "[1/1] compile: compile",
        "      ok: compiled",
        f"run {run_id} succeeded",
    ]


def test_the_token_stays_in_an_owner_only_file(tmp_path: Path):
    write_config(tmp_path, pipeline("build", cmd("compile", "true")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    token_path = token_file(tmp_path, result["run_id"])
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700
    token = result["resume_token"]
    assert len(token) >= 32

    doc = manifest(tmp_path, result["run_id"])
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", doc["resume_token"])
    # the token itself is nowhere but in the token file: not in the manifest, the journal or any projection
    for dirpath, _, files in os.walk(tmp_path):
        for name in files:
            path = Path(dirpath) / name
            if path != token_path:
                assert token.encode() not in path.read_bytes(), path


def test_a_failing_stage_stops_the_pipeline_and_exits_1(tmp_path: Path):
    write_config(tmp_path, pipeline("build", cmd("ok", "true"), cmd("bad", "echo broken >&2; exit 5"), cmd("never", "touch ran")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    result = json.loads(p.stdout)
    assert (result["status"], result["exit_code"]) == ("failed", 1)
    assert not (tmp_path / "ran").exists()
    doc = manifest(tmp_path, result["run_id"])
    assert doc["status"] == "failed"
    assert doc["status_detail"] == "failed: stage bad exited with 5"
    assert [(c["status"], c["exit_code"]) for c in doc["commands"]] == [("succeeded", 0), ("failed", 5), ("pending", None)]
    error = json.loads((tmp_path / doc["commands"][1]["error_file"]).read_text())
    assert (error["command_id"], error["command"], error["reason"]) == ("bad", "echo broken >&2; exit 5", "stage bad exited with 5")
    assert (error["details"]["exit_code"], error["details"]["stderr"], error["details"]["stderr_truncated"]) == (5, "broken\n", False)
    [line] = metrics(tmp_path)
    assert (line["status"], line["commands_passed"], line["commands_failed"]) == ("failed", 1, 1)


def test_start_a_named_pipeline(tmp_path: Path):
    write_config(tmp_path, pipeline("first", cmd("a", "exit 1")), pipeline("second", cmd("b", "true")))
    p = cli(tmp_path, "start", "second", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert manifest(tmp_path, json.loads(p.stdout)["run_id"])["pipeline_id"] == "second"


def test_start_with_a_config_elsewhere(tmp_path: Path):
    config = write_config(tmp_path, pipeline("elsewhere", cmd("a", "true")), name="other.json")
    p = cli(tmp_path, "start", "--config", config, "--format", "json")
    assert p.returncode == 0, p.stderr
    assert manifest(tmp_path, json.loads(p.stdout)["run_id"])["pipeline_id"] == "elsewhere"


@pytest.mark.parametrize("args, fragment", [(["--task", "../up"], "task id '../up' must not contain"), (["--parent-run", ".hidden"], "run id '.hidden' must not start with '.'")])
def test_unsafe_ids_are_refused(tmp_path: Path, args, fragment):
    write_config(tmp_path, pipeline("p", cmd("a", "true")))
    p = cli(tmp_path, "start", *args)
    assert p.returncode == 2
    assert_one_error_line(p.stderr, fragment)
    assert not (tmp_path / ".runs").exists()


def _resume_from_the_token_file(root: Path, run_id: str) -> None:
    (root / "go").touch()
    resumed = cli(root, "resume", run_id, "--token", f"@{token_file(root, run_id)}")
    assert resumed.returncode == 0, resumed.stderr
    assert manifest(root, run_id)["status"] == "succeeded"


def test_quiet_token_prints_where_the_token_is_never_the_token(tmp_path: Path):
    write_config(tmp_path, pipeline("build", cmd("gate", "test -e go")))
    p = cli(tmp_path, "start", "--quiet-token")
    assert p.returncode == 1, p.stderr  # no `go` yet: a failed run, to resume with the token file
    run_id = (task_dir(tmp_path) / ".tokens").iterdir().__next__().name
    token = token_file(tmp_path, run_id).read_text().strip()
    assert p.stdout.splitlines() == [
        f"run {run_id} started: pipeline build, task default",
        f"manifest: {task_dir(tmp_path) / 'cli' / run_id / 'manifest.json'}",
        f"resume token: not printed; it is in {token_file(tmp_path, run_id)}, readable by you only",
        "[1/1] gate: gate",
        "      failed: stage gate exited with 1",
        "      stderr: empty",
        f"      error file: {task_dir(tmp_path) / 'cli' / run_id / 'errors' / '01-gate.json'}",
        f"run {run_id} failed: stage gate exited with 1",
    ]
    assert token not in p.stdout + p.stderr
    _resume_from_the_token_file(tmp_path, run_id)


@pytest.mark.parametrize(
    "command, quiet",
    [
        (["start"], ["--quiet-token"]),
        (["start"], {"RUNJOURNAL_QUIET_TOKEN": "1"}),
        (["exec"], ["--quiet-token"]),
        (["exec"], {"RUNJOURNAL_QUIET_TOKEN": "1"}),
    ],
    ids=["start-flag", "start-variable", "exec-flag", "exec-variable"],
)
def test_quiet_token_json_keeps_the_contract_keys_with_a_null_token(tmp_path: Path, command, quiet):
    write_config(tmp_path, pipeline("build", cmd("gate", "test -e go")))
    args = [*command, *(quiet if isinstance(quiet, list) else []), "--format", "json"]
    if command == ["exec"]:
        args += ["--", "test", "-e", "go"]
    env = {**clean_env(), **(quiet if isinstance(quiet, dict) else {})}
    p = subprocess.run(argv(tmp_path, *args), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert p.returncode == 1, p.stderr
    result = json.loads(p.stdout)
    run_id = result["run_id"]
    assert result == {
        "run_id": run_id,
        "task_id": "default",
        "status": "failed",
        "exit_code": 1,
        "manifest": str(task_dir(tmp_path) / "cli" / run_id / "manifest.json"),
        "resume_token": None,
    }
    assert list(result) == ["run_id", "task_id", "status", "exit_code", "manifest", "resume_token"]
    token = token_file(tmp_path, run_id).read_text().strip()
    assert token not in p.stdout + p.stderr
    assert f"resume token: not printed; it is in {token_file(tmp_path, run_id)}, readable by you only" in p.stderr.splitlines()
    _resume_from_the_token_file(tmp_path, run_id)


def test_start_without_a_config_refuses_and_records_nothing(tmp_path: Path):
    p = cli(tmp_path, "start")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (
        f"error: no codex.orchestrator.json in {tmp_path} (--root): write one in {tmp_path} with `runjournal init`, "
        "run the embedded starter with `runjournal start --starter`, or name one with --config FILE\n"
    )
    assert os.listdir(tmp_path) == []


def test_start_starter_runs_the_embedded_pipeline_even_beside_a_config(tmp_path: Path):
    write_config(tmp_path, pipeline("mine", cmd("a", "touch ran")))
    p = cli(tmp_path, "start", "--starter", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    assert (doc["pipeline_id"], doc["status"]) == ("hello", "succeeded")
    assert not (tmp_path / "ran").exists()


def test_a_missing_cwd_at_start_names_the_stage_and_the_path(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("build", "true", cwd="nope")))
    p = cli(tmp_path, "start")
    assert p.returncode == 1, p.stderr
    [failed] = [line for line in p.stdout.splitlines() if line.startswith("      failed: ")]
    assert "stage build" in failed and str(tmp_path / "nope") in failed, failed
