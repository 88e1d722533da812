"""One exit-code table: every library error class has the code contract section 5 gives it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from runjournal import journal, projections, runner
from runjournal.cli.main import EXIT_CODES, exit_code_of
from runjournal.journal import JournalError
from runjournal.runner import EXIT_CODES as RUN_EXIT_CODES
from runjournal.runner import run_exit_code


def _every_module() -> None:
    """Import every module of every layer: the packages import their names on first use, so
    an error class is known only once its module is."""
    for package in (journal, projections, runner):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


def _error_classes() -> list[type[JournalError]]:
    _every_module()
    found, todo = set(), [JournalError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


EXPECTED = {
    "BadInput": 2,  # bad usage or bad input, a run or task that does not exist
    "ConfigError": 2,
    "ConfigNotFound": 2,  # no config where start or plan looked (a kind of ConfigError)
    "InvalidId": 2,
    "JournalNotFound": 2,
    "HistoryViolation": 2,  # an append that would break a rule of a run's history
    "TokenRefused": 2,  # a missing or wrong resume token
    "AmbiguousRun": 2,  # a run id in several tasks and no --task
    "CorruptRecord": 1,  # the thing asked about failed: a journal that does not verify
    "UnknownEventType": 1,
    "JournalDamaged": 1,  # a writer refusing to append after damage (nothing was written)
    "NotQuarantinable": 1,  # damage `verify --quarantine` cannot set aside
    "JournalError": 1,
    "JournalWriteFailed": 1,
    "LockTimeout": 1,
    "ResumeRefused": 1,
    "RunNotFound": 2,  # an unknown run (or one that had not started at the point asked for)
    "SequenceConflict": 1,
    "JournalMovedOn": 1,  # copied records that do not continue the destination's journal
    "StoreUnavailable": 1,  # a database that cannot be reached
    "RebuildFailed": 1,  # a rebuild that could not read the journal to its end (files left as they were) or write the files
}


def test_every_error_class_is_a_journal_error_with_a_code():
    # every layer's errors are imported, so every subclass is known here
    assert journal and projections and runner
    classes = _error_classes()
    assert {c.__name__ for c in classes} == set(EXPECTED), "a new error class needs a row in EXPECTED"
    assert EXIT_CODES[-1] == (JournalError, 1)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_the_table_gives_each_class_its_code(cls):
    error = cls.__new__(cls)  # the code depends on the class alone, never on the message
    assert exit_code_of(error) == EXPECTED[cls.__name__]


@pytest.mark.parametrize(
    "status, stale, code",
    [("succeeded", False, 0), ("queued", False, 0), ("in_progress", False, 0), ("in_progress", True, 1), ("failed", False, 1), ("cancelled", False, 130), ("cancelled", True, 130)],
)
def test_a_run_status_has_one_exit_code(status: str, stale: bool, code: int):
    assert run_exit_code(status, stale) == code
    assert set(RUN_EXIT_CODES) == {"queued", "in_progress", "succeeded", "failed", "cancelled"}
