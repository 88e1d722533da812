"""Tests that read ../shared/compat skip visibly where it is absent, and fail under CI=true."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import COMPAT, HELPERS, clean_env

NEEDS_COMPAT = """
from helpers import compat_file

def test_reads_the_schema():
    assert compat_file("manifest.schema.json").read_text()
"""


@pytest.fixture
def project_without_compat(tmp_path: Path) -> Path:
    """A copy of the test helpers in a tree that has no shared/compat beside it."""
    tests = tmp_path / "clone" / "project" / "tests"
    shutil.copytree(HELPERS, tests / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    (tests / "test_needs_compat.py").write_text(NEEDS_COMPAT)
    assert not (tmp_path / "clone" / "shared").exists()
    return tests


def run_pytest(tests: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in clean_env().items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests)],
        cwd=tests,
        env={**env, "PYTHONPATH": str(tests), "COLUMNS": "1000"},  # summary lines are cut to the width
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compat_is_found_beside_the_project():
    assert COMPAT == Path(__file__).resolve().parents[2] / "shared" / "compat"


def test_a_missing_compat_file_is_a_visible_skip(project_without_compat: Path):
    p = run_pytest(project_without_compat, ci=None)
    assert p.returncode == 0, p.stdout + p.stderr
    missing = project_without_compat.parents[1] / "shared" / "compat" / "manifest.schema.json"
    skipped = [line for line in p.stdout.splitlines() if line.startswith("SKIPPED [1] ")]
    assert len(skipped) == 1 and skipped[0].endswith(f": {missing} is absent: ../shared/compat is not beside the project"), p.stdout
    assert "1 skipped" in p.stdout


def test_a_missing_compat_file_fails_under_ci(project_without_compat: Path):
    p = run_pytest(project_without_compat, ci="true")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "absent: ../shared/compat is not beside the project, and CI=true needs it" in p.stdout
    assert "1 failed" in p.stdout

