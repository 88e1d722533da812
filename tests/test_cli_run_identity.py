"""A run is (task, run id): copies of a run in several tasks are shown as such, never picked silently.

After `cp -r .runs/nightly .runs/crashed` or `import … --task laptop` the same run id lives in
two tasks. `runs` shows each copy with the task it lives in; `status`, `show` and `replay`
without `--task` refuse to guess (exit 2, naming the tasks); with `--task` they use that copy.
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import assert_one_error_line
from helpers.histories import RunScript, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture
from helpers.trees import projection_tree

RUN = make_run_id(1)
COMMANDS = [("status", RUN), ("show", RUN), ("replay", RUN), ("replay", RUN, "--at", "+1s"), ("status", RUN, "--watch")]


def nightly(root) -> RunScript:
    run = RunScript(RUN, task="nightly", stages=1).stage(1).complete()
    populate(root, run.items, task="nightly")
    return run


@pytest.fixture
def copied(tmp_path, invoke):
    """The nightly task, projected, then copied whole (journal, projections, checkpoint) to crashed."""
    nightly(tmp_path)
    assert invoke("project")[0] == 0
    shutil.copytree(tmp_path / ".runs" / "nightly", tmp_path / ".runs" / "crashed")
    return tmp_path


def test_runs_shows_the_task_each_copy_lives_in(copied, invoke):
    code, out, err = invoke("runs")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "RUN ID                             TASK     PIPELINE     STATUS     STARTED                   DURATION",
        f"{RUN}  nightly  diagnostics  succeeded  2025-12-01T09:37:11.576Z  1.6s",
        f"{RUN}  crashed  diagnostics  succeeded  2025-12-01T09:37:11.576Z  1.6s",
    ]
    docs = json.loads(invoke("runs", "--format", "json")[1])
    assert [(d["run_id"], d["task_id"]) for d in docs] == [(RUN, "nightly"), (RUN, "crashed")]
    assert docs[1]["manifest"] == str(copied / ".runs" / "crashed" / "cli" / RUN / "manifest.json")


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_a_run_in_several_tasks_asks_for_task(copied, invoke, args):
    code, out, err = invoke(*args)
    assert (code, out) == (2, "")
    assert err == f"error: run {RUN} is in several tasks: crashed, nightly; choose one with --task\n"


def test_with_task_that_copy_is_used(copied, invoke):
    code, out, err = invoke("status", RUN, "--task", "crashed")
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == [f"run:       {RUN}", "task:      crashed"]
    assert json.loads(invoke("status", RUN, "--task", "crashed", "--format", "json")[1])["task_id"] == "crashed"
    manifest = json.loads(invoke("show", RUN, "--task", "crashed")[1])
    assert (manifest["task_id"], manifest["task_slug"], manifest["artifact_root"]) == ("crashed", "crashed", f".runs/crashed/cli/{RUN}")
    code, out, _ = invoke("replay", RUN, "--task", "crashed")
    assert out.splitlines()[0] == f"run {RUN} (task crashed), started 2025-12-01T09:37:11.576Z, 7 records"
    assert json.loads(invoke("replay", RUN, "--task", "nightly", "--at", "3")[1])["task_id"] == "nightly"


def test_the_copy_is_projected_as_its_own_task(copied, invoke, tmp_path):
    # the checkpoint copied with the task describes nightly's files: it is not used
    assert invoke("project", "--task", "crashed")[0] == 0
    run_dir = copied / ".runs" / "crashed" / "cli" / RUN
    manifest = json.loads((run_dir / "manifest.json").read_bytes())
    assert (manifest["task_id"], manifest["compat_path"]) == ("crashed", f".runs/crashed/cli/{RUN}/manifest.json")
    metrics = json.loads((copied / ".runs" / "crashed" / "metrics.json").read_text())
    assert metrics["task_id"] == "crashed"
    tree = projection_tree(copied)
    assert invoke("project", "--task", "crashed", "--rebuild")[0] == 0
    assert projection_tree(copied) == tree


def test_an_imported_copy_is_the_importing_task(tmp_path, invoke, monkeypatch):
    nightly(tmp_path)
    export = tmp_path / "run.jsonl"
    assert invoke("export", "--task", "nightly", "--run", RUN, "-o", str(export))[0] == 0
    code, out, err = invoke("import", str(export), "--task", "laptop")
    assert code == 0 and out.startswith("imported 7 of 7 events into task laptop (0 already present)\nchain: every record matches"), err
    docs = json.loads(invoke("runs", "--format", "json")[1])
    assert sorted(d["task_id"] for d in docs) == ["laptop", "nightly"]
    code, out, err = invoke("status", RUN)
    assert code == 2
    assert_one_error_line(err, f"run {RUN} is in several tasks: laptop, nightly; choose one with --task")
    monkeypatch.setenv("RUNJOURNAL_TASK", "laptop")  # the environment's task chooses too
    code, out, err = invoke("status", RUN)
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "task:      laptop"


def test_a_run_in_one_task_needs_no_task(copied, invoke):
    other = make_run_id(2)
    populate(copied, RunScript(other, task="crashed").items, task="crashed")
    code, out, err = invoke("status", other, "--format", "json")
    assert (code, err) == (1, "")  # queued since 2025: shown stale
    assert json.loads(out)["task_id"] == "crashed"
    code, out, err = invoke("status", make_run_id(3))
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"no run {make_run_id(3)} in any task under {copied / '.runs'}")


def test_a_damaged_task_does_not_hide_a_run_of_another(tmp_path, invoke):
    nightly(tmp_path)
    other = RunScript(make_run_id(2), task="broken").stage(1).stage(2)
    populate(tmp_path, other.items, task="broken")
    [segment] = [p for p in (tmp_path / ".runs" / "broken" / "journal").iterdir() if p.name.startswith("seg-")]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x40
    segment.write_bytes(bytes(data))
    code, out, err = invoke("status", RUN, "--format", "json")
    assert (code, json.loads(out)["task_id"]) == (0, "nightly")
    assert err.startswith(f"warning: task broken could not be searched for run {RUN}: corrupt record in seg-"), err
    code, out, err = invoke("status", make_run_id(3))  # found nowhere: the damage is the answer
    assert (code, out) == (1, "")
    assert_one_error_line(err, "corrupt record in seg-", "(run `runjournal verify` for a full report)")
