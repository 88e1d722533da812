"""`runjournal watch`: a real daemon process keeps projections current, stops on signals, survives SIGKILL."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, HELPERS, clean_env, wait_until
from helpers.daemon import TEMP_FILE, watching
from helpers.histories import append_from_another_process
from helpers.trees import diff, projection_tree

from runjournal.journal import events as ev


def manifest_status(path: Path) -> str | None:
    try:
        return json.loads(path.read_bytes())["status"]
    except FileNotFoundError:
        return None


RUN = "2026-01-02T03-04-05-678Z-0123abcd"
STAGES = (ev.StagePlan(id="build", title="Build", command="make"),)


@pytest.mark.parametrize("args", [(), ("--poll", "0.05")], ids=["inotify", "polling"])
def test_watch_projects_appends_by_another_process(tmp_path, args):
    with watching(tmp_path, *args) as daemon:  # nothing there yet: the new task is picked up
        journal_dir = tmp_path / ".runs" / "nightly" / "journal"
        manifest = tmp_path / ".runs" / "nightly" / "cli" / RUN / "manifest.json"
        append_from_another_process(journal_dir, [(RUN, ev.RunStarted(task_id="nightly", pipeline_id="build", stages=STAGES))])
        wait_until(lambda: manifest_status(manifest) == "queued", "the manifest of the new run")
        append_from_another_process(
            journal_dir,
            [
                (RUN, ev.StageStarted(index=1, stage_id="build")),
                (RUN, ev.OutputChunk(index=1, stream="stdout", data=b"built\n")),
                (RUN, ev.StageFinished(index=1, stage_id="build")),
                (RUN, ev.RunCompleted()),
            ],
        )
        wait_until(lambda: manifest_status(manifest) == "succeeded", "the manifest to show the run succeeded")
        log = tmp_path / ".runs" / "nightly" / "cli" / RUN / "commands" / "01-build.log"
        assert log.read_bytes() == b"built\n"
        daemon.wait_for(r"task nightly: \d+ events, \d+ files")
        assert daemon.stop() == 0
        rest = []
        while (line := daemon.lines.get(timeout=DEADLINE)) is not None:
            rest.append(line)
        assert re.fullmatch(r"stopped after \d+ catch-ups \(5 events\)", rest[-1]), rest
        assert daemon.stderr() == ""


def test_sigint_stops_it_cleanly_and_the_checkpoint_is_saved(tmp_path):
    journal_dir = tmp_path / ".runs" / "default" / "journal"
    append_from_another_process(journal_dir, [(RUN, ev.RunStarted(task_id="default", pipeline_id="build", stages=STAGES))])
    with watching(tmp_path, "--format", "json") as daemon:
        line = daemon.wait_for(r'"event":"catch_up"')
        assert json.loads(line)["applied"] == 1
        assert daemon.stop(signal.SIGINT) == 130  # Ctrl-C: cancelled, as every command (SIGTERM: 0)
        assert daemon.stderr() == ""
        rest = []
        while (line := daemon.lines.get(timeout=DEADLINE)) is not None:
            rest.append(json.loads(line))
        assert rest[-1]["event"] == "stopped"
    assert (tmp_path / ".runs" / "default" / ".projection" / "checkpoint").exists()


def test_a_journal_deleted_under_it_is_a_warning(tmp_path):
    for task in ("a", "b"):
        append_from_another_process(tmp_path / ".runs" / task / "journal", [(RUN, ev.RunStarted(task_id=task, pipeline_id="build", stages=STAGES))])
    with watching(tmp_path) as daemon:
        daemon.wait_for(r"task b: ")
        shutil.rmtree(tmp_path / ".runs" / "a" / "journal")
        wait_until(lambda: "journal directory" in daemon.stderr(), "a warning about the deleted journal")
        assert re.fullmatch(r"warning: task a: journal directory \S+ disappeared; its projection files are left as they are\n", daemon.stderr())
        append_from_another_process(tmp_path / ".runs" / "b" / "journal", [(RUN, ev.StageStarted(index=1, stage_id="build"))])
        manifest = tmp_path / ".runs" / "b" / "cli" / RUN / "manifest.json"
        wait_until(lambda: manifest_status(manifest) == "in_progress", "task b to stay live")
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0


def tree_without_temp_files(root: Path) -> tuple[dict[str, bytes], list[str]]:
    tree = projection_tree(root)
    temp = sorted(p for p in tree if TEMP_FILE.search(p))
    return {p: b for p, b in tree.items() if p not in temp}, temp


def test_killed_mid_burst_then_restarted_converges_to_a_rebuild(tmp_path):
    live, fresh = tmp_path / "live", tmp_path / "fresh"
    live.mkdir()
    journal_dir = live / ".runs" / "default" / "journal"
    cli_dir = live / ".runs" / "default" / "cli"
    with watching(live) as daemon:
        burst = subprocess.Popen(
            [sys.executable, str(HELPERS / "append_events.py"), str(journal_dir), "burst", "--runs", "400", "--batch", "400"],
            stdout=subprocess.DEVNULL,
            env=clean_env(),
        )
        try:
            # the first files of the burst are on disk: the daemon is in the middle of catching up
            wait_until(lambda: cli_dir.is_dir() and any(p.is_file() for p in cli_dir.rglob("*")), "the first projection files of the burst")
            daemon.proc.send_signal(signal.SIGKILL)
            assert daemon.proc.wait(timeout=DEADLINE) == -signal.SIGKILL
            assert burst.wait(timeout=DEADLINE * 2) == 0
        finally:
            if burst.poll() is None:
                burst.kill()
                burst.wait()
    partial, _ = tree_without_temp_files(live)

    shutil.copytree(journal_dir, fresh / ".runs" / "default" / "journal")
    rebuilt = subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(fresh), "project", "--rebuild"], capture_output=True, text=True, env=clean_env(), timeout=DEADLINE * 2
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    expected = projection_tree(fresh)
    assert partial != expected, "the daemon had finished before it was killed: nothing was interrupted"

    with watching(live) as daemon:
        wait_until(lambda: tree_without_temp_files(live)[0] == expected, "the restarted daemon to converge", timeout=DEADLINE * 2)
        assert daemon.stop() == 0
    converged, temp = tree_without_temp_files(live)
    assert converged == expected, diff(converged, expected)
    # a projector killed between writing a temp file and renaming it leaves the temp file
    # behind (no projection file is ever half-written); they are named .<file>.<16 random hex>.tmp
    assert all(TEMP_FILE.search(p) for p in temp)
