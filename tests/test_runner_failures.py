"""A failed stage explained in the terminal (the end of its stderr, its error file), --stream,
and a run that cannot start leaving no resume token behind."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from helpers import clean_env
from helpers.runner_support import cli, cmd, pipeline, write_config

BUILD = "echo compiling; for i in $(seq 1 25); do echo \"line $i\" >&2; done; printf '\\033[31mred\\033]0;title\\007\\n' >&2; exit 254"


def _run_id(out: str) -> str:
    return out.splitlines()[0].split()[1]


def test_a_failed_stage_prints_the_end_of_its_stderr_and_its_error_file(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("build", BUILD)))
    p = cli(tmp_path, "start")
    assert p.returncode == 1, p.stderr
    run_id = _run_id(p.stdout)
    error_file = tmp_path / ".runs" / "default" / "cli" / run_id / "errors" / "01-build.json"
    tail = [f"      | line {i}" for i in range(7, 26)] + ["      | red"]  # 20 lines, escape sequences left out
    assert p.stdout.splitlines()[-25:] == [
        "[1/1] build: build",
        "      failed: stage build exited with 254",
        "      last 20 line(s) of stderr:",
        *tail,
        f"      error file: {error_file}",
        f"run {run_id} failed: stage build exited with 254",
    ]
    assert json.loads(error_file.read_text())["details"]["exit_code"] == 254


def test_a_failed_stage_without_stderr_says_so(tmp_path: Path):
    p = cli(tmp_path, "exec", "--", "sh", "-c", "exit 3")
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert lines[-4:-1] == ["      failed: stage exec exited with 3", "      stderr: empty", lines[-2]]
    assert lines[-2].startswith("      error file: ") and lines[-2].endswith("/errors/01-exec.json")


def test_stream_prints_output_live_marked_by_stage_and_stream(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("hello", "echo hi; printf 'warn\\033[2J\\n' >&2; printf 'no newline'"), cmd("next", "echo two")))
    for flag in ("--stream", "-v"):
        p = cli(tmp_path, "start", flag)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        at = lines.index("[1/2] hello: hello")
        assert lines[at : at + 8] == [
            "[1/2] hello: hello",
            "[hello] hi",
            "[hello:stderr] warn",
            "[hello] no newline",
            "      ok: hi",
            "[2/2] next: next",
            "[next] two",
            "      ok: two",
        ]


def test_stream_with_json_prints_on_stderr(tmp_path: Path):
    p = cli(tmp_path, "exec", "--stream", "--format", "json", "--", "echo", "hello")
    assert p.returncode == 0
    assert "[exec] hello" in p.stderr.splitlines()
    assert json.loads(p.stdout)["status"] == "succeeded"


def test_without_stream_no_output_is_printed(tmp_path: Path):
    p = cli(tmp_path, "exec", "--", "echo", "hello")
    assert "[exec] hello" not in p.stdout


def _exec_with_open_files(root: Path, limit: int) -> subprocess.CompletedProcess:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(root), "exec", "--", "true"],
        capture_output=True, text=True, cwd=root, env=clean_env(), preexec_fn=lower, timeout=60,
    )  # fmt: skip


def test_a_run_that_cannot_start_leaves_no_token(tmp_path: Path):
    # under each limit the run is refused before it is recorded, or recorded (and resumable):
    # a token file exists exactly for the runs the journal has
    for limit in range(6, 14):
        _exec_with_open_files(tmp_path, limit)
    tokens = tmp_path / ".runs" / "default" / ".tokens"
    kept = sorted(os.listdir(tokens)) if tokens.exists() else []
    p = cli(tmp_path, "runs", "--format", "json")
    recorded = sorted(r["run_id"] for r in json.loads(p.stdout)) if p.returncode == 0 else []
    assert kept == recorded


def test_a_start_event_that_cannot_be_written_removes_the_token(tmp_path: Path, monkeypatch):
    from runjournal.journal import Layout
    from runjournal.runner import Runner
    from runjournal.runner.config import starter

    layout = Layout(str(tmp_path / ".runs"), str(tmp_path / "out"), (str(tmp_path),))
    runner = Runner(layout, str(tmp_path), "default", starter())

    def no_descriptors(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(runner.store, "append_batch", no_descriptors)
    try:
        try:
            runner.exec(["true"])
        except OSError as e:
            assert e.errno == 24
        else:
            raise AssertionError("the run started")
    finally:
        runner.close()
    assert os.listdir(tmp_path / ".runs" / "default" / ".tokens") == []
