"""`runjournal logs RUN [STAGE] [-f]`: a run's captured output from the journal, lines marked
by stage and stream, the cap's marker between head and tail; -f follows until the run ends."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.cli_process import CliProcess
from helpers.runner_support import FAST, cli, cmd, finish, pipeline, spawn, write_config

BIG = "i=0; while [ $i -lt 200 ]; do echo \"err $i ..............\" >&2; i=$((i+1)); done"


def _run(root: Path, *args) -> str:
    p = cli(root, *args)
    return p.stdout.split()[1]


def test_logs_prints_every_stage_marked_with_stderr_and_escapes_left_out(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("hello", "echo hi; printf 'warn\\033]0;x\\007\\n' >&2"), cmd("build", "echo compiling; exit 2")))
    run_id = _run(tmp_path, "start")
    p = cli(tmp_path, "logs", run_id)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == "[hello] hi\n[hello:stderr] warn\n[build] compiling\n"
    p = cli(tmp_path, "logs", run_id, "build")
    assert p.stdout == "[build] compiling\n"
    assert cli(tmp_path, "logs", run_id, "1").stdout == "[hello] hi\n[hello:stderr] warn\n"
    p = cli(tmp_path, "logs", run_id, "hello", "--format", "json")
    assert json.loads(p.stdout)["lines"] == [
        {"index": 1, "stage_id": "hello", "stream": "stdout", "line": "hi"},
        {"index": 1, "stage_id": "hello", "stream": "stderr", "line": "warn\x1b]0;x\x07"},
    ]


def test_logs_shows_the_truncation_marker_between_head_and_tail(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("big", BIG)), limits={"outputCapBytes": 1024})
    run_id = _run(tmp_path, "start")
    lines = cli(tmp_path, "logs", run_id).stdout.splitlines()
    assert lines[0] == "[big:stderr] err 0 .............."
    marker = [line for line in lines if "[runjournal:" in line]
    assert len(marker) == 1
    assert marker[0].startswith("[big:stderr] [runjournal: ") and "bytes of stderr left out here" in marker[0]
    assert lines[-1] == "[big:stderr] err 199 .............."


def test_logs_of_an_unknown_run_or_stage_is_bad_input(tmp_path: Path):
    run_id = _run(tmp_path, "exec", "--", "true")
    p = cli(tmp_path, "logs", "2025-12-01T09-37-11-576Z-00000063")
    assert p.returncode == 2
    assert p.stderr.startswith("error: no run 2025-12-01T09-37-11-576Z-00000063 in any task under ")
    p = cli(tmp_path, "logs", run_id, "nope")
    assert (p.returncode, p.stderr) == (2, f"error: run {run_id} has no stage 'nope' (its stages: exec)\n")


def test_logs_follow_prints_until_the_run_ends(tmp_path: Path):
    stage = "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second >&2"
    write_config(tmp_path, pipeline("ci", cmd("wait", stage), cmd("end", "echo last")), limits=FAST)
    runner = spawn(tmp_path, "start")
    from helpers import wait_until

    run_id = wait_until(lambda: (tmp_path / "runner.out").read_text().split()[1:2], "the run id")[0]
    follower = CliProcess(tmp_path, "logs", run_id, "-f")
    try:
        assert follower.wait_for(r"first") == "[wait] first"
        (tmp_path / "go").touch()
        assert follower.wait_for(r"second") == "[wait:stderr] second"
        assert follower.wait_for(r"last") == "[end] last"
        assert follower.proc.wait(timeout=30) == 0
        assert finish(runner) == 0
    finally:
        follower.close()


def test_logs_follow_stops_on_ctrl_c_with_one_line(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("wait", "echo started; sleep 300")), limits=FAST)
    runner = spawn(tmp_path, "start")
    from helpers import wait_until

    run_id = wait_until(lambda: (tmp_path / "runner.out").read_text().split()[1:2], "the run id")[0]
    follower = CliProcess(tmp_path, "logs", run_id, "--follow")
    try:
        follower.wait_for("started")
        code, rest, err = follower.interrupt()
        assert (code, rest) == (130, [])
        assert err == f"stopped following run {run_id} (task default) after 1 line(s)\n"
    finally:
        follower.close()
        runner.send_signal(2)
        assert finish(runner) == 130
