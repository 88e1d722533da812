"""Stages as real processes: environment, working directory, allowFailure, summaries, stray children."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from helpers import wait_until
from helpers.runner_support import alive, cli, cmd, manifest, metrics, pipeline, stage_env, task_dir, write_config


def test_stage_gets_the_orchestrator_variables_its_env_and_its_cwd(tmp_path: Path):
    (tmp_path / "work").mkdir()
    write_config(
        tmp_path,
        pipeline("envy", cmd("show", 'env > env.txt; pwd -P > cwd.txt', cwd="work", env={"GREETING": "hello world", "HOME": "/nowhere"})),
    )
    p = cli(tmp_path, "start", "--task", "t1", "--format", "json")
    assert p.returncode == 0, p.stderr
    run_id = json.loads(p.stdout)["run_id"]
    env = stage_env(tmp_path / "work" / "env.txt")
    root = tmp_path.resolve()
    runs = root / ".runs"
    assert {k: v for k, v in env.items() if k.startswith("CODEX_ORCHESTRATOR_")} == {
        "CODEX_ORCHESTRATOR_TASK_ID": "t1",
        "CODEX_ORCHESTRATOR_RUN_ID": run_id,
        "CODEX_ORCHESTRATOR_PIPELINE_ID": "envy",
        "CODEX_ORCHESTRATOR_MANIFEST_PATH": str(runs / "t1" / "cli" / run_id / "manifest.json"),
        "CODEX_ORCHESTRATOR_RUN_DIR": str(runs / "t1" / "cli" / run_id),
        "CODEX_ORCHESTRATOR_RUNS_DIR": str(runs),
        "CODEX_ORCHESTRATOR_OUT_DIR": str(root / "out"),
        "CODEX_ORCHESTRATOR_REPO_ROOT": str(root),
    }
    assert env["GREETING"] == "hello world"
    assert env["HOME"] == "/nowhere"  # the stage's env overrides the inherited one
    assert (tmp_path / "work" / "cwd.txt").read_text().strip() == str(root / "work")
    manifest(tmp_path, run_id, "t1")


def test_orchestrator_variables_follow_runs_and_out_dir_options(tmp_path: Path):
    write_config(tmp_path, pipeline("envy", cmd("show", "env > env.txt")))
    runs, out = tmp_path / "elsewhere" / "runs", tmp_path / "elsewhere" / "out"
    p = cli(tmp_path, "--runs-dir", runs, "--out-dir", out, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    env = stage_env(tmp_path / "env.txt")
    assert env["CODEX_ORCHESTRATOR_RUNS_DIR"] == str(runs)
    assert env["CODEX_ORCHESTRATOR_OUT_DIR"] == str(out)
    assert Path(env["CODEX_ORCHESTRATOR_MANIFEST_PATH"]).is_file()
    assert Path(env["CODEX_ORCHESTRATOR_MANIFEST_PATH"]).is_relative_to(runs)


def test_allow_failure_keeps_the_exit_code_and_the_run_goes_on(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline(
            "lenient",
            cmd("lint", "echo 3 warnings; echo style >&2; exit 3", allowFailure=True),
            cmd("test", "echo passed > after.txt"),
        ),
    )
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert (result["status"], result["exit_code"]) == ("succeeded", 0)
    assert (tmp_path / "after.txt").exists()
    doc = manifest(tmp_path, result["run_id"])
    lint, test = doc["commands"]
    assert (lint["status"], lint["exit_code"]) == ("skipped", 3)
    assert lint["summary"] == "exit 3, failure allowed: 3 warnings"
    assert test["status"] == "succeeded"
    error = json.loads((tmp_path / lint["error_file"]).read_text())
    assert (error["details"]["exit_code"], error["details"]["stderr"]) == (3, "style\n")
    assert doc["status"] == "succeeded"
    [line] = metrics(tmp_path)
    assert (line["status"], line["commands_passed"], line["commands_failed"]) == ("succeeded", 1, 0)
    assert "failure allowed" in p.stderr


def test_summary_hint_and_first_line_make_the_summary(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline(
            "p",
            cmd("hinted", "echo; echo '  first real line  '; echo second", summaryHint="unit tests"),
            cmd("quiet", "true", summaryHint="nothing printed"),
            cmd("plain", "echo only on stderr >&2"),
            cmd("silent", "true"),
        ),
    )
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    assert [c["summary"] for c in doc["commands"]] == ["unit tests: first real line", "nothing printed", "only on stderr", None]


def test_what_a_finished_stage_left_running_is_stopped(tmp_path: Path):
    # the stage exits at once, leaving a child that keeps stdout open, and one that ignores TERM;
    # a daemon started with setsid has left the stage's process group, and is left alone
    write_config(
        tmp_path,
        pipeline(
            "p",
            cmd("leaky", "sleep 60 & echo $! > bg.pid; sh -c 'trap \"\" TERM; exec sleep 61' & echo $! > stubborn.pid; setsid sh -c 'echo $$ > daemon.tmp; mv daemon.tmp daemon.pid; exec sleep 62' > /dev/null 2>&1 & until [ -e daemon.pid ]; do sleep 0.01; done; echo started"),
            cmd("next", "true"),
        ),
        limits={"cancelGraceSeconds": 1},
    )
    try:
        p = cli(tmp_path, "start", "--format", "json", timeout=30)
        assert p.returncode == 0, p.stderr
        assert "warning: stage leaky left processes running when it ended; they were stopped (TERM, then KILL)" in p.stderr
        doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
        assert [c["status"] for c in doc["commands"]] == ["succeeded", "succeeded"]
        assert doc["commands"][0]["summary"] == "started"
        for name in ("bg.pid", "stubborn.pid"):
            pid = int((tmp_path / name).read_text())
            wait_until(lambda pid=pid: not alive(pid), f"the stage's leftover {name} to be gone")
        assert alive(int((tmp_path / "daemon.pid").read_text()))
    finally:
        for name in ("bg.pid", "stubborn.pid", "daemon.pid"):
            path = tmp_path / name
            if path.exists():
                try:
                    os.kill(int(path.read_text()), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_a_command_that_cannot_start_fails_the_stage(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("nowhere", "true", cwd="does-not-exist")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    assert doc["commands"][0]["status"] == "failed"
    assert "cannot start the command" in doc["status_detail"]
    assert (task_dir(tmp_path) / "metrics.json").exists()
