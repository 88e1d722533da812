"""The journal: a per-task, file-locked, append-only log of msgspec-encoded events."""

from . import events
from .check import Problem, Report, check, repair
from .errors import (
    BadInput,
    CorruptRecord,
    JournalDamaged,
    HistoryViolation,
    InvalidId,
    JournalError,
    JournalNotFound,
    JournalWriteFailed,
    LockTimeout,
    SequenceConflict,
    UnknownEventType,
)
from .events import SCHEMA_VERSION, Record
from .files import FileStore
from .layout import Layout, command_file, slug
from .naming import iso_utc, new_run_id, parse_iso, validate_run_id, validate_task_id
from .reader import JournalReader, Position, follow, read_records
from .store import EventStore, Reading, Subscription, WriterStats, open_store
from .writer import DURABILITY_MODES, Item, Journal

__all__ = [
    "BadInput",
    "CorruptRecord",
    "JournalDamaged",
    "HistoryViolation",
    "DURABILITY_MODES",
    "EventStore",
    "FileStore",
    "InvalidId",
    "Item",
    "Journal",
    "JournalError",
    "JournalNotFound",
    "JournalReader",
    "JournalWriteFailed",
    "Layout",
    "LockTimeout",
    "Position",
    "Problem",
    "Reading",
    "Record",
    "Report",
    "SCHEMA_VERSION",
    "SequenceConflict",
    "Subscription",
    "UnknownEventType",
    "WriterStats",
    "check",
    "command_file",
    "events",
    "follow",
    "iso_utc",
    "new_run_id",
    "open_store",
    "parse_iso",
    "read_records",
    "repair",
    "slug",
    "validate_run_id",
    "validate_task_id",
]
