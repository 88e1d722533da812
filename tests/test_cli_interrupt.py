"""Ctrl-C (a real SIGINT to a real process) stops every long-running command with exit 130 and
one line saying what was done, never `error: cancelled` (`watch`: tests/test_cli_watch.py)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from helpers.cli_process import CliProcess
from helpers.histories import RunScript, make_run_id, populate
from helpers.runner_support import cmd, pipeline, write_config

RUN = make_run_id(1)


@contextlib.contextmanager
def running(root: Path, *args: str):
    process = CliProcess(root, *args)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def live_run(tmp_path: Path) -> Path:
    """Run RUN in task default: started, stage 1 running, never stale."""
    populate(tmp_path, RunScript(RUN, stages=2, stale_after=10**9).start_stage(1).items)
    return tmp_path


def test_tail_follow(live_run):
    with running(live_run, "tail", "-f") as tail:
        tail.wait_for(r"stage 1 stage-1 started")
        code, rest, err = tail.interrupt()
    assert (code, rest) == (130, [])
    assert err == "stopped following task default after 2 event(s)\n"


def test_tail_follow_of_one_run_in_json(live_run):
    with running(live_run, "tail", "-f", "--run", RUN, "--format", "json") as tail:
        tail.wait_for(r'"stage_started"')
        code, rest, err = tail.interrupt()
    assert (code, rest) == (130, [])
    assert err == f"stopped following run {RUN} in task default after 2 event(s)\n"


def test_status_watch(live_run):
    with running(live_run, "status", RUN, "--watch") as status:
        status.wait_for(r"^1  stage-1  running")
        code, _, err = status.interrupt()
    assert code == 130
    assert err == f"stopped following run {RUN} (task default), in_progress when stopped\n"


def test_replay_speed(tmp_path):
    run = RunScript(RUN, stages=1, stale_after=10**9)
    populate(tmp_path, run.start_stage(1, gap=3600).items)  # an hour after the start: the re-play waits there
    with running(tmp_path, "replay", RUN, "--speed", "1") as replay:
        replay.wait_for(r"run started: pipeline diagnostics")
        code, rest, err = replay.interrupt()
    assert (code, rest) == (130, [])
    assert err == f"stopped re-playing run {RUN} (task default) after 1 of 2 records\n"


def test_start(tmp_path):
    write_config(tmp_path, pipeline("p", cmd("wait", "echo waiting; sleep 300")), limits={"cancelGraceSeconds": 1})
    with running(tmp_path, "start", "--format", "text") as start:
        run_id = start.wait_for(r"^run \S+ started").split()[1]
        start.wait_for(r"\[1/1\] wait")
        # the runner has reached the stage; what it prints of the stage's own output depends on
        # options another command covers, so the stage's start line is the signal to act on
        code, rest, err = start.interrupt()
    assert code == 130
    assert rest[-1] == f"run {run_id} cancelled by SIGINT during stage wait"
    assert not re.search(r"^error:", err, re.M), err


def test_tail_follow_waits_for_a_journal_and_says_so(live_run):
    with running(live_run, "tail", "-f", "--task", "later") as tail:
        tail.wait_for(r"^waiting: ", stderr=True)
        populate(live_run, RunScript(make_run_id(2), task="later").items, task="later")
        tail.wait_for(r"run started: pipeline diagnostics")
        code, rest, err = tail.interrupt()
    assert (code, rest) == (130, [])
    assert err.splitlines() == [
        f"waiting: no journal for task later at {live_run / '.runs' / 'later' / 'journal'}; tasks with a journal: default (choose one with --task)",
        "stopped following task later after 1 event(s)",
    ]
