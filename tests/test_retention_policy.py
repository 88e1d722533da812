"""The retention policy of the config (``runjournal.retention``): how it is read, and a real
`runjournal watch` applying it when it starts and again after its interval."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from helpers import DEADLINE, assert_one_error_line, wait_until
from helpers.daemon import Daemon, watching
from helpers.histories import make_run_id
from helpers.retention import ended_run, task_files
from helpers.runner_support import cmd, pipeline, write_config

from runjournal.journal import BadInput, FileStore, Journal
from runjournal.projections import Watcher
from runjournal.runner import ConfigError, load
from runjournal.runner.config import Retention, RetentionRule

TASK = "default"
SEGMENT = 1500  # small segments: the early ones hold ended runs only, and can move
DAY = 24 * 3600.0
#: the runs build() writes fail at these numbers; the newest of the pipeline succeeds (a
#: failed newest run stays for `resume`, and the policy would not archive it)
FAILED = (1, 4)


def policy_config(root: Path, retention) -> Path:
    return write_config(root, pipeline("p", cmd("a", "true")), limits={"retention": retention})


# -- the config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retention, expected",
    [
        ({}, Retention()),
        (
            {"archive": {"olderThan": "30d", "keepLast": 100}, "prune": {"olderThan": "365d"}},
            Retention(archive=RetentionRule(30 * DAY, 100), prune=RetentionRule(365 * DAY)),
        ),
        ({"archive": {"keepLast": 0}}, Retention(archive=RetentionRule(keep_last=0))),
        ({"prune": {"olderThan": "2w"}, "every": "6h"}, Retention(prune=RetentionRule(14 * DAY), every_seconds=6 * 3600.0)),
        ({"every": "1h"}, Retention(every_seconds=3600.0)),
    ],
)
def test_a_policy_is_read(tmp_path: Path, retention, expected):
    assert load(str(policy_config(tmp_path, retention)), str(tmp_path)).limits.retention == expected


def test_without_a_policy_there_is_none(tmp_path: Path):
    policy = load(str(write_config(tmp_path, pipeline("p", cmd("a", "true")))), str(tmp_path)).limits.retention
    assert policy == Retention() and not policy and policy.every_seconds == DAY


@pytest.mark.parametrize(
    "retention, message",
    [
        ([], r"runjournal\.retention must be an object such as "),
        ({"archiv": {"keepLast": 1}}, r'runjournal\.retention\.archiv is not a known setting \(known: archive, prune, every\); did you mean "archive"\?$'),
        ({"archive": {}}, r'runjournal\.retention\.archive must say which runs: "olderThan", "keepLast" or both$'),
        ({"prune": True}, r'runjournal\.retention\.prune must be an object with "olderThan", "keepLast" or both$'),
        ({"archive": {"olderthan": "30d"}}, r'runjournal\.retention\.archive\.olderthan is not a known setting \(known: olderThan, keepLast\); did you mean "olderThan"\?$'),
        ({"archive": {"olderThan": 30}}, r'runjournal\.retention\.archive\.olderThan must be a duration such as "30d" \(90s, 30m, 2h, 7d, 1w\), not 30$'),
        ({"prune": {"olderThan": "a year"}}, r"runjournal\.retention\.prune\.olderThan must be a duration such as \"30d\" .*, not 'a year'$"),
        ({"prune": {"olderThan": "-1d"}}, r"runjournal\.retention\.prune\.olderThan must be a duration such as "),
        ({"prune": {"olderThan": "9" * 400 + "d"}}, r"runjournal\.retention\.prune\.olderThan must be a duration of 0 to 9223372036 seconds$"),
        ({"archive": {"keepLast": -1}}, r"runjournal\.retention\.archive\.keepLast must be a whole number >= 0$"),
        ({"archive": {"keepLast": 2.5}}, r"runjournal\.retention\.archive\.keepLast must be a whole number >= 0$"),
        ({"archive": {"keepLast": True}}, r"runjournal\.retention\.archive\.keepLast must be a whole number >= 0$"),
        ({"every": "0s"}, r"runjournal\.retention\.every must be a duration of 1 to 9223372036 seconds$"),
        ({"every": 86400}, r"runjournal\.retention\.every must be a duration such as "),
    ],
)
def test_a_malformed_policy_is_one_line_naming_the_key(tmp_path: Path, retention, message):
    path = policy_config(tmp_path, retention)
    with pytest.raises(ConfigError, match=message) as info:
        load(str(path), str(tmp_path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_watch_refuses_a_malformed_policy(tmp_path: Path, run_cli):
    policy_config(tmp_path, {"archive": {"keepLast": "ten"}})
    code, out, err = run_cli("watch")
    assert code == 2 and out == ""
    assert_one_error_line(err, "runjournal.retention.archive.keepLast must be a whole number >= 0")


# -- watch applies it -------------------------------------------------------------------------


def append_runs(root: Path, numbers) -> None:
    """Append the ended runs ``numbers``, one record per append (from this process: the daemon
    is another)."""
    with Journal(str(root / ".runs" / TASK / "journal"), durability="none", segment_bytes=SEGMENT) as j:
        for n in numbers:
            for item in ended_run(n, fail=n in FAILED):
                j.append_batch([item])


def next_event(daemon: Daemon, kind: str, where=lambda doc: True) -> dict:
    """The next JSON line of ``kind`` (and ``where``) the daemon prints, skipping others."""
    while True:
        doc = json.loads(daemon.wait_for(rf'"event":"{kind}"'))
        if where(doc):
            return doc


def run_ids(run_cli, *args: str) -> list[str]:
    code, out, err = run_cli("runs", "--task", TASK, "--format", "json", *args)
    assert code == 0, err
    return sorted(r["run_id"] for r in json.loads(out))


def rebuilt_the_same(root: Path, run_cli) -> None:
    """The files the daemon left are those a rebuild from the journal writes, byte for byte."""
    live = task_files(root)
    code, _, err = run_cli("project", "--rebuild")
    assert code == 0, err
    assert task_files(root) == live


def test_watch_archives_by_the_policy_at_start_and_again_after_its_interval(tmp_path: Path, run_cli):
    policy_config(tmp_path, {"archive": {"olderThan": "7d", "keepLast": 2}, "every": "2s"})
    append_runs(tmp_path, range(6))
    code, _, err = run_cli("project", "--rebuild")
    assert code == 0, err
    before = task_files(tmp_path)

    with watching(tmp_path, "--format", "json") as daemon:
        first = next_event(daemon, "retention")
        # all but the newest 2 of the 6 ended runs, oldest first; no prune rule: nothing pruned
        assert first["task_id"] == TASK and first["prune"] is None
        assert first["archive"]["runs"] == [make_run_id(n) for n in range(4)], first
        assert first["archive"]["units"] and first["archive"]["bytes"] > 0
        # the daemon projects the runs_archived record it appended: the files are as before
        next_event(daemon, "catch_up", lambda doc: doc["next_seq"] > first["archive"]["snapshot_seq"])
        assert task_files(tmp_path) == before
        assert run_ids(run_cli, "--archived") == first["archive"]["runs"]
        assert run_ids(run_cli) == [make_run_id(n) for n in (4, 5)]

        append_runs(tmp_path, (6, 7))
        # applied again after the interval (on every interval: those before the append find nothing)
        again = next_event(daemon, "retention", lambda doc: doc["archive"]["runs"])
        assert again["archive"]["runs"] == [make_run_id(n) for n in (4, 5)], again
        next_event(daemon, "catch_up", lambda doc: doc["next_seq"] > again["archive"]["snapshot_seq"])
        assert daemon.stop() == 0
        assert daemon.stderr() == ""

    assert run_ids(run_cli, "--archived") == [make_run_id(n) for n in range(6)]
    assert run_ids(run_cli) == [make_run_id(n) for n in (6, 7)]
    rebuilt_the_same(tmp_path, run_cli)
    code, out, err = run_cli("verify", "--format", "json")
    assert code == 0 and json.loads(out)["ok"], out + err


def test_watch_prunes_only_archived_runs_and_says_so(tmp_path: Path, run_cli):
    # prune takes every run older than a day: only those archived may go
    policy_config(tmp_path, {"archive": {"keepLast": 3}, "prune": {"olderThan": "1d"}})
    append_runs(tmp_path, range(6))
    with watching(tmp_path) as daemon:
        line = daemon.wait_for(r"task default: retention ")
        match = re.fullmatch(
            r"\S+  task default: retention archived 3 run\(s\) \(\d+ units, \d+ bytes\), pruned (\d+) run\(s\) \(\d+ units, \d+ bytes\)",
            line,
        )
        assert match, line
        pruned = int(match[1])
        assert pruned > 0, line  # the first segments hold runs 0 and 1 only
        daemon.wait_for(r"task default: \d+ events")  # the runs_archived records projected
        assert daemon.stop() == 0
        assert daemon.stderr() == ""

    # the three archived runs, less those pruned, are listed as archived; the others are live
    archived = run_ids(run_cli, "--archived")
    assert len(archived) == 3 - pruned and set(archived) <= {make_run_id(n) for n in range(3)}
    assert run_ids(run_cli) == [make_run_id(n) for n in (3, 4, 5)]
    for n in range(3):
        gone = make_run_id(n) not in archived
        assert (tmp_path / ".runs" / TASK / "cli" / make_run_id(n)).exists() != gone
    rebuilt_the_same(tmp_path, run_cli)


# -- a failure is warned about, and the daemon goes on -----------------------------------------


class NoArchive(FileStore):
    """A file store that cannot archive, as a store without an archive says."""

    def archive(self, task, before_seq, runs):
        raise BadInput(f"the store at {self.url} cannot archive")


def test_a_failed_application_is_a_warning_and_is_tried_again(tmp_path: Path):
    append_runs(tmp_path, range(3))
    warnings: list[str] = []
    applied = threading.Event()
    stop = threading.Event()
    store = NoArchive(str(tmp_path / ".runs"))
    daemon = Watcher(
        str(tmp_path / ".runs"),
        str(tmp_path / "out"),
        tick=0.05,
        warn=warnings.append,
        store=store,
        retention=Retention(archive=RetentionRule(keep_last=1)),
        retention_every=0.05,
        on_retention=lambda *args: applied.set(),
    )
    thread = threading.Thread(target=daemon.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: daemon.retentions >= 2, "the policy to be applied twice")
    finally:
        stop.set()
        daemon.wake.set()
        thread.join(DEADLINE)
        store.close()
    assert not thread.is_alive()
    assert not applied.is_set()  # nothing was done: nothing to report
    assert warnings[0] == f"task {TASK}: retention: archive failed: the store at {store.url} cannot archive"
    assert daemon.catch_ups >= 2 and (tmp_path / "out" / TASK / "state.json").is_file()


def test_watch_reads_only_the_policy_so_a_mistake_in_a_pipeline_does_not_stop_it(tmp_path: Path):
    from runjournal.runner.config import retention_policy

    config = {"pipelines": [{"id": "p", "bogus": 1}], "runjournal": {"outputCap": 1, "retention": {"archive": {"keepLast": 3}}}}
    (tmp_path / "codex.orchestrator.json").write_text(json.dumps(config))
    policy = retention_policy(str(tmp_path))
    assert policy.archive.keep_last == 3 and policy.prune is None
    (tmp_path / "codex.orchestrator.json").write_text(json.dumps({"pipelines": []}))
    assert not retention_policy(str(tmp_path))
    assert not retention_policy(str(tmp_path / "nowhere"))
