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


def test_plan_starter_shows_the_embedded_starter(tmp_path: Path):
    p = cli(tmp_path, "plan", "--starter", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert (doc["config"], doc["pipeline_id"]) == ("(embedded starter pipeline)", "hello")
    assert [s["id"] for s in doc["stages"]] == ["where", "system", "check"]
    assert doc["problems"] == []


def test_plan_without_config_is_refused(tmp_path: Path):
    p = cli(tmp_path, "plan")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (
        f"error: no codex.orchestrator.json in {tmp_path} (--root): write one in {tmp_path} with `runjournal init`, "
        "run the embedded starter with `runjournal plan --starter`, or name one with --config FILE\n"
    )


def test_plan_of_an_unknown_pipeline_is_bad_usage(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("a", "true")))
    p = cli(tmp_path, "plan", "nope")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "no pipeline 'nope' (known: p)")


MALFORMED = {
    "unknown kind": ([pipeline("p", {"kind": "shell", "id": "s1", "title": "t", "command": "true"})], ["pipeline 'p'", "stage 's1'", "unknown kind 'shell'"]),
    "missing command": ([pipeline("p", {"kind": "command", "id": "s1", "title": "t"})], ["pipeline 'p'", "stage 's1'", "field 'command' is missing"]),
    "misspelt command": (
        [pipeline("p", {"kind": "command", "id": "s1", "title": "t", "comand": "make"})],
        ['unknown key "comand" in stage \'s1\' of pipeline \'p\': did you mean "command"?'],
    ),
    "unknown pipeline key": ([{**pipeline("p", cmd("a", "true")), "timeout": 5}], ['unknown key "timeout" in pipeline \'p\': did you mean "timeoutSeconds"?']),
    "bad timeout": ([pipeline("p", cmd("a", "true", timeoutSeconds=0))], ["pipeline 'p' stage 'a': field 'timeoutSeconds' must be a number of seconds > 0"]),
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


def test_a_misspelt_key_is_named_with_the_one_meant(tmp_path: Path):
    path = write_config(tmp_path, pipeline("ci", cmd("lint", "true"), {"kind": "command", "id": "build", "title": "Build", "comand": "make"}))
    for command in ("plan", "start"):
        p = cli(tmp_path, command)
        assert (p.returncode, p.stdout) == (2, "")
        assert p.stderr == f'error: {path}: unknown key "comand" in stage \'build\' of pipeline \'ci\': did you mean "command"?\n'


def test_keys_codex_orchestrator_defines_are_one_warning_line(tmp_path: Path):
    path = write_config(tmp_path, pipeline("ci", cmd("build", "echo built", session={"id": "s"}, plan={"aliases": ["b"]})))
    warning = (
        f"warning: {path}: ignoring keys that Codex Orchestrator defines and runjournal does not use: "
        "\"session\" (stage 'build' of pipeline 'ci'), \"plan\" (stage 'build' of pipeline 'ci')\n"
    )
    p = cli(tmp_path, "plan")
    assert (p.returncode, p.stderr) == (0, warning)
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["status"] == "succeeded"
    assert p.stderr.splitlines()[0] == warning.rstrip("\n")
    assert sum(line.startswith("warning:") for line in p.stderr.splitlines()) == 1


# -- working directories --------------------------------------------------------------------


def test_plan_reports_each_missing_working_directory(tmp_path: Path):
    (tmp_path / "there").mkdir()
    (tmp_path / "afile").touch()
    path = write_config(
        tmp_path,
        pipeline("ci", cmd("ok", "true", cwd="there"), cmd("typo", "true", cwd="thre"), cmd("file", "true", cwd="afile"), sub("more", "extra")),
        pipeline("extra", cmd("abs", "true", cwd=str(tmp_path / "gone"))),
        pipeline("unrelated", cmd("x", "true", cwd="nowhere")),
    )
    errors = [
        f"error: {path}: pipeline 'ci' stage 'typo': cwd 'thre' ({tmp_path / 'thre'}) does not exist",
        f"error: {path}: pipeline 'ci' stage 'file': cwd 'afile' ({tmp_path / 'afile'}) is not a directory",
        f"error: {path}: pipeline 'extra' stage 'abs': cwd '{tmp_path / 'gone'}' does not exist",
    ]
    p = cli(tmp_path, "plan")
    assert p.returncode == 2
    assert p.stdout.splitlines()[0] == f"ci: ci pipeline  ({path})"  # the plan is shown, then what is wrong with it
    assert p.stderr.splitlines() == errors

    p = cli(tmp_path, "plan", "--format", "json")
    assert p.returncode == 2
    assert json.loads(p.stdout)["problems"] == [e.removeprefix("error: ") for e in errors]
    assert p.stderr.splitlines() == errors


def test_plan_passes_when_every_working_directory_exists(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    write_config(tmp_path, pipeline("ci", cmd("a", "true", cwd="sub"), cmd("b", "true")))
    p = cli(tmp_path, "plan", "--format", "json")
    assert (p.returncode, p.stderr) == (0, "")
    assert json.loads(p.stdout)["problems"] == []


# -- plan --list --------------------------------------------------------------------------


def test_plan_list_shows_every_pipeline(tmp_path: Path):
    path = write_config(tmp_path, pipeline("ci", cmd("a", "true"), cmd("b", "true")), {"id": "docs", "title": "Build the docs", "description": "HTML", "tags": ["d"], "stages": [cmd("html", "true")]})
    p = cli(tmp_path, "plan", "--list")
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.splitlines() == [
        f"2 pipeline(s) in {path}",
        "pipeline  title           stages",
        "ci        ci pipeline     2",
        "docs      Build the docs  1",
    ]
    p = cli(tmp_path, "plan", "--list", "--format", "json")
    assert (p.returncode, p.stderr) == (0, "")
    assert json.loads(p.stdout) == {
        "config": str(path),
        "pipelines": [
            {"id": "ci", "title": "ci pipeline", "description": None, "tags": [], "stages": 2},
            {"id": "docs", "title": "Build the docs", "description": "HTML", "tags": ["d"], "stages": 1},
        ],
    }


def test_plan_list_of_the_real_config(tmp_path: Path, real_config_path: Path, real_config: dict):
    p = cli(tmp_path, "plan", "--list", "--config", real_config_path, "--format", "json")
    assert p.returncode == 0, p.stderr
    assert [(x["id"], x["title"], x["stages"]) for x in json.loads(p.stdout)["pipelines"]] == [
        (raw["id"], raw["title"], len(raw["stages"])) for raw in real_config["pipelines"]
    ]


def test_plan_list_takes_no_pipeline(tmp_path: Path):
    write_config(tmp_path, pipeline("ci", cmd("a", "true")))
    p = cli(tmp_path, "plan", "ci", "--list")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == "error: --list lists every pipeline: give it without PIPELINE (got 'ci') (see `runjournal plan --help`)\n"
