"""Small helpers shared by the tests; the scripts beside this file run as separate processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

HELPERS = Path(__file__).resolve().parent
#: Codex Orchestrator's real files, beside the project in ../shared (absent in a user's clone)
COMPAT = HELPERS.parents[2] / "shared" / "compat"
#: the longest a test waits for another process to reach a point (never a fixed sleep)
DEADLINE = 30.0

# variables that would point the CLI somewhere other than the test's own tmp_path
_LOCATION_VARS = (
    "RUNJOURNAL_RESUME_TOKEN",
    "RUNJOURNAL_ROOT",
    "RUNJOURNAL_STORE",
    "CODEX_ORCHESTRATOR_ROOT",
    "CODEX_ORCHESTRATOR_RUNS_DIR",
    "CODEX_ORCHESTRATOR_OUT_DIR",
    "RUNJOURNAL_TASK",
    "MCP_RUNNER_TASK_ID",
    "RUNJOURNAL_QUIET_TOKEN",
    "RUNJOURNAL_RESUME_TOKEN",
)

T = TypeVar("T")


def clean_env() -> dict[str, str]:
    """The environment for a child process, without anything that relocates runjournal's files."""
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def file_store_of(journal_dir, **options):
    """The file store that holds the journal directory ``<runs>/<task>/journal``, and the task."""
    from runjournal.journal import FileStore

    journal = Path(journal_dir)
    assert journal.name == "journal", journal
    return FileStore(str(journal.parent.parent), **options), journal.parent.name


def compat_file(name: str) -> Path:
    """A file of ../shared/compat. Where it is absent (a user's fresh clone) the test that needs
    it skips, saying why; under CI=true, where it is always laid beside the project, it fails."""
    path = COMPAT / name
    if not path.is_file():
        reason = f"{path} is absent: ../shared/compat is not beside the project"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI=true needs it", pytrace=False)
        pytest.skip(reason)
    return path


def wait_until(probe: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """The CLI's expected-error shape: exactly one line, ``error: ...``, no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, stderr)
    return lines[0]


class Hang(Exception):
    """A call did not return within its time bound (not a JournalError: the test fails)."""


@contextlib.contextmanager
def time_bound(what: str, seconds: float = DEADLINE) -> Iterator[None]:
    """Raise Hang in this (the main) thread if the block runs longer than ``seconds``: for
    commands run in this process that would follow or watch forever were a check to fail."""

    def expired(signum, frame):
        raise Hang(f"{what} did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
