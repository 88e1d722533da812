"""runner.config: pipelines in Codex Orchestrator's format, their validation and the limits.

The CLI side of the same errors (exit 2, one ``error:`` line) is in test_cli_plan.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compat_file
from helpers.runner_support import cmd, pipeline, sub, write_config

from runjournal.journal.errors import BadInput
from runjournal.runner import CONFIG_NAME, ConfigError, Limits, load, starter_text


def test_a_config_error_is_bad_input():
    assert issubclass(ConfigError, BadInput)


def test_real_codex_orchestrator_config_loads_unchanged(tmp_path: Path):
    real_config = compat_file("codex.orchestrator.json")
    config = load(str(real_config), str(tmp_path))
    doc = json.loads(real_config.read_text())
    assert list(config.pipelines) == [p["id"] for p in doc["pipelines"]]
    for raw in doc["pipelines"]:
        p = config.pipelines[raw["id"]]
        assert p.title == raw["title"]
        assert [s.id for s in p.stages] == [s["id"] for s in raw["stages"]]
        assert [s.command for s in p.stages] == [s.get("command") for s in raw["stages"]]
        assert p.tags == tuple(raw.get("tags", ()))
    assert config.limits == Limits()
    assert config.fingerprint.startswith("sha256:")


def test_without_a_config_file_the_embedded_starter_is_used(tmp_path: Path):
    config = load(None, str(tmp_path))
    assert config.path == "(embedded starter pipeline)"
    assert json.loads(starter_text())["pipelines"][0]["id"] == config.pipeline(None).id


def test_the_root_config_is_found_by_name(tmp_path: Path):
    write_config(tmp_path, pipeline("mine", cmd("a", "true")))
    config = load(None, str(tmp_path))
    assert config.path == str(tmp_path / CONFIG_NAME)
    assert config.pipeline(None).id == "mine"


def test_stage_fields_are_read(tmp_path: Path):
    path = write_config(
        tmp_path,
        pipeline(
            "p",
            cmd("a", "make", cwd="sub", env={"X": "1"}, allowFailure=True, summaryHint="build"),
            sub("b", "q", optional=True),
        ),
        pipeline("q", cmd("c", "true")),
    )
    a, b = load(str(path), str(tmp_path)).pipeline("p").stages
    assert (a.kind, a.command, a.cwd, a.env, a.allow_failure, a.summary_hint) == ("command", "make", "sub", {"X": "1"}, True, "build")
    assert (b.kind, b.pipeline, b.optional) == ("subpipeline", "q", True)


def test_limits_are_read_and_default_to_the_contract(tmp_path: Path):
    assert Limits() == Limits(65536, 8192, 5, 30, 5.0)
    path = write_config(
        tmp_path,
        pipeline("p", cmd("a", "true")),
        limits={"outputCapBytes": 4096, "stderrExcerptBytes": 512, "heartbeatIntervalSeconds": 1, "heartbeatStaleAfterSeconds": 2, "cancelGraceSeconds": 0.5},
    )
    assert load(str(path), str(tmp_path)).limits == Limits(4096, 512, 1, 2, 0.5)


def test_an_unknown_pipeline_name_lists_the_known_ones(tmp_path: Path):
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), pipeline("q", cmd("a", "true")))
    with pytest.raises(ConfigError, match=r"no pipeline 'nope' \(known: p, q\)"):
        load(str(path), str(tmp_path)).pipeline("nope")


# Each malformed config, and the words its error must contain: the pipeline, the stage, the field.
MALFORMED = {
    "unknown kind": (
        [pipeline("p", {"kind": "shell", "id": "s1", "title": "t", "command": "true"})],
        r"pipeline 'p' stage 's1': unknown kind 'shell'",
    ),
    "missing command": (
        [pipeline("p", {"kind": "command", "id": "s1", "title": "t"})],
        r"pipeline 'p' stage 's1': field 'command' is missing",
    ),
    "empty command": (
        [pipeline("p", cmd("s1", "  "))],
        r"pipeline 'p' stage 's1': field 'command' must be a non-empty string",
    ),
    "duplicate stage id": (
        [pipeline("p", cmd("s1", "true"), cmd("s1", "false"))],
        r"pipeline 'p': duplicate stage id 's1' \(stage #2\)",
    ),
    "sub-pipeline that does not exist": (
        [pipeline("p", sub("s1", "ghost"))],
        r"pipeline 'p' stage 's1': sub-pipeline 'ghost' does not exist",
    ),
    "sub-pipeline including itself": (
        [pipeline("p", cmd("a", "true"), sub("s1", "p"))],
        r"pipeline 'p' stage 's1': sub-pipelines include themselves \(p -> p\)",
    ),
    "sub-pipelines including themselves through another": (
        [pipeline("p", sub("to-q", "q")), pipeline("q", sub("to-p", "p"))],
        r"stage 'to-\w': sub-pipelines include themselves \((p -> q -> p|q -> p -> q)\)",
    ),
    "stage without an id": (
        [pipeline("p", {"kind": "command", "title": "t", "command": "true"})],
        r"pipeline 'p' stage #1: field 'id' is missing",
    ),
    "env with a number": (
        [pipeline("p", cmd("s1", "true", env={"N": 1}))],
        r"pipeline 'p' stage 's1': field 'env' must be an object of string values",
    ),
    "allowFailure not a boolean": (
        [pipeline("p", cmd("s1", "true", allowFailure="yes"))],
        r"pipeline 'p' stage 's1': field 'allowFailure' must be true or false",
    ),
    "no stages": (
        [{"id": "p", "title": "t", "stages": []}],
        r"pipeline 'p': field 'stages' must be a non-empty list",
    ),
    "pipeline defined twice": (
        [pipeline("p", cmd("a", "true")), pipeline("p", cmd("b", "true"))],
        r"pipeline 'p' is defined twice",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_config_names_pipeline_stage_and_field(tmp_path: Path, case: str):
    pipelines, message = MALFORMED[case]
    path = write_config(tmp_path, *pipelines)
    with pytest.raises(ConfigError, match=message) as info:
        load(str(path), str(tmp_path))
    assert str(path) in str(info.value)


def test_invalid_json_is_reported_with_its_position(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{"pipelines": [')
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON: .*line 1 column 16"):
        load(str(path), str(tmp_path))


def test_a_missing_config_file_is_reported(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"cannot read config .*nothere\.json: No such file"):
        load(str(tmp_path / "nothere.json"), str(tmp_path))


def test_no_pipelines_is_reported(tmp_path: Path):
    path = tmp_path / "c.json"
    path.write_text('{"pipelines": []}')
    with pytest.raises(ConfigError, match=r"field 'pipelines' must be a non-empty list"):
        load(str(path), str(tmp_path))


def test_an_unknown_runjournal_setting_is_refused(tmp_path: Path):
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={"outputCap": 10})
    with pytest.raises(ConfigError, match=r"runjournal\.outputCap is not a known setting \(known: outputCapBytes, "):
        load(str(path), str(tmp_path))


@pytest.mark.parametrize(
    "key, value, minimum",
    [("outputCapBytes", 10, "1024"), ("heartbeatIntervalSeconds", 0, "1"), ("heartbeatStaleAfterSeconds", True, "2"), ("cancelGraceSeconds", "5", "0")],
)
def test_a_runjournal_setting_out_of_range_is_refused(tmp_path: Path, key, value, minimum):
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={key: value})
    with pytest.raises(ConfigError, match=rf"runjournal\.{key} must be a number >= {minimum}"):
        load(str(path), str(tmp_path))


def test_journal_env_in_clear_is_read_and_defaults_to_none(tmp_path: Path):
    assert Limits().journal_env_in_clear == ()
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={"journalEnvInClear": ["MODE", "REGION", "MODE"]})
    assert load(str(path), str(tmp_path)).limits == Limits(journal_env_in_clear=("MODE", "REGION"))


@pytest.mark.parametrize(
    "value, message",
    [
        ({"MODE": True}, r"runjournal\.journalEnvInClear must be a list of variable names"),
        (None, r"runjournal\.journalEnvInClear must be a list of variable names"),
        ([""], r"runjournal\.journalEnvInClear has '': a variable name must be a non-empty string without '=' or NUL"),
        (["A=1"], r"runjournal\.journalEnvInClear has 'A=1': "),
        (["A\0"], r"runjournal\.journalEnvInClear has 'A\\x00': "),
        ([["MODE"]], r"runjournal\.journalEnvInClear has \['MODE'\]: "),
    ],
)
def test_a_malformed_journal_env_in_clear_is_refused(tmp_path: Path, value, message):
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={"journalEnvInClear": value})
    with pytest.raises(ConfigError, match=message) as info:
        load(str(path), str(tmp_path))
    assert str(path) in str(info.value)


def test_the_unknown_setting_error_lists_journal_env_in_clear(tmp_path: Path):
    path = write_config(tmp_path, pipeline("p", cmd("a", "true")), limits={"journalEnvInClean": ["MODE"]})
    with pytest.raises(ConfigError, match=r"runjournal\.journalEnvInClean is not a known setting \(known: .*, cancelGraceSeconds, journalEnvInClear\)$"):
        load(str(path), str(tmp_path))
