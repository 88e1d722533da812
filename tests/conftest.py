"""Shared fixtures and hypothesis profiles for the journal and CLI tests.

Profiles (choose with HYPOTHESIS_PROFILE; .ci/run sets ``ci``):
``dev`` (default) hypothesis' defaults without the per-example deadline (file system
timings vary); ``ci`` derandomized and modest, so CI runs are repeatable and quick;
``stress`` many examples, for a long run by hand:
``HYPOTHESIS_PROFILE=stress .venv/bin/python -m pytest tests/test_journal_model.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "stress",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """Where a library-level test keeps its journal (created by the first ``Journal``)."""
    return tmp_path / "journal"


@pytest.fixture
def task_journal(tmp_path: Path):
    """``task_journal(task)``: the journal directory the CLI uses under ``--root tmp_path``."""

    def locate(task: str = "default") -> Path:
        return tmp_path / ".runs" / task / "journal"

    return locate


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run the real CLI (``python -m runjournal --root tmp_path ...``) in a subprocess.

    Returns ``(returncode, stdout, stderr)`` as text; ``input`` goes to its stdin.
    """

    def run(*args: str, input: str | None = None, timeout: float = 60) -> tuple[int, str, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "runjournal", "--root", str(tmp_path), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(),
            timeout=timeout,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run

