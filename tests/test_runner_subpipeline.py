"""Sub-pipelines: a `subpipeline` stage runs as a child run with its own id, linked both ways."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from helpers import assert_one_error_line, wait_until
from helpers.runner_support import cli, cmd, finish, manifest, metrics, output, pipeline, spawn, sub, token_file, write_config

CHILD_ENV = 'echo "$CODEX_ORCHESTRATOR_RUN_ID $CODEX_ORCHESTRATOR_PIPELINE_ID" > child-env'


def start(root: Path, *args) -> dict:
    p = cli(root, "start", *args, "--format", "json")
    result = json.loads(p.stdout)
    assert p.returncode == result["exit_code"], p.stderr
    return result


def test_a_sub_pipeline_runs_as_a_linked_child_run(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline("parent", cmd("before", "true"), sub("checks", "child"), cmd("after", "touch after")),
        pipeline("child", cmd("inner", CHILD_ENV)),
    )
    result = start(tmp_path, "parent")
    assert result["status"] == "succeeded"
    parent = manifest(tmp_path, result["run_id"])
    [link] = parent["child_runs"]
    child_id = link["run_id"]
    assert child_id != parent["run_id"]
    assert link == {"run_id": child_id, "pipeline_id": "child", "status": "succeeded", "manifest": f".runs/default/cli/{child_id}/manifest.json"}
    stage = parent["commands"][1]
    assert (stage["kind"], stage["command"], stage["status"], stage["sub_run_id"]) == ("subpipeline", "child", "succeeded", child_id)
    assert stage["summary"] == f"child run {child_id} succeeded"
    assert (tmp_path / "after").exists()

    child = manifest(tmp_path, child_id)
    assert (child["parent_run_id"], child["pipeline_id"], child["status"]) == (parent["run_id"], "child", "succeeded")
    assert (tmp_path / "child-env").read_text().split() == [child_id, "child"]  # the stage sees its own run
    assert sorted((m["run_id"], m["status"]) for m in metrics(tmp_path)) == sorted([(parent["run_id"], "succeeded"), (child_id, "succeeded")])


def test_a_failing_optional_sub_pipeline_does_not_fail_the_parent(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline("parent", sub("extras", "flaky", optional=True), cmd("after", "touch after")),
        pipeline("flaky", cmd("inner", "exit 7")),
    )
    result = start(tmp_path, "parent")
    assert (result["status"], result["exit_code"]) == ("succeeded", 0)
    parent = manifest(tmp_path, result["run_id"])
    stage = parent["commands"][0]
    child_id = stage["sub_run_id"]
    assert (stage["status"], stage["summary"]) == ("skipped", f"child run {child_id} failed (optional)")
    assert parent["child_runs"][0]["status"] == "failed"
    assert (tmp_path / "after").exists()
    child = manifest(tmp_path, child_id)
    assert (child["status"], child["commands"][0]["exit_code"]) == ("failed", 7)


def test_a_failing_sub_pipeline_fails_the_parent_and_a_resume_runs_a_new_child(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline("parent", cmd("before", "echo x >> count-before"), sub("required", "strict"), cmd("after", "touch after")),
        pipeline("strict", cmd("inner", "test -e fixed")),
    )
    result = start(tmp_path, "parent")
    assert (result["status"], result["exit_code"]) == ("failed", 1)
    run_id = result["run_id"]
    parent = manifest(tmp_path, run_id)
    first_child = parent["commands"][1]["sub_run_id"]
    assert parent["status_detail"] == "failed: sub-pipeline required (strict) failed"
    assert [c["status"] for c in parent["commands"]] == ["succeeded", "failed", "pending"]
    assert not (tmp_path / "after").exists()
    assert manifest(tmp_path, first_child)["status"] == "failed"

    (tmp_path / "fixed").touch()
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert p.returncode == 0, p.stderr
    parent = manifest(tmp_path, run_id)
    second_child = parent["commands"][1]["sub_run_id"]
    assert second_child != first_child
    assert [(c["run_id"], c["status"]) for c in parent["child_runs"]] == [(first_child, "failed"), (second_child, "succeeded")]
    assert manifest(tmp_path, second_child)["parent_run_id"] == run_id
    assert (tmp_path / "count-before").read_text() == "x\n"
    assert parent["status"] == "succeeded"


def test_sigterm_during_a_sub_pipeline_cancels_child_and_parent(tmp_path: Path):
    write_config(
        tmp_path,
        pipeline("parent", sub("slow", "child"), cmd("after", "touch after")),
        pipeline("child", cmd("wait", "touch started; sleep 300")),
        limits={"cancelGraceSeconds": 1},
    )
    proc = spawn(tmp_path, "start", "parent", "--format", "json")
    wait_until(lambda: (tmp_path / "started").exists(), "the child's stage to start")
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 130
    result = json.loads(output(tmp_path)[0])
    parent = manifest(tmp_path, result["run_id"])
    child_id = parent["commands"][0]["sub_run_id"]
    assert (parent["status"], parent["status_detail"]) == ("cancelled", "cancelled during sub-pipeline slow")
    assert manifest(tmp_path, child_id)["status"] == "cancelled"
    assert not (tmp_path / "after").exists()


def test_resume_with_a_config_lacking_the_sub_pipeline_is_refused_before_anything_runs(tmp_path: Path):
    write_config(tmp_path, pipeline("parent", sub("required", "strict")), pipeline("strict", cmd("inner", "test -e fixed")))
    run_id = start(tmp_path, "parent")["run_id"]
    other = write_config(tmp_path, pipeline("other", cmd("a", "true")), name="other.json")
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}", "--config", other)
    assert p.returncode == 2
    assert_one_error_line(p.stderr, f"{other}: no pipeline 'strict', which run {run_id} runs as a sub-pipeline")
    parent = manifest(tmp_path, run_id)
    assert (parent["status"], parent["resume_events"], len(parent["child_runs"])) == ("failed", [], 1)

    (tmp_path / "fixed").touch()
    p = cli(tmp_path, "resume", run_id, "--token", f"@{token_file(tmp_path, run_id)}")
    assert p.returncode == 0, p.stderr
    assert manifest(tmp_path, run_id)["status"] == "succeeded"
