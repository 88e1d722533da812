"""`runjournal resume`: the token is checked, refusals are recorded, concurrent resumes have one winner."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import assert_one_error_line, clean_env, wait_until
from helpers.runner_support import (
    argv,
    cli,
    cmd,
    crashed_run,
    finish,
    manifest,
    metrics,
    output,
    pipeline,
    runs_of,
    spawn,
    token_file,
    write_config,
)


@pytest.fixture
def failed_run(tmp_path: Path) -> str:
    """A run whose second stage failed (it passes once the file `fixed` exists)."""
    write_config(tmp_path, pipeline("p", cmd("one", "echo x >> count-1"), cmd("two", "test -e fixed"), cmd("three", "echo x >> count-3")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    return json.loads(p.stdout)["run_id"]


def token_arg(root: Path, run_id: str) -> str:
    return f"@{token_file(root, run_id)}"


def test_resume_reruns_what_failed_and_skips_what_succeeded(tmp_path: Path, failed_run: str):
    (tmp_path / "fixed").touch()
    token = token_file(tmp_path, failed_run).read_text().strip()
    p = cli(tmp_path, "resume", failed_run, "--token", token, "--actor", "ci-bot", "--reason", "fixed the test")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"run {failed_run} resumed (attempt 2): 2 of 3 stage(s) to run"
    assert (runs_of(tmp_path, "count-1"), runs_of(tmp_path, "count-3")) == (1, 1)
    doc = manifest(tmp_path, failed_run)
    assert doc["status"] == "succeeded"
    [event] = doc["resume_events"]
    assert (event["actor"], event["reason"], event["outcome"]) == ("ci-bot", "fixed the test", "accepted")
    assert [(m["attempt"], m["status"]) for m in metrics(tmp_path)] == [(1, "failed"), (2, "succeeded")]


@pytest.mark.parametrize("token_args", [["--token", "not-the-token"], []], ids=["wrong token", "missing token"])
def test_a_wrong_or_missing_token_is_refused_and_recorded(tmp_path: Path, failed_run: str, token_args):
    (tmp_path / "fixed").touch()
    p = cli(tmp_path, "resume", failed_run, *token_args)
    assert p.returncode == 2
    assert p.stdout == ""
    assert_one_error_line(p.stderr, f"resume of run {failed_run} refused: a missing or wrong resume token; recorded as a blocked resume")
    doc = manifest(tmp_path, failed_run)
    assert doc["status"] == "failed"  # nothing ran
    [event] = doc["resume_events"]
    assert (event["outcome"], event["detail"]) == ("blocked", "a missing or wrong resume token")
    assert runs_of(tmp_path, "count-1") == 1
    assert len(metrics(tmp_path)) == 1


def test_resuming_a_succeeded_run_is_refused(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("one", "true")))
    run_id = json.loads(cli(tmp_path, "start", "--format", "json").stdout)["run_id"]
    p = cli(tmp_path, "resume", run_id, "--token", token_arg(tmp_path, run_id))
    assert p.returncode == 1
    assert_one_error_line(p.stderr, "refused: the run already succeeded; recorded as a blocked resume")
    doc = manifest(tmp_path, run_id)
    assert [(e["outcome"], e["detail"]) for e in doc["resume_events"]] == [("blocked", "the run already succeeded")]
    assert len(metrics(tmp_path)) == 1


def test_resuming_a_run_whose_runner_is_alive_is_refused(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("wait", "touch started; sleep 300")), limits={"cancelGraceSeconds": 1})
    proc = spawn(tmp_path, "start")
    try:
        wait_until(lambda: (tmp_path / "started").exists(), "the stage to start")
        run_id = output(tmp_path)[0].split()[1]
        p = cli(tmp_path, "resume", run_id, "--token", token_arg(tmp_path, run_id))
        assert p.returncode == 1
        assert_one_error_line(p.stderr, "refused: the run is still alive")
        assert manifest(tmp_path, run_id)["status"] == "in_progress"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 130


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["resume", "2025-12-01T09-37-11-576Z-1a60ebea", "--token", "x"], "no run 2025-12-01T09-37-11-576Z-1a60ebea in any task under"),
        (["resume", "../escape", "--token", "x"], "run id '../escape' must not contain"),
        (["resume", "2025-12-01T09-37-11-576Z-1a60ebea", "--token", "@nothere"], "cannot read the token file nothere: No such file"),
        (["resume", "2025-12-01T09-37-11-576Z-1a60ebea", "--token", "x", "--reason", " "], "--reason must not be empty"),
    ],
    ids=["unknown run", "unsafe run id", "unreadable token file", "empty reason"],
)
def test_bad_resume_input_is_refused(tmp_path: Path, failed_run: str, args, fragment):
    p = cli(tmp_path, *args)
    assert p.returncode == 2
    assert_one_error_line(p.stderr, fragment)
    assert manifest(tmp_path, failed_run)["resume_events"] == []


def test_two_concurrent_resumes_have_exactly_one_winner(tmp_path: Path):
    run_id = crashed_run(tmp_path)
    # the winner's stage 2 waits for `go`, so the winner is still running when the loser checks
    (tmp_path / "on-resume.sh").write_text("i=0; while [ ! -e go ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n")
    token = token_arg(tmp_path, run_id)
    procs = [spawn(tmp_path, "resume", run_id, "--token", token, "--format", "json", name=f"resume-{n}") for n in (1, 2)]
    try:
        loser = wait_until(lambda: next((p for p in procs if p.poll() is not None), None), "one resume to end")
        (tmp_path / "go").touch()
        winner = procs[1 - procs.index(loser)]
        assert finish(winner) == 0
    finally:
        (tmp_path / "go").touch()
        for p in procs:
            finish(p)
    loser_name, winner_name = (f"resume-{procs.index(p) + 1}" for p in (loser, winner))
    loser_out, loser_err = output(tmp_path, loser_name)
    assert loser.returncode != 0
    assert loser_out == ""
    line = assert_one_error_line(loser_err, f"run {run_id}")
    assert re.search(r"another resume|changed while resuming", line), line
    assert json.loads(output(tmp_path, winner_name)[0])["status"] == "succeeded"

    assert (runs_of(tmp_path, "count-1"), runs_of(tmp_path, "count-3")) == (1, 1)  # the rest ran once
    doc = manifest(tmp_path, run_id)
    assert doc["status"] == "succeeded"
    assert [e["outcome"] for e in doc["resume_events"]].count("accepted") == 1
    assert [(m["run_id"], m["attempt"], m["status"]) for m in metrics(tmp_path)] == [(run_id, 2, "succeeded")]


@pytest.mark.parametrize("way", ["stdin", "variable"])
def test_the_token_can_be_given_without_putting_it_on_the_command_line(tmp_path: Path, failed_run: str, way: str):
    (tmp_path / "fixed").touch()
    token = token_file(tmp_path, failed_run).read_text().strip()
    args = argv(tmp_path, "resume", failed_run, *(["--token", "-"] if way == "stdin" else []))
    env = {**clean_env(), **({"RUNJOURNAL_RESUME_TOKEN": token} if way == "variable" else {})}
    p = subprocess.run(args, input=token + "\n" if way == "stdin" else None, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert token not in " ".join(args)
    assert manifest(tmp_path, failed_run)["status"] == "succeeded"


def _run_on_a_clock_an_hour_ahead(root: Path, run_id: str) -> tuple[str, Path]:
    """A crashed run of pipeline ``p`` started on another host, whose heartbeats are stamped an
    hour in this machine's future (that host's clock is ahead); its stale limit is 2 s."""
    import time

    from helpers.histories import populate
    from runjournal.journal import Item
    from runjournal.journal import events as ev
    from runjournal.runner.run import fingerprint

    token = "clock-skew-token"
    write_config(root, pipeline("p", cmd("one", "echo ran >> ran.txt")))
    now = time.time_ns()
    ahead = now + 3600 * 1_000_000_000
    plan = (ev.StagePlan(id="one", title="one", command="echo ran >> ran.txt"),)
    populate(root, [
        Item(run_id, ev.RunStarted(task_id="default", pipeline_id="p", stages=plan, resume_token_fingerprint=fingerprint(token),
                                   heartbeat_stale_after_seconds=2, runner_pid=4242, runner_host="a-host-ahead", runner_start=1), ahead),
        Item(run_id, ev.StageStarted(index=1, stage_id="one"), ahead + 1),
        Item(run_id, ev.Heartbeat(), ahead + 2),
    ])  # fmt: skip
    token_path = root / "token"
    token_path.write_text(token)
    return token, token_path


def test_a_heartbeat_from_a_clock_ahead_does_not_keep_a_dead_run_fresh(tmp_path: Path):
    run_id = "2025-12-01T09-37-11-576Z-5eed5eed"
    _, token = _run_on_a_clock_an_hour_ahead(tmp_path, run_id)
    done = cli(tmp_path, "resume", run_id, "--token", f"@{token}", timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"warning: run {run_id}'s newest heartbeat is stamped 3600 s ahead of this machine's clock \(clock skew\); watching 2 s for a newer one", done.stderr + done.stdout)
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_a_run_still_beating_on_a_clock_ahead_is_refused(tmp_path: Path):
    import threading
    import time

    from runjournal.journal import Journal
    from runjournal.journal import events as ev

    run_id = "2025-12-01T09-37-11-576Z-5eed5eef"
    _, token = _run_on_a_clock_an_hour_ahead(tmp_path, run_id)
    stop = threading.Event()

    def beat() -> None:  # its runner on the other host goes on beating, stamped an hour ahead
        with Journal(str(tmp_path / ".runs" / "default" / "journal")) as j:
            while not stop.wait(0.3):
                j.append_batch([(run_id, ev.Heartbeat(), time.time_ns() + 3600 * 1_000_000_000)])

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        done = cli(tmp_path, "resume", run_id, "--token", f"@{token}", timeout=120)
    finally:
        stop.set()
        beater.join()
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"error: resume of run {run_id} refused: the run is still alive (its runner is running or its heartbeat is fresh); recorded as a blocked resume"
    assert not (tmp_path / "ran.txt").exists()


def test_the_run_is_found_in_its_task_without_task(tmp_path: Path):
    """`status RUN` finds a run of any task; so does `resume RUN` (the one task rule)."""
    write_config(tmp_path, pipeline("p", cmd("one", "test -e fixed")))
    run_id = json.loads(cli(tmp_path, "start", "--task", "nightly", "--format", "json").stdout)["run_id"]
    (tmp_path / "fixed").touch()
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id, 'nightly')}")
    assert p.returncode == 0, p.stderr
    assert manifest(tmp_path, run_id, "nightly")["status"] == "succeeded"
    p = cli(tmp_path, "resume", run_id, "--task", "default", "--token", "x")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"error: no journal for task default at {tmp_path / '.runs' / 'default' / 'journal'}; tasks with a journal: nightly (choose one with --task)\n"
