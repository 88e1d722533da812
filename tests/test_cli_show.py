"""`runjournal show RUN_ID`: the run's manifest, caught up with the journal first."""

from __future__ import annotations

import json

from helpers import assert_one_error_line
from helpers.histories import RunScript, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture

from runjournal.journal import events as ev
from runjournal.journal.writer import Journal


def test_prints_the_manifest_as_of_the_journal_end_and_writes_nothing(tmp_path, invoke):
    # never stale in this test (a stale mark carries its observer's clock, so show and project differ)
    run = RunScript(make_run_id(1), stages=2, stale_after=10**9).stage(1)
    journal_dir = populate(tmp_path, run.items)
    path = tmp_path / ".runs" / "default" / "cli" / run.run_id / "manifest.json"
    code, out, err = invoke("show", run.run_id)  # nothing projected yet: show folds the journal itself
    assert (code, err) == (0, "")
    assert not path.exists()
    assert json.loads(out)["commands"][0]["status"] == "succeeded"
    assert invoke("project")[0] == 0
    assert out.encode() == path.read_bytes()  # the bytes `project` writes

    with Journal(journal_dir, durability="none") as journal:
        journal.append(run.run_id, ev.RunCompleted(summary="done"))
    code, out, _ = invoke("show", run.run_id, "--format", "json")  # the file is behind now: show is not
    assert code == 0
    doc = json.loads(out)
    assert (doc["status"], doc["summary"]) == ("succeeded", "done")
    assert json.loads(path.read_bytes())["status"] == "in_progress"
    assert invoke("project")[0] == 0
    assert out.encode() == path.read_bytes()


def test_finds_the_run_in_any_task(tmp_path, invoke):
    populate(tmp_path, RunScript(make_run_id(1)).items)
    nightly = RunScript(make_run_id(2), task="nightly").stage(1).complete()
    populate(tmp_path, nightly.items, task="nightly")
    code, out, _ = invoke("show", nightly.run_id)
    assert code == 0
    assert json.loads(out)["task_id"] == "nightly"
    code, _, err = invoke("show", nightly.run_id, "--task", "default")
    assert code == 2
    assert_one_error_line(err, f"no run {nightly.run_id} in task default")


def test_unknown_run_and_bad_id(tmp_path, invoke):
    populate(tmp_path, RunScript(make_run_id(1)).items)
    code, out, err = invoke("show", make_run_id(9))
    assert (code, out) == (2, "")
    assert_one_error_line(err, f"no run {make_run_id(9)} in any task under {tmp_path / '.runs'}")
    code, out, err = invoke("show", "../../etc/passwd")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "run id '../../etc/passwd' must not contain '/'")
    code, _, err = invoke("show", ".hidden")
    assert code == 2
    assert_one_error_line(err, "must not start with '.'")
