"""The one exception tree of runjournal: everything a caller may catch derives from JournalError.

Which exit code the command line gives each class is decided in one table, in
``runjournal.cli.main`` (``EXIT_CODES``), not here.
"""

from __future__ import annotations


class JournalError(Exception):
    """Base of every error runjournal raises on purpose."""


class BadInput(JournalError):
    """Input from a user or a file is malformed; nothing was recorded."""


class InvalidId(BadInput):
    """A task id or run id is unsafe to use as a path component."""


class CorruptRecord(JournalError):
    """A record in the middle of the journal fails its framing, checksum or decode."""

    def __init__(self, segment: str, offset: int, detail: str):
        self.segment = segment
        self.offset = offset
        self.detail = detail
        super().__init__(
            f"corrupt record in {segment} at byte {offset}: {detail} "
            "(run `runjournal verify` for a full report)"
        )


class JournalDamaged(CorruptRecord):
    """A writer found damage before the end of the journal, and refuses to append after it."""

    def __init__(self, segment: str, offset: int, detail: str):
        self.segment, self.offset, self.detail = segment, offset, detail
        JournalError.__init__(
            self,
            f"the journal is damaged in {segment} at byte {offset}: {detail}; nothing was written. "
            "`runjournal verify` shows the damage; `runjournal verify --quarantine` sets the damaged "
            "region aside (a copy is kept) so that appends can go on",
        )


class NotQuarantinable(JournalError):
    """Damage of a kind ``verify --quarantine`` cannot set aside (journal.quarantine)."""

    def __init__(self, what: str):
        super().__init__(f"cannot set this damage aside: {what}; nothing more was changed (see docs/guarantees.md, \"Corruption in the middle\")")


class UnknownEventType(CorruptRecord):
    """A record holds an event type this version does not know (written by a newer runjournal)."""

    def __init__(self, segment: str, offset: int, type_name: str):
        self.type_name = type_name
        JournalError.__init__(
            self,
            f"record in {segment} at byte {offset} has unknown event type {type_name!r}: "
            "it was written by a newer runjournal; upgrade to read this journal",
        )
        self.segment, self.offset, self.detail = segment, offset, f"unknown event type {type_name!r}"


class SequenceConflict(JournalError):
    """An append stated the run sequence it expected and the journal holds another."""

    def __init__(self, run_id: str, expected: int, actual: int):
        self.run_id, self.expected, self.actual = run_id, expected, actual
        super().__init__(
            f"run {run_id} is at sequence {actual}, not {expected} as expected: "
            "another writer appended to it first; re-read the run and retry"
        )


class JournalMovedOn(JournalError):
    """Records copied from another journal do not continue this one: it holds other records."""

    def __init__(self, task: str, expected: int, actual: int):
        self.task, self.expected, self.actual = task, expected, actual
        super().__init__(
            f"task {task} ends at sequence {actual} here, and the records copied to it begin after {expected}: "
            "it holds other records; nothing more was written"
        )


class LockTimeout(JournalError):
    """The journal lock stayed busy past the timeout; the events were kept (see ``spilled_to``)."""

    def __init__(self, message: str, spilled_to: str | None = None, holder_pid: int | None = None):
        self.spilled_to = spilled_to
        self.holder_pid = holder_pid
        super().__init__(message)


class HistoryViolation(BadInput):
    """An append would break a rule of a run's history (``journal.rules``); nothing was written."""


class JournalWriteFailed(JournalError):
    """The operating system refused a write (disk full, file size limit, permissions); nothing was acknowledged."""


class StoreUnavailable(JournalError):
    """A store's server cannot be reached, or refused what the store asked of it."""


class JournalNotFound(BadInput):
    """The journal directory asked for does not exist."""
