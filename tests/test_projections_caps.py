"""Error files stay under their caps whatever the stderr: 8 KiB per string field, 10,000 bytes per file."""

from __future__ import annotations

import json

import pytest
from helpers.histories import RunScript, make_run_id

from runjournal.journal import events as ev
from runjournal.journal.writer import Journal
from runjournal.projections import Projector

FIELD_CAP = 8192
FILE_CAP = 10_000


def error_file(tmp_path, stderr: str, command: str = "make test") -> tuple[bytes, dict]:
    run = RunScript(make_run_id(1), stages=1)
    run.start_stage(1)
    run.add(ev.ErrorRecorded(index=1, stage_id="stage-1", command=command, reason="command failed", exit_code=2, stderr=stderr))
    run.add(ev.StageFailed(index=1, stage_id="stage-1", exit_code=2))
    run.fail()
    runs_dir = tmp_path / ".runs"
    with Journal(str(runs_dir / "default" / "journal"), durability="none") as journal:
        journal.append_batch(run.items)
    Projector(str(runs_dir), str(tmp_path / "out"), "default", sync=False).catch_up()
    manifest = json.loads((runs_dir / "default" / "cli" / run.run_id / "manifest.json").read_bytes())
    path = tmp_path / manifest["commands"][0]["error_file"]
    data = path.read_bytes()
    return data, json.loads(data)


@pytest.mark.parametrize(
    "stderr",
    [
        pytest.param("x" * 1_000_000, id="1MB-ascii"),
        pytest.param("".join(chr(c) for c in range(1, 32)) * 33_000, id="1MB-control-characters"),
        pytest.param("\\\"" * 500_000, id="1MB-quotes-and-backslashes"),
        pytest.param("é€😀" * 120_000, id="multibyte-utf8"),
    ],
)
def test_error_file_is_capped_with_markers(tmp_path, stderr):
    data, doc = error_file(tmp_path, stderr)
    assert len(data) <= FILE_CAP
    details = doc["details"]
    assert details["stderr_truncated"] is True
    assert details["stderr_total_bytes"] == len(stderr.encode())
    assert 0 < len(details["stderr"].encode()) <= FIELD_CAP
    assert stderr.startswith(details["stderr"])  # cut on a character boundary, from the start
    assert (doc["run_id"], doc["command_index"], doc["command_id"], details["exit_code"]) == (make_run_id(1), 1, "stage-1", 2)


def test_every_string_field_is_capped(tmp_path):
    data, doc = error_file(tmp_path, "short\n", command="c" * 20_000)
    assert len(data) <= FILE_CAP
    assert doc["command_truncated"] is True
    assert len(doc["command"].encode()) <= FIELD_CAP
    assert doc["details"]["stderr"] == "short\n"
    assert doc["details"]["stderr_truncated"] is False


def test_small_error_is_kept_whole(tmp_path):
    data, doc = error_file(tmp_path, "boom\n")
    assert doc["details"]["stderr"] == "boom\n"
    assert doc["details"]["stderr_truncated"] is False
    assert "command_truncated" not in doc
    assert list(doc) == ["run_id", "task_id", "command_index", "command_id", "command", "reason", "details", "created_at"]
