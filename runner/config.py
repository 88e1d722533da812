"""Pipelines in Codex Orchestrator's config format: load, validate, and the embedded starter.

A config is ``{"pipelines": [{id, title, description?, tags?, guardrailsRequired?,
timeoutSeconds?, stages: [{kind: "command", id, title, command, cwd?, env?, allowFailure?,
summaryHint?, timeoutSeconds?} | {kind: "subpipeline", id, title, pipeline, optional?}]}]}``,
plus an optional ``"runjournal"`` object with this project's limits and settings (see
``Limits``). Every error names the file, the pipeline, the stage and the field. A key that
neither format has is refused, with the nearest known key; one that Codex Orchestrator
defines but runjournal does not use is noted in ``Config.ignored`` for a warning.

``find`` looks for a config from a directory up to the repository's top; ``load`` reads one;
``starter`` is the embedded starter pipeline (what ``runjournal init`` writes).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field

from runjournal.journal.errors import BadInput
from runjournal.journal.naming import parse_duration

CONFIG_NAME = "codex.orchestrator.json"


class ConfigError(BadInput):
    """The pipeline config is malformed; the message names the pipeline, stage and field."""


class ConfigNotFound(ConfigError):
    """No config where one was looked for; the message says where, and how to get one."""


@dataclass(frozen=True)
class Stage:
    kind: str
    id: str
    title: str
    command: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    allow_failure: bool = False
    summary_hint: str | None = None
    pipeline: str | None = None
    optional: bool = False
    #: ``timeoutSeconds`` of a command stage: the longest it may run; None: ``Limits.stage_timeout_seconds``
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class Pipeline:
    id: str
    title: str
    stages: tuple[Stage, ...]
    description: str | None = None
    tags: tuple[str, ...] = ()
    guardrails_required: bool | None = None
    #: ``timeoutSeconds`` of the pipeline: the longest a run of it (all its stages) may take; None: no limit
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class RetentionRule:
    """One step of a retention policy: the runs that ended more than ``older_than_seconds``
    before the policy is applied, and all but the newest ``keep_last``; every one given must
    hold (``projections.retention.Selection``)."""

    older_than_seconds: float | None = None
    keep_last: int | None = None


@dataclass(frozen=True)
class Retention:
    """``runjournal.retention``: what ``watch`` archives, then prunes, in each task it watches,
    once when it starts and then every ``every_seconds``; a rule that is None does nothing."""

    archive: RetentionRule | None = None
    prune: RetentionRule | None = None
    every_seconds: float = 24 * 3600.0

    def __bool__(self) -> bool:
        return self.archive is not None or self.prune is not None


@dataclass(frozen=True)
class Limits:
    """Per-project settings (config key ``runjournal``); the limits default to the contract's values.

    ``journal_env_in_clear`` names the stage env variables whose values the journal keeps as
    they are; every other value is journaled as a keyed fingerprint (``runner.run``).
    """

    output_cap_bytes: int = 64 * 1024  # per stream and command, into memory and the journal
    stderr_excerpt_bytes: int = 8192  # stderr carried by an error event
    heartbeat_interval_seconds: int = 5
    heartbeat_stale_after_seconds: int = 30
    cancel_grace_seconds: float = 5.0
    journal_env_in_clear: tuple[str, ...] = ()
    #: ``stageTimeoutSeconds``: the timeout of each command stage without its own; None: no limit
    stage_timeout_seconds: float | None = None
    #: ``retention``: the policy ``watch`` applies; empty: none
    retention: Retention = Retention()


# the largest byte limit: its stream's end still fits one journal record (64 MiB)
_MAX_BYTES = 32 << 20
# the longest a thread can wait on a timer (threading.TIMEOUT_MAX on Linux, about 292 years)
_MAX_SECONDS = 9_223_372_036

_LIMIT_KEYS = {  # key: (Limits field, type, minimum, maximum)
    "outputCapBytes": ("output_cap_bytes", int, 1024, _MAX_BYTES),
    "stderrExcerptBytes": ("stderr_excerpt_bytes", int, 256, _MAX_BYTES),
    "heartbeatIntervalSeconds": ("heartbeat_interval_seconds", int, 1, _MAX_SECONDS),
    "heartbeatStaleAfterSeconds": ("heartbeat_stale_after_seconds", int, 2, _MAX_SECONDS),
    "cancelGraceSeconds": ("cancel_grace_seconds", (int, float), 0, _MAX_SECONDS),
}
_CLEAR_KEY = "journalEnvInClear"
_TIMEOUT_KEY = "stageTimeoutSeconds"
_RETENTION_KEY = "retention"
_RETENTION_KEYS = ("archive", "prune", "every")
_RULE_KEYS = ("olderThan", "keepLast")
#: the shortest ``retention.every``: each application reads the task's whole live journal
_MIN_RETENTION_EVERY = 1.0

#: the keys of each object, in the order the docs list them
_STAGE_KEYS = {
    "command": ("kind", "id", "title", "command", "cwd", "env", "allowFailure", "summaryHint", "timeoutSeconds"),
    "subpipeline": ("kind", "id", "title", "pipeline", "optional"),
}
_KIND_NAMES = {"command": "command", "subpipeline": "sub-pipeline"}
_PIPELINE_KEYS = ("id", "title", "description", "tags", "guardrailsRequired", "timeoutSeconds", "stages")
#: stage keys that Codex Orchestrator reads and runjournal does not (its ``session`` of a command
#: stage, and the planner's hints): warned about, never refused, so its configs load unchanged
_CODEX_ONLY_STAGE_KEYS = frozenset(
    {"session", "plan", "executionMode", "execution_mode", "mode", "cloudEnvId", "cloud_env_id", "requiresCloud", "requires_cloud"}
)


@dataclass(frozen=True)
class Config:
    path: str
    pipelines: dict[str, Pipeline]
    limits: Limits
    fingerprint: str
    #: keys of Codex Orchestrator's format that runjournal does not use, each with where it is
    ignored: tuple[str, ...] = ()

    @property
    def warning(self) -> str | None:
        """One line naming every ignored key, for the CLI to print; None if there is none."""
        if not self.ignored:
            return None
        return f"{self.path}: ignoring keys that Codex Orchestrator defines and runjournal does not use: {', '.join(self.ignored)}"

    def pipeline(self, pipeline_id: str | None) -> Pipeline:
        """The named pipeline, or the first one when no name is given."""
        if pipeline_id is None:
            return next(iter(self.pipelines.values()))
        try:
            return self.pipelines[pipeline_id]
        except KeyError:
            known = ", ".join(self.pipelines)
            raise ConfigError(f"{self.path}: no pipeline {pipeline_id!r} (known: {known})") from None


STARTER = {
    "pipelines": [
        {
            "id": "hello",
            "title": "Hello pipeline",
            "description": "A starter pipeline: replace its stages with your build, lint and tests.",
            "stages": [
                {"kind": "command", "id": "where", "title": "Show where the run lives", "command": 'echo "run $CODEX_ORCHESTRATOR_RUN_ID in $CODEX_ORCHESTRATOR_RUN_DIR"'},
                {"kind": "command", "id": "system", "title": "Describe this machine", "command": "uname -a && python3 --version", "summaryHint": "machine"},
                {"kind": "command", "id": "check", "title": "A check that passes", "command": "test -d \"$CODEX_ORCHESTRATOR_RUNS_DIR\" && echo ok"},
            ],
        }
    ]
}


def starter_text() -> str:
    return json.dumps(STARTER, indent=2) + "\n"


#: what ``Config.path`` is for the embedded starter
STARTER_SOURCE = "(embedded starter pipeline)"


def starter() -> Config:
    """The embedded starter pipeline: what ``runjournal init`` writes, and ``--starter`` runs."""
    return parse(STARTER, STARTER_SOURCE, starter_text().encode())


@dataclass(frozen=True)
class Search:
    """Where ``find`` looked: from ``start`` up to ``top``; ``found`` is the config, if any."""

    start: str
    top: str
    found: str | None
    #: ``top`` holds ``.git`` (the repository's top), rather than being the filesystem's root
    at_repository: bool

    def describe(self) -> str:
        if self.top == self.start:
            where = self.start
        else:
            where = f"{self.start} or its parents up to {self.top}"
        return where + (" (the repository root)" if self.at_repository else " (the filesystem root)")


def find(start: str) -> Search:
    """The nearest ``codex.orchestrator.json`` from ``start`` upward, stopping at the repository's
    top (a directory holding ``.git``) or the filesystem root."""
    here = start = os.path.abspath(start)
    while True:
        path = os.path.join(here, CONFIG_NAME)
        at_repository = os.path.exists(os.path.join(here, ".git"))
        if os.path.isfile(path):
            return Search(start, here, path, at_repository)
        parent = os.path.dirname(here)
        if at_repository or parent == here:
            return Search(start, here, None, at_repository)
        here = parent


def load(path: str | None, root: str) -> Config:
    """Load ``path``, else ``<root>/codex.orchestrator.json``; ConfigNotFound if that does not exist."""
    path, doc, raw = _read(path, root)
    return parse(doc, path, raw)


def retention_policy(root: str) -> Retention:
    """Only ``runjournal.retention`` of ``<root>/codex.orchestrator.json`` (what ``watch``
    needs: a mistake elsewhere in the file, in a pipeline, does not stop it), empty without a
    config or a policy; ConfigError if the file cannot be read or the policy is wrong."""
    try:
        path, doc, _ = _read(None, root)
    except ConfigNotFound:
        return Retention()
    settings = doc.get("runjournal") if isinstance(doc, dict) else None
    if not isinstance(settings, dict) or _RETENTION_KEY not in settings:
        return Retention()
    return _retention(settings[_RETENTION_KEY], f"{path}: runjournal.{_RETENTION_KEY}")


def _read(path: str | None, root: str) -> tuple[str, object, bytes]:
    """(path, the JSON document, its bytes) of the config."""
    if path is None:
        path = os.path.join(root, CONFIG_NAME)
        if not os.path.exists(path):
            raise ConfigNotFound(f"no {CONFIG_NAME} in {root}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        doc = json.loads(raw, parse_int=_parse_int)
    except ConfigError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as e:  # an integer of more digits than this interpreter was told to convert
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    return path, doc, raw


#: the longest integer a config may hold (Python's own default limit; no setting needs more)
MAX_INT_DIGITS = 4300


def _parse_int(text: str) -> int:
    """An integer of the config, refused by its length here rather than by int(), whose
    message for it differs between Python releases."""
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ConfigError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS} are read)")
    return int(text)


def parse(doc, source: str, raw: bytes) -> Config:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the config must be a JSON object with a 'pipelines' list")
    items = doc.get("pipelines")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: field 'pipelines' must be a non-empty list")
    pipelines: dict[str, Pipeline] = {}
    ignored: list[str] = []
    for i, item in enumerate(items, 1):
        p = _pipeline(item, source, i, ignored)
        if p.id in pipelines:
            raise ConfigError(f"{source}: pipeline {p.id!r} is defined twice")
        pipelines[p.id] = p
    _check_subpipelines(pipelines, source)
    limits = _limits(doc.get("runjournal", {}), source)
    return Config(source, pipelines, limits, "sha256:" + hashlib.sha256(raw).hexdigest()[:16], tuple(ignored))


def _text(obj: dict, key: str, where: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: field {key!r} is missing")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{where}: field {key!r} must be a non-empty string")
    return value


def _seconds(value, where: str) -> float | None:
    """A timeout: absent, or a finite number of seconds > 0 that a timer can wait."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where} must be a number of seconds > 0")
    if not value <= _MAX_SECONDS:  # also infinity (JSON 1e999, Infinity) and NaN
        raise ConfigError(f"{where} must be a number of seconds <= {_MAX_SECONDS}")
    return float(value)


def _name(obj: dict, fallback: str) -> str:
    """How an object is named in a message before its id is checked: ``'its-id'``, else ``#n``."""
    given = obj.get("id")
    return repr(given) if isinstance(given, str) and given.strip() else fallback


def _check_keys(obj: dict, known: tuple[str, ...], codex_only: frozenset[str], what: str, source: str, ignored: list[str]) -> None:
    """Refuse a key neither format has, naming the nearest known one; note Codex Orchestrator's own."""
    for key in obj:
        if key in known:
            continue
        if key in codex_only:
            ignored.append(f'"{key}" ({what})')
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(known)}"
        raise ConfigError(f'{source}: unknown key "{key}" in {what}: {hint}')


def _pipeline(item, source: str, n: int, ignored: list[str]) -> Pipeline:
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: pipeline #{n}: must be an object")
    _check_keys(item, _PIPELINE_KEYS, frozenset(), f"pipeline {_name(item, f'#{n}')}", source, ignored)
    pid = _text(item, "id", f"{source}: pipeline #{n}")
    where = f"{source}: pipeline {pid!r}"
    title = _text(item, "title", where, required=False) or pid
    stages_raw = item.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError(f"{where}: field 'stages' must be a non-empty list")
    stages, seen = [], set()
    for i, s in enumerate(stages_raw, 1):
        stage = _stage(s, source, pid, i, ignored)
        if stage.id in seen:
            raise ConfigError(f"{where}: duplicate stage id {stage.id!r} (stage #{i})")
        seen.add(stage.id)
        stages.append(stage)
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{where}: field 'tags' must be a list of strings")
    guard = item.get("guardrailsRequired")
    if guard is not None and not isinstance(guard, bool):
        raise ConfigError(f"{where}: field 'guardrailsRequired' must be true or false")
    return Pipeline(
        pid,
        title,
        tuple(stages),
        _text(item, "description", where, required=False),
        tuple(tags),
        guard,
        _seconds(item.get("timeoutSeconds"), f"{where}: field 'timeoutSeconds'"),
    )


def _stage(s, source: str, pid: str, n: int, ignored: list[str]) -> Stage:
    if not isinstance(s, dict):
        raise ConfigError(f"{source}: pipeline {pid!r} stage #{n}: must be an object")
    kind = s.get("kind", "command")
    if isinstance(kind, str) and kind in _STAGE_KEYS:
        _check_kind_keys(s, kind, f"stage {_name(s, f'#{n}')} of pipeline {pid!r}", source, ignored)
    sid = _text(s, "id", f"{source}: pipeline {pid!r} stage #{n}")
    where = f"{source}: pipeline {pid!r} stage {sid!r}"
    title = _text(s, "title", where, required=False) or sid
    if kind == "command":
        env = s.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ConfigError(f"{where}: field 'env' must be an object of string values")
        for k, v in env.items():  # what the operating system cannot take, refused before anything runs
            if not k or "=" in k or "\0" in k:
                raise ConfigError(f"{where}: field 'env' has the name {k!r}: a variable name must not be empty or contain '=' or NUL")
            if "\0" in v:
                raise ConfigError(f"{where}: field 'env' value of {k!r} must not contain NUL")
        allow = s.get("allowFailure", False)
        if not isinstance(allow, bool):
            raise ConfigError(f"{where}: field 'allowFailure' must be true or false")
        command, cwd = _text(s, "command", where), _text(s, "cwd", where, required=False)
        for key, value in (("command", command), ("cwd", cwd)):
            if value is not None and "\0" in value:
                raise ConfigError(f"{where}: field {key!r} must not contain NUL")
        return Stage(
            "command",
            sid,
            title,
            command=command,
            cwd=cwd,
            env=dict(env),
            allow_failure=allow,
            summary_hint=_text(s, "summaryHint", where, required=False),
            timeout_seconds=_seconds(s.get("timeoutSeconds"), f"{where}: field 'timeoutSeconds'"),
        )
    if kind == "subpipeline":
        optional = s.get("optional", False)
        if not isinstance(optional, bool):
            raise ConfigError(f"{where}: field 'optional' must be true or false")
        return Stage("subpipeline", sid, title, pipeline=_text(s, "pipeline", where), optional=optional)
    raise ConfigError(f"{where}: unknown kind {kind!r} (expected 'command' or 'subpipeline')")


def _check_kind_keys(s: dict, kind: str, what: str, source: str, ignored: list[str]) -> None:
    """A key of the other kind of stage is named as such (``command`` in a sub-pipeline stage)."""
    other = "subpipeline" if kind == "command" else "command"
    for key in s:
        if key in _STAGE_KEYS[other] and key not in _STAGE_KEYS[kind]:
            if key == "timeoutSeconds":  # a child run is limited by its own pipeline's timeoutSeconds
                hint = f'set "timeoutSeconds" on pipeline {s.get("pipeline")!r} instead'
            else:
                hint = f"it belongs to {_KIND_NAMES[other]} stages"
            raise ConfigError(f'{source}: key "{key}" in {what}, a {_KIND_NAMES[kind]} stage: {hint}')
    _check_keys(s, _STAGE_KEYS[kind], _CODEX_ONLY_STAGE_KEYS, what, source, ignored)


def _check_subpipelines(pipelines: dict[str, Pipeline], source: str) -> None:
    """Every sub-pipeline exists and none includes itself, directly or through others."""
    for p in pipelines.values():
        for s in p.stages:
            if s.kind == "subpipeline" and s.pipeline not in pipelines:
                raise ConfigError(f"{source}: pipeline {p.id!r} stage {s.id!r}: sub-pipeline {s.pipeline!r} does not exist")

    def visit(pid: str, path: list[str]) -> None:
        for s in pipelines[pid].stages:
            if s.kind != "subpipeline":
                continue
            if s.pipeline in path:
                cycle = " -> ".join(path[path.index(s.pipeline) :] + [s.pipeline])
                raise ConfigError(f"{source}: pipeline {pid!r} stage {s.id!r}: sub-pipelines include themselves ({cycle})")
            visit(s.pipeline, path + [s.pipeline])

    for pid in pipelines:
        visit(pid, [pid])


def _limits(raw, source: str) -> Limits:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: field 'runjournal' must be an object")
    values = {}
    for key, value in raw.items():
        if key == _CLEAR_KEY:
            values["journal_env_in_clear"] = _env_names(value, f"{source}: runjournal.{key}")
            continue
        if key == _TIMEOUT_KEY:
            values["stage_timeout_seconds"] = _seconds(value, f"{source}: runjournal.{key}")
            continue
        if key == _RETENTION_KEY:
            values["retention"] = _retention(value, f"{source}: runjournal.{key}")
            continue
        if key not in _LIMIT_KEYS:
            _unknown(key, [*_LIMIT_KEYS, _TIMEOUT_KEY, _CLEAR_KEY, _RETENTION_KEY], f"{source}: runjournal")
        name, kind, minimum, maximum = _LIMIT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, kind) or not value >= minimum:
            raise ConfigError(f"{source}: runjournal.{key} must be a number >= {minimum}")
        if not value <= maximum:  # also infinity (JSON 1e999, Infinity)
            raise ConfigError(f"{source}: runjournal.{key} must be a number <= {maximum}")
        values[name] = value
    return Limits(**values)


def _unknown(key: str, known: list[str], where: str) -> None:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    raise ConfigError(f"{where}.{key} is not a known setting (known: {', '.join(known)}){hint}")


def _object(value, keys: tuple[str, ...], where: str, shape: str) -> None:
    """ConfigError unless ``value`` is an object with no key but ``keys``."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be {shape}")
    for key in value:
        if key not in keys:
            _unknown(key, list(keys), where)


def _retention(value, where: str) -> Retention:
    """``{"archive": RULE, "prune": RULE, "every": DURATION}``, each optional."""
    _object(value, _RETENTION_KEYS, where, 'an object such as {"archive": {"olderThan": "30d"}, "prune": {"olderThan": "365d"}}')
    rules = {key: _rule(value[key], f"{where}.{key}") for key in ("archive", "prune") if key in value}
    if "every" in value:
        rules["every_seconds"] = _duration(value["every"], f"{where}.every", _MIN_RETENTION_EVERY)
    return Retention(**rules)


def _rule(value, where: str) -> RetentionRule:
    """``{"olderThan": DURATION, "keepLast": N}``: at least one, as the CLI's selectors."""
    _object(value, _RULE_KEYS, where, 'an object with "olderThan", "keepLast" or both')
    if not value:  # taken as "every run" it would archive (or prune) everything: say which
        raise ConfigError(f'{where} must say which runs: "olderThan", "keepLast" or both')
    keep = value.get("keepLast")
    if "keepLast" in value and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ConfigError(f"{where}.keepLast must be a whole number >= 0")
    older = _duration(value["olderThan"], f"{where}.olderThan", 0.0) if "olderThan" in value else None
    return RetentionRule(older_than_seconds=older, keep_last=keep)


def _duration(value, where: str, minimum: float) -> float:
    """Seconds in a duration string (``parse_duration``: ``90s``, ``30m``, ``2h``, ``7d``, ``1w``)."""
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise ConfigError(f'{where} must be a duration such as "30d" (90s, 30m, 2h, 7d, 1w), not {value!r}')
    if not minimum <= seconds <= _MAX_SECONDS:  # also infinity: 400 nines are a duration
        raise ConfigError(f"{where} must be a duration of {minimum:g} to {_MAX_SECONDS} seconds")
    return seconds


def _env_names(value, where: str) -> tuple[str, ...]:
    """A list of environment variable names, as the operating system takes them."""
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of variable names")
    for name in value:
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"{where} has {name!r}: a variable name must be a non-empty string without '=' or NUL")
    return tuple(dict.fromkeys(value))
