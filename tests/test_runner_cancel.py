"""Cancel: SIGTERM or SIGINT to the runner ends the current stage's whole process group.

TERM first, KILL after ``cancelGraceSeconds``; a second signal kills at once. The run is
recorded as cancelled and the runner exits 130. Every test waits for a file the stage
writes before it signals, so the signal always lands mid-stage.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from helpers import wait_until
from helpers.runner_support import (
    FAST,
    alive,
    cli,
    cmd,
    finish,
    group_members,
    manifest,
    metrics,
    output,
    pipeline,
    read_pids,
    spawn,
    token_file,
    write_config,
)

# writes "<background pid> <shell pid = process group>" to pids once both are running, then waits
GRANDCHILD = "sleep 300 & echo $! $$ > pids.tmp; mv pids.tmp pids; sleep 300"
# the same, with TERM ignored by the shell and (inherited) by its children
STUBBORN = "trap '' TERM; sleep 300 & echo $! $$ > pids.tmp; mv pids.tmp pids; sleep 300"


def started(root: Path) -> list[int]:
    return read_pids(wait_until(lambda: (root / "pids").exists() and root / "pids", "the stage to write its pids"))


def assert_group_gone(pids: list[int]) -> None:
    """Each pid the stage wrote, and anything else in its process group, is dead (zombies count as dead)."""
    pgid = pids[-1]
    wait_until(lambda: not group_members(pgid) and not any(alive(p) for p in pids), f"process group {pgid} to be gone", timeout=10)


def test_sigterm_cancels_the_run_and_its_process_group(tmp_path: Path):
    # on resume the stage finds the file `go` and passes
    stage = f"if [ -e go ]; then echo resumed; exit 0; fi; {GRANDCHILD}"
    write_config(tmp_path, pipeline("p", cmd("first", "true"), cmd("work", stage), cmd("last", "echo done")), limits=FAST)
    proc = spawn(tmp_path, "start", "--format", "json")
    pids = started(tmp_path)
    assert all(alive(p) for p in pids)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 130
    out, err = output(tmp_path)
    result = json.loads(out)
    assert (result["status"], result["exit_code"]) == ("cancelled", 130)
    assert "cancelling (SIGTERM)" in err
    assert_group_gone(pids)

    run_id = result["run_id"]
    doc = manifest(tmp_path, run_id)
    assert doc["status"] == "cancelled"
    assert doc["status_detail"] == "cancelled by SIGTERM during stage work"
    assert doc["completed_at"] is not None
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "failed", "pending"]
    error = json.loads((tmp_path / doc["commands"][1]["error_file"]).read_text())
    assert error["details"]["signal"] in ("SIGTERM", "SIGKILL")
    [line] = metrics(tmp_path)
    assert (line["run_id"], line["attempt"], line["status"]) == (run_id, 1, "cancelled")

    # a cancelled run can be resumed: the stage that succeeded is not run again
    (tmp_path / "go").touch()
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = manifest(tmp_path, run_id)
    assert doc["status"] == "succeeded"
    assert [c["status"] for c in doc["commands"]] == ["succeeded", "succeeded", "succeeded"]
    assert [(m["attempt"], m["status"]) for m in metrics(tmp_path)] == [(1, "cancelled"), (2, "succeeded")]


def test_a_stage_ignoring_term_is_killed_after_the_grace_period(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("stubborn", STUBBORN)), limits={**FAST, "cancelGraceSeconds": 1})
    proc = spawn(tmp_path, "start", "--format", "json")
    pids = started(tmp_path)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 130
    assert time.monotonic() - signalled >= 1.0  # TERM was ignored: KILL came after the grace period
    assert_group_gone(pids)
    doc = manifest(tmp_path, json.loads(output(tmp_path)[0])["run_id"])
    assert doc["status"] == "cancelled"
    error = json.loads((tmp_path / doc["commands"][0]["error_file"]).read_text())
    assert error["details"]["signal"] == "SIGKILL"


def test_a_second_ctrl_c_kills_at_once(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("stubborn", STUBBORN)), limits={**FAST, "cancelGraceSeconds": 120})
    proc = spawn(tmp_path, "start")
    pids = started(tmp_path)
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: "press Ctrl-C again to kill at once" in output(tmp_path)[0], "the runner to acknowledge the first Ctrl-C")
    assert alive(pids[0])  # the stage ignores TERM and the grace period is long: still running
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert finish(proc, timeout=60) == 130
    assert time.monotonic() - signalled < 60  # far less than the 120 s grace period
    assert_group_gone(pids)
    out = output(tmp_path)[0]
    run_id = out.split()[1]
    assert manifest(tmp_path, run_id)["status_detail"] == "cancelled by SIGINT during stage stubborn"
    assert out.splitlines()[-1] == f"run {run_id} cancelled by SIGINT during stage stubborn"
