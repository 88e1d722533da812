"""`runjournal plan`: the stages `start` would run; malformed configs refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_error_line, compat_file
from helpers.runner_support import cli, cmd, pipeline, sub, write_config


@pytest.fixture
def real_config_path() -> Path:
    return compat_file("codex.orchestrator.json")


@pytest.fixture
def real_config(real_config_path: Path) -> dict:
    return json.loads(real_config_path.read_text())


def test_plan_shows_every_pipeline_of_the_real_config(tmp_path: Path, real_config_path: Path, real_config: dict):
    for raw in real_config["pipelines"]:
        p = cli(tmp_path, "plan", raw["id"], "--config", real_config_path)
        assert p.returncode == 0, p.stderr
        assert p.stderr == ""
        lines = p.stdout.splitlines()
        assert lines[0] == f"{raw['id']}: {raw['title']}  ({real_config_path})"
        assert lines[1] == f"  {raw['description']}"
        rows = lines[3:]  # after the header row
        assert len(rows) == len(raw["stages"])
        for n, (row, stage) in enumerate(zip(rows, raw["stages"]), 1):
            assert row.split()[:2] == [str(n), stage["id"]]
            assert stage["command"] in row


def test_plan_json_of_the_real_config(tmp_path: Path, real_config_path: Path, real_config: dict):
    for raw in real_config["pipelines"]:
        p = cli(tmp_path, "plan", raw["id"], "--config", real_config_path, "--format", "json")
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["config"] == str(real_config_path)
        assert (doc["pipeline_id"], doc["title"], doc["description"]) == (raw["id"], raw["title"], raw["description"])
        assert doc["tags"] == raw.get("tags", [])
        assert [(s["index"], s["id"], s["title"], s["kind"], s["command"]) for s in doc["stages"]] == [
            (n, s["id"], s["title"], s["kind"], s["command"]) for n, s in enumerate(raw["stages"], 1)
        ]


def test_plan_without_a_name_shows_the_first_pipeline(tmp_path: Path, real_config_path: Path, real_config: dict):
    p = cli(tmp_path, "plan", "--config", real_config_path, "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["pipeline_id"] == real_config["pipelines"][0]["id"]


def test_plan_marks_allowed_failures_optional_and_sub_pipelines(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("lint", "make lint", allowFailure=True), sub("extra", "q", optional=True)), pipeline("q", cmd("x", "true")))
    p = cli(tmp_path, "plan", "p")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1:] == [
        "#  stage  runs            notes",
        "1  lint   make lint       failure allowed",
        "2  extra  sub-pipeline q  optional",
    ]


def test_plan_without_config_shows_the_embedded_starter(tmp_path: Path):
    p = cli(tmp_path, "plan", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["config"] == "(embedded starter pipeline)"
    assert doc["stages"]


def test_plan_of_an_unknown_pipeline_is_bad_usage(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("a", "true")))
    p = cli(tmp_path, "plan", "nope")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "no pipeline 'nope' (known: p)")


MALFORMED = {
    "unknown kind": ([pipeline("p", {"kind": "shell", "id": "s1", "title": "t", "command": "true"})], ["pipeline 'p'", "stage 's1'", "unknown kind 'shell'"]),
    "missing command": ([pipeline("p", {"kind": "command", "id": "s1", "title": "t"})], ["pipeline 'p'", "stage 's1'", "field 'command' is missing"]),
    "duplicate stage id": ([pipeline("p", cmd("s1", "true"), cmd("s1", "true"))], ["pipeline 'p'", "duplicate stage id 's1'", "(stage #2)"]),
    "missing sub-pipeline": ([pipeline("p", sub("s1", "ghost"))], ["pipeline 'p'", "stage 's1'", "sub-pipeline 'ghost' does not exist"]),
    "includes itself": ([pipeline("p", sub("s1", "p"))], ["pipeline 'p'", "stage 's1'", "include themselves (p -> p)"]),
    "includes itself through another": (
        [pipeline("p", cmd("a", "true"), sub("to-q", "q")), pipeline("q", sub("to-r", "r")), pipeline("r", sub("to-p", "p"))],
        ["pipeline 'r'", "stage 'to-p'", "include themselves (p -> q -> r -> p)"],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("command", ["plan", "start"])
def test_malformed_config_is_refused_with_one_error_line(tmp_path: Path, case: str, command: str):
    pipelines, fragments = MALFORMED[case]
    path = write_config(tmp_path, *pipelines)
    p = cli(tmp_path, command)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert_one_error_line(p.stderr, str(path), *fragments)
    assert not (tmp_path / ".runs").exists()  # nothing was run or recorded


def test_invalid_json_is_refused(tmp_path: Path):
    (tmp_path / "codex.orchestrator.json").write_text('{"pipelines": [}')
    p = cli(tmp_path, "plan")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "codex.orchestrator.json: not valid JSON", "line 1 column 16")


def test_unknown_runjournal_setting_is_refused(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={"heartbeatSeconds": 1})
    p = cli(tmp_path, "plan")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "runjournal.heartbeatSeconds is not a known setting")


def test_a_missing_config_file_is_refused(tmp_path: Path):
    p = cli(tmp_path, "plan", "--config", tmp_path / "nothere.json")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "cannot read config", "nothere.json")
