"""--store / $RUNJOURNAL_STORE: where the journals are; projection files stay under the runs dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import assert_one_error_line, clean_env


def test_a_store_directory_holds_the_journal_and_the_projections_stay_local(tmp_path: Path, run_cli):
    shared = tmp_path / "shared-store"
    shared.mkdir()
    code, out, err = run_cli("--store", shared, "exec", "--format", "json", "--", "true")
    assert code == 0, err
    doc = json.loads(out)
    assert (shared / "default" / "journal").is_dir()
    assert not (tmp_path / ".runs" / "default" / "journal").exists()
    assert Path(doc["manifest"]) == tmp_path / ".runs" / "default" / "cli" / doc["run_id"] / "manifest.json"
    assert Path(doc["manifest"]).is_file()
    code, out, _ = run_cli("--store", shared, "runs", "--format", "json")
    assert (code, [r["run_id"] for r in json.loads(out)]) == (0, [doc["run_id"]])
    assert run_cli("runs", "--format", "json")[1] == "[]\n"  # without the store: the runs dir's own (none)


def test_the_variable_names_the_store_too(tmp_path: Path):
    shared = tmp_path / "elsewhere"
    shared.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(tmp_path), "exec", "--", "true"],
        env={**clean_env(), "RUNJOURNAL_STORE": str(shared)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.listdir(shared) == ["default"]


def test_an_unknown_or_unavailable_store_is_bad_usage(run_cli, tmp_path: Path):
    code, out, err = run_cli("--store", "postgresql://user:secret@127.0.0.1:1/runs", "tail")
    assert (code, out) == (1, "")  # a server that cannot be reached: the thing asked failed
    line = assert_one_error_line(err, "cannot reach the store postgresql://user:***@127.0.0.1:1/runs")
    assert "secret" not in line
    code, _, err = run_cli("--store", "s3://bucket/x", "tail")
    assert code == 2
    assert_one_error_line(err, "not a directory or a known URL")
    (tmp_path / "afile").write_text("")
    code, _, err = run_cli("--store", tmp_path / "afile", "tail")
    assert code == 2
    assert_one_error_line(err, "--store")
