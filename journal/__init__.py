"""The journal: a per-task, file-locked, append-only log of msgspec-encoded events."""

from . import events
from .check import Problem, Report, check, repair
from .errors import (
    BadInput,
    CorruptRecord,
    InvalidId,
    JournalError,
    JournalNotFound,
    JournalWriteFailed,
    LockTimeout,
    SequenceConflict,
    UnknownEventType,
)
from .events import SCHEMA_VERSION, Record
from .layout import Layout, command_file, slug
from .naming import iso_utc, new_run_id, parse_iso, validate_run_id, validate_task_id
from .reader import JournalReader, Position, follow, read_records
from .writer import DURABILITY_MODES, Item, Journal

__all__ = [
    "BadInput",
    "CorruptRecord",
    "DURABILITY_MODES",
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
    "Record",
    "Report",
    "SCHEMA_VERSION",
    "SequenceConflict",
    "UnknownEventType",
    "check",
    "command_file",
    "events",
    "follow",
    "iso_utc",
    "new_run_id",
    "parse_iso",
    "read_records",
    "repair",
    "slug",
    "validate_run_id",
    "validate_task_id",
]
