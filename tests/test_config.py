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
from runjournal.runner.config import ConfigNotFound, find, starter


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


def test_without_a_config_file_load_refuses(tmp_path: Path):
    with pytest.raises(ConfigNotFound, match=rf"^no codex\.orchestrator\.json in {tmp_path}$"):
        load(None, str(tmp_path))
    assert issubclass(ConfigNotFound, ConfigError)


def test_the_embedded_starter_is_what_init_writes():
    config = starter()
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
    with pytest.raises(
        ConfigError,
        match=r'runjournal\.journalEnvInClean is not a known setting \(known: .*, cancelGraceSeconds, stageTimeoutSeconds, journalEnvInClear, retention\); did you mean "journalEnvInClear"\?$',
    ):
        load(str(path), str(tmp_path))


# -- keys neither format has, and Codex Orchestrator's own -----------------------------------


@pytest.mark.parametrize(
    "stage, message",
    [
        (
            {"kind": "command", "id": "build", "title": "t", "comand": "make"},
            'unknown key "comand" in stage \'build\' of pipeline \'ci\': did you mean "command"?',
        ),
        (
            {"kind": "command", "id": "build", "title": "t", "command": "make", "timeout": 5},
            'unknown key "timeout" in stage \'build\' of pipeline \'ci\': did you mean "timeoutSeconds"?',
        ),
        (
            {"kind": "command", "id": "build", "title": "t", "command": "make", "allowfailure": True},
            'unknown key "allowfailure" in stage \'build\' of pipeline \'ci\': did you mean "allowFailure"?',
        ),
        (
            {"kind": "command", "title": "t", "comand": "make"},
            'unknown key "comand" in stage #1 of pipeline \'ci\': did you mean "command"?',
        ),
        (
            {"kind": "command", "id": "build", "title": "t", "command": "make", "xyzzy": 1},
            'unknown key "xyzzy" in stage \'build\' of pipeline \'ci\': known keys: kind, id, title, command, cwd, env, allowFailure, summaryHint, timeoutSeconds',
        ),
        (
            {"kind": "subpipeline", "id": "docs", "title": "t", "pipeline": "ci", "command": "make"},
            'key "command" in stage \'docs\' of pipeline \'ci\', a sub-pipeline stage: it belongs to command stages',
        ),
        (
            {"kind": "subpipeline", "id": "docs", "title": "t", "pipeline": "ci", "timeoutSeconds": 5},
            'key "timeoutSeconds" in stage \'docs\' of pipeline \'ci\', a sub-pipeline stage: set "timeoutSeconds" on pipeline \'ci\' instead',
        ),
        (
            {"kind": "subpipeline", "id": "docs", "title": "t", "pipelin": "ci"},
            'unknown key "pipelin" in stage \'docs\' of pipeline \'ci\': did you mean "pipeline"?',
        ),
    ],
    ids=["typo", "unknown-timeout", "case", "no-id", "far-from-any", "command-in-sub", "timeout-in-sub", "sub-typo"],
)
def test_an_unknown_stage_key_is_refused_with_the_nearest_known_one(tmp_path: Path, stage: dict, message: str):
    path = write_config(tmp_path, {"id": "ci", "title": "CI", "stages": [stage]})
    with pytest.raises(ConfigError) as info:
        load(str(path), str(tmp_path))
    assert str(info.value) == f"{path}: {message}"


def test_an_unknown_pipeline_key_is_refused_with_the_nearest_known_one(tmp_path: Path):
    path = write_config(tmp_path, {"id": "ci", "title": "CI", "stage": [cmd("a", "true")]})
    with pytest.raises(ConfigError) as info:
        load(str(path), str(tmp_path))
    assert str(info.value) == f'{path}: unknown key "stage" in pipeline \'ci\': did you mean "stages"?'


def test_keys_codex_orchestrator_defines_are_kept_as_one_warning(tmp_path: Path):
    path = write_config(
        tmp_path,
        pipeline("ci", cmd("build", "make", session={"id": "s", "reuse": True}), cmd("test", "make test", plan={"aliases": ["t"]})),
        pipeline("docs", cmd("html", "make html", requiresCloud=False)),
    )
    config = load(str(path), str(tmp_path))
    assert [s.id for s in config.pipeline("ci").stages] == ["build", "test"]
    assert config.ignored == ("\"session\" (stage 'build' of pipeline 'ci')", "\"plan\" (stage 'test' of pipeline 'ci')", "\"requiresCloud\" (stage 'html' of pipeline 'docs')")
    assert config.warning == (
        f"{path}: ignoring keys that Codex Orchestrator defines and runjournal does not use: "
        "\"session\" (stage 'build' of pipeline 'ci'), \"plan\" (stage 'test' of pipeline 'ci'), \"requiresCloud\" (stage 'html' of pipeline 'docs')"
    )


def test_a_config_without_such_keys_has_no_warning(tmp_path: Path):
    assert load(str(write_config(tmp_path, pipeline("ci", cmd("a", "true")))), str(tmp_path)).warning is None


# -- timeouts ------------------------------------------------------------------------------


def test_timeouts_are_read_per_stage_per_pipeline_and_by_default(tmp_path: Path):
    path = write_config(
        tmp_path,
        {"id": "ci", "title": "CI", "timeoutSeconds": 600, "stages": [cmd("build", "make", timeoutSeconds=1.5), cmd("test", "make test")]},
        limits={"stageTimeoutSeconds": 30},
    )
    config = load(str(path), str(tmp_path))
    p = config.pipeline("ci")
    assert (p.timeout_seconds, [s.timeout_seconds for s in p.stages]) == (600.0, [1.5, None])
    assert isinstance(p.timeout_seconds, float)
    assert config.limits.stage_timeout_seconds == 30.0


def test_without_timeouts_nothing_is_limited(tmp_path: Path):
    config = load(str(write_config(tmp_path, pipeline("ci", cmd("a", "true")))), str(tmp_path))
    assert (config.pipeline("ci").timeout_seconds, config.pipeline("ci").stages[0].timeout_seconds) == (None, None)
    assert Limits().stage_timeout_seconds is None


@pytest.mark.parametrize(
    "value, bound",
    [(0, "> 0"), (-1, "> 0"), (True, "> 0"), ("5", "> 0"), (float("nan"), "> 0"), (float("inf"), "<= 9223372036"), (1e10, "<= 9223372036")],
    ids=["zero", "negative", "boolean", "string", "nan", "infinity", "too-long"],
)
@pytest.mark.parametrize("where", ["stage", "pipeline", "default"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tmp_path: Path, value, bound: str, where: str):
    stage, doc, limits = cmd("build", "make"), {"id": "ci", "title": "CI"}, None
    if where == "stage":
        stage["timeoutSeconds"] = value
        field = "pipeline 'ci' stage 'build': field 'timeoutSeconds'"
    elif where == "pipeline":
        doc["timeoutSeconds"] = value
        field = "pipeline 'ci': field 'timeoutSeconds'"
    else:
        limits = {"stageTimeoutSeconds": value}
        field = "runjournal.stageTimeoutSeconds"
    path = write_config(tmp_path, {**doc, "stages": [stage]}, limits=limits)
    with pytest.raises(ConfigError) as info:
        load(str(path), str(tmp_path))
    assert str(info.value) == f"{path}: {field} must be a number of seconds {bound}"


# -- where the config is found -------------------------------------------------------------


def test_find_stops_at_the_repository_top(tmp_path: Path):
    (tmp_path / "codex.orchestrator.json").write_text("{}")  # above the repository: never reached
    repo = tmp_path / "repo"
    deeper = repo / "sub" / "deeper"
    deeper.mkdir(parents=True)
    (repo / ".git").mkdir()
    search = find(str(deeper))
    assert (search.found, search.top, search.at_repository) == (None, str(repo), True)
    assert search.describe() == f"{deeper} or its parents up to {repo} (the repository root)"


def test_find_takes_the_nearest_config(tmp_path: Path):
    repo = tmp_path / "repo"
    deeper = repo / "sub" / "deeper"
    deeper.mkdir(parents=True)
    (repo / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git is a file: still the top
    (repo / "codex.orchestrator.json").write_text("{}")
    (repo / "sub" / "codex.orchestrator.json").write_text("{}")
    assert find(str(deeper)).found == str(repo / "sub" / "codex.orchestrator.json")
    assert find(str(repo)).found == str(repo / "codex.orchestrator.json")


def test_find_without_a_repository_stops_at_the_filesystem_root(tmp_path: Path):
    if any((d / ".git").exists() or (d / CONFIG_NAME).exists() for d in tmp_path.parents):
        pytest.skip(f"a parent of {tmp_path} holds .git or a config")
    search = find(str(tmp_path))
    assert (search.start, search.top, search.found, search.at_repository) == (str(tmp_path), "/", None, False)
    assert search.describe() == f"{tmp_path} or its parents up to / (the filesystem root)"
