"""The PostgreSQL store: the journals of every task in one schema of one database, for
pipelines that run on many machines (docs/scale-out.md).

``postgresql://user@host:port/db?schema=name`` (``schema`` defaults to ``runjournal``; every
other parameter goes to libpq). The schema is made and migrated by the store before its first
write (``pg_schema``). An append is one call of the schema's ``append`` function, in its own
transaction: the task's row in ``tasks`` is locked first and held to commit, so global
sequences are gapless and in commit order. Followers are woken by a ``NOTIFY`` sent after the
commit (never inside it: that would serialise every commit of the cluster) by a thread with
its own connection, so the append itself is one round trip; polling stands behind it, since a
notification is lost when a connection is.

Durability maps to ``synchronous_commit``: ``always`` is ``on`` for every append (the commit
waits for the WAL flush, and for synchronous standbys where the server has them); ``batch``
is ``off`` except for appends holding a boundary event, which are ``on`` (as the file store
fsyncs those at once); ``none`` is ``off``. With ``off`` a server crash may lose the last
appends acknowledged within about three ``wal_writer_delay`` (600 ms by default), never a
part of one.

A connection lost in the middle of an append leaves its outcome unknown. The store reconnects
(for up to the lock timeout) and looks the append up by the random id it carries
(``append_id``, on the batch's first record): there, it is not written again; not there, it
is sent again. If the server stays away, the append fails saying so, and the store remembers
it: when the same events are appended again (the runner keeps what failed and sends it with
its next append), the remembered append is looked up first, and what it already recorded is
not written twice.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from . import pg_schema
from .verify import Problem, Report, check_record
from .errors import (
    BadInput,
    CorruptRecord,
    HistoryViolation,
    JournalError,
    JournalMovedOn,
    JournalNotFound,
    JournalWriteFailed,
    LockTimeout,
    SequenceConflict,
    StoreUnavailable,
)
from .events import DECODE_ERRORS, JOURNAL_RUN, AnyEvent, Event, Record, RunStarted, encoder, int_out_of_range
from .format import MAX_PAYLOAD
from .lock import DEFAULT_TIMEOUT
from .naming import validate_run_id, validate_task_id
from .rules import History
from .store import ArchiveUnit, EventStore, Reading, Subscription, WriterStats
from .writer import Item

DEFAULT_SCHEMA = "runjournal"
SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: rows fetched per query of a read
PAGE = 5000
#: rows fetched per query while an archive fills a unit (it stops at 16 MiB: fewer, larger reads waste less)
ARCHIVE_PAGE = 500
#: how often a waiter or subscriber looks even without a notification (one may be lost)
POLL = 1.0
#: the least time between two sends of a store's notifications (appends in between are merged)
NOTIFY_EVERY = 0.005
#: the extra to install for this store
EXTRA = "pip install 'runjournal[postgres]'"

event_decoder = msgspec.msgpack.Decoder(AnyEvent)

#: the most payload bytes one archived unit holds (as the file store's segments)
ARCHIVE_UNIT_BYTES = 16 << 20
#: the most payload a unit that reads back may say it holds (a unit is cut at 16 MiB, or after
#: one record of up to 64 MiB): the bound on what one is decompressed into
MAX_UNIT_ROWS_BYTES = ARCHIVE_UNIT_BYTES + MAX_PAYLOAD
#: an archived unit's rows: (seq, run_id, run_seq, ts, payload, origin), MessagePack, then zlib
Row = tuple[int, str, int, int, bytes, "str | None"]
_rows_decoder = msgspec.msgpack.Decoder(list[tuple[int, str, int, int, bytes, Optional[str]]])


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise BadInput(f"the PostgreSQL store needs psycopg 3: {EXTRA}") from None
    return psycopg


SECRET_PARAMETERS = ("password", "sslpassword")


def redact(url: str) -> str:
    """The URL without its passwords (in ``user:password@`` or as a parameter), for messages,
    logs and the journal."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if any(k in SECRET_PARAMETERS for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        query = [(k, "***" if k in SECRET_PARAMETERS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def secrets_of(url: str) -> list[str]:
    """Every password the URL holds, to be masked wherever a driver's message repeats one."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    return found + [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in SECRET_PARAMETERS and v]


def parse_url(url: str) -> tuple[str, str]:
    """(the connection URL for libpq, the schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_SCHEMA)
    if not SCHEMA_RE.match(schema):
        raise BadInput(f"store {redact(url)}: schema {schema!r} is not a lowercase SQL name (letters, digits, _)")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(EventStore):
    """Task journals in a PostgreSQL schema. Thread-safe (one connection, used under a lock,
    and one more for notifications once something waits)."""

    def __init__(self, url: str, durability: str = "batch", lock_timeout: float | None = None, archive_unit_bytes: int | None = None):
        self._psycopg = _psycopg()
        self.archive_unit_bytes = ARCHIVE_UNIT_BYTES if archive_unit_bytes is None else archive_unit_bytes
        self.url = redact(url)
        self._conninfo, self.schema = parse_url(url)
        self._secrets = secrets_of(url)
        self.durability = durability
        self.lock_timeout = DEFAULT_TIMEOUT if lock_timeout is None else lock_timeout
        self._sql = self._psycopg.sql
        self._s = self._sql.Identifier(self.schema)
        self._mutex = threading.RLock()
        self._conn = None
        self._ready = False  # the schema is there and current (checked once)
        self._stats: dict[str, WriterStats] = {}
        self._in_doubt: dict[str, tuple[bytes, list[tuple[str, AnyEvent]]]] = {}
        self._listener: _Listener | None = None
        self._append_sql: tuple[str, str] | None = None
        self._notifier: _Notifier | None = None
        self._seen_last: dict[str, int] = {}  # task -> the last sequence an append of this store got
        self._id_prefix = os.urandom(8)  # this store's, in every append id it makes
        self._appends = 0
        self.channel = f"runjournal_{self.schema}"[:63]

    # -- connections --------------------------------------------------------------------

    def _say(self, error: BaseException) -> str:
        """A driver's error as one line, never holding the password."""
        text = " ".join(str(error).split()) or type(error).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connect(self):
        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(1, int(self.lock_timeout)), application_name="runjournal")
        except self._psycopg.Error as e:
            raise StoreUnavailable(f"cannot reach the store {self.url}: {self._say(e)}") from None
        sync = "on" if self.durability == "always" else "off"
        conn.execute(f"SET synchronous_commit = {sync}")
        conn.execute(f"SET lock_timeout = {max(1, int(self.lock_timeout * 1000))}")
        return conn

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _query(self, statement, params=(), write: bool = False):
        """Run a statement (rows, as a list); a read of a store without its schema is empty.
        A connection found broken is made again once (a server restart, a killed backend)."""
        with self._mutex:
            for attempt in (1, 2):
                try:
                    if not self._ensure_schema(write):
                        return []
                    cur = self._connection().execute(statement, params)
                    return cur.fetchall() if cur.description else []
                except self._psycopg.OperationalError as e:
                    self._drop()
                    if attempt == 2:
                        raise StoreUnavailable(f"lost the store {self.url}: {self._say(e)}") from None
            return []

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
                pass

    def _ensure_schema(self, write: bool) -> bool:
        """Whether the schema is there; made (or migrated) first for a write."""
        if self._ready:
            return True
        conn = self._connection()
        s = self._s
        version = self._schema_version(conn)
        if version is None and not write:
            return False
        if version is None or version < len(pg_schema.MIGRATIONS):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"runjournal:{self.schema}",))
                conn.execute(self._sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
                conn.execute(self._sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version (version int NOT NULL)").format(s))
                row = conn.execute(self._sql.SQL("SELECT max(version) FROM {}.schema_version").format(s)).fetchone()
                version = row[0] or 0
                for number, migration in enumerate(pg_schema.MIGRATIONS, 1):
                    if number > version:
                        conn.execute(migration.replace("{s}", s.as_string(conn)))
                        conn.execute(self._sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(s), (number,))
                version = max(version, len(pg_schema.MIGRATIONS))
        if version > len(pg_schema.MIGRATIONS):
            raise StoreUnavailable(
                f"the store {self.url} (schema {self.schema}) is at version {version}, newer than this runjournal knows "
                f"({len(pg_schema.MIGRATIONS)}): upgrade runjournal"
            )
        self._ready = True
        return True

    def _schema_version(self, conn) -> int | None:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{self._s.as_string(conn)}.schema_version",)
        ).fetchone()
        if not row[0]:
            return None
        got = conn.execute(self._sql.SQL("SELECT max(version) FROM {}.schema_version").format(self._s)).fetchone()
        return got[0] or 0

    # -- writing ------------------------------------------------------------------------

    def append(self, task: str, run_id: str, event: AnyEvent, expected_seq: int | None = None) -> Record:
        return self.append_batch(task, [Item(run_id, event)], None if expected_seq is None else {run_id: expected_seq})[0]

    def append_batch(self, task: str, items: Iterable, expected: dict[str, int] | None = None) -> list[Record]:
        validate_task_id(task)
        now = time.time_ns()
        batch = [Item(i[0], i[1], i[2] if len(i) > 2 and i[2] is not None else now) for i in items]
        for it in batch:
            if not isinstance(it.event, Event):
                raise TypeError(f"not an event: {it.event!r}")
            validate_run_id(it.run_id)
        if not batch:
            return []
        return self._append(task, batch, expected, origin=None)

    def record(self, task: str, event: AnyEvent, expected: dict[str, int] | None = None) -> Record:
        validate_task_id(task)
        if not isinstance(event, Event):
            raise TypeError(f"not an event: {event!r}")
        return self._append(task, [Item(JOURNAL_RUN, event, time.time_ns())], expected, origin=None)[0]

    def append_records(self, task: str, records) -> None:
        from .store import copy_chunks, runs_before

        validate_task_id(task)
        for rec in records:
            if not isinstance(rec.event, Event):
                raise TypeError(f"not an event: {rec.event!r}")
            if rec.run_id != JOURNAL_RUN:
                validate_run_id(rec.run_id)
        for chunk in copy_chunks(records):
            items = [Item(r.run_id, r.event, r.ts) for r in chunk]
            written = self._append(task, items, runs_before(chunk), origin=chunk[0].origin, last=chunk[0].seq - 1)
            if [(r.seq, r.run_seq) for r in written] != [(r.seq, r.run_seq) for r in chunk]:
                raise JournalWriteFailed(f"records copied to task {task} in {self.url} took other sequences than they carry (a run's sequence skips)")

    def _append(
        self, task: str, batch: list[Item], expected: dict[str, int] | None, origin: str | None, last: int | None = None
    ) -> list[Record]:
        try:
            payloads = [encoder.encode(it.event) for it in batch]
        except OverflowError:
            raise BadInput(next(filter(None, (int_out_of_range(it.event) for it in batch)), "an integer is out of range") + "; nothing was written") from None
        if max(map(len, payloads)) > MAX_PAYLOAD:
            raise BadInput(f"an event is larger than the journal's limit of {MAX_PAYLOAD} bytes; nothing was written")
        with self._mutex:
            done: list[Record] = []
            doubt = self._in_doubt.pop(task, None)
            if doubt is not None:
                done, batch, payloads = self._resolve(task, doubt, batch, payloads)
                if not batch:
                    return done
                if done:  # what the caller expects of the rest: after the part already recorded
                    expected, last = _after(done, expected, last)
                    try:
                        return done + self._append_now(task, batch, payloads, expected, origin, last)
                    except JournalError:
                        self._in_doubt[task] = doubt  # the caller retries the whole batch: settled again then
                        raise
            return self._append_now(task, batch, payloads, expected, origin, last)

    def _append_now(self, task, batch, payloads, expected, origin, last) -> list[Record]:
        with self._mutex:
            self._appends += 1
            append_id = self._id_prefix + self._appends.to_bytes(8, "little")  # unique; no syscall per append
            sync = self.durability == "batch" and any(it.event.boundary for it in batch)
            if len(batch) == 1 and (not expected or set(expected) == {batch[0].run_id}):
                it = batch[0]
                exp = expected.get(it.run_id) if expected else None
                params = (task, it.run_id, it.ts, payloads[0], type(it.event) is RunStarted, origin, append_id, exp, sync, last)
                row = self._call_append(task, self._statements()[0], params, append_id, batch)
                rows = [(row[0][0], row[0][1])]
                self._seen_last[task] = rows[0][0]
                self._notify(task)
                return [Record(rows[0][0], it.run_id, rows[0][1], it.ts, it.event, origin)]
            return self._batch(task, batch, payloads, expected, origin, append_id, sync, last)

    def _batch(self, task, batch, payloads, expected, origin, append_id, sync, last) -> list[Record]:
        params = (
            task, [it.run_id for it in batch], [it.ts for it in batch], payloads,
            [type(it.event) is RunStarted for it in batch], origin, append_id,
            list(expected) if expected else None, list(expected.values()) if expected else None, sync, last,
        )  # fmt: skip
        row = self._call_append(task, self._statements()[1], params, append_id, batch)
        last_seq, run_seqs = row[0]
        self._seen_last[task] = last_seq
        first = last_seq - len(batch) + 1
        self._notify(task)
        return [Record(first + i, it.run_id, rs, it.ts, it.event, origin if i == 0 else None) for i, (rs, it) in enumerate(zip(run_seqs, batch))]

    def _statements(self) -> tuple[str, str]:
        """The append statements, composed once (the driver prepares them after a few uses)."""
        if self._append_sql is None:
            conn = self._connection()
            s = self._s.as_string(conn)
            self._append_sql = (
                f"SELECT last_seq, run_seq FROM {s}.append1(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                f"SELECT last_seq, run_seqs FROM {s}.append_batch(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            )
        return self._append_sql

    def _call_append(self, task: str, statement, params, append_id: bytes, batch: list[Item]):
        psycopg = self._psycopg
        try:
            self._ensure_schema(write=True)
        except StoreUnavailable as e:  # nothing was sent
            raise StoreUnavailable(f"{e}; nothing was written") from None
        except psycopg.OperationalError as e:
            self._drop()
            raise StoreUnavailable(f"lost the store {self.url}: {self._say(e)}; nothing was written") from None
        try:
            return self._connection().execute(statement, params).fetchall()
        except psycopg.OperationalError as e:
            if e.sqlstate == "55P03":  # lock_not_available: the task's row stayed locked past lock_timeout
                self._stats.setdefault(task, WriterStats()).lock_timeouts += 1
                raise LockTimeout(
                    f"the journal of task {task} in {self.url} stayed locked for {self.lock_timeout:g}s; nothing was written"
                ) from None
            lost = e
        except psycopg.Error as e:
            raise self._refusal(task, e) from None
        # the connection went away during the call: it may or may not have committed
        self._drop()
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                self._connection()
                rows = self._lookup(task, append_id, batch)
                if rows is not None:  # committed: in the shape the append's function answers in
                    return rows if statement is self._statements()[0] else [(rows[-1][0], [r[1] for r in rows])]
                return self._connection().execute(statement, params).fetchall()
            except (StoreUnavailable, psycopg.OperationalError) as e:
                self._drop()
                lost = e
            except psycopg.Error as e:
                raise self._refusal(task, e) from None
            if time.monotonic() + delay > deadline:
                self._in_doubt[task] = (append_id, [(it.run_id, it.event) for it in batch])
                raise JournalWriteFailed(
                    f"lost the store {self.url} during an append to task {task} ({self._say(lost)}) and could not reach it again "
                    f"within {self.lock_timeout:g}s: the append may or may not be recorded; appending the same events again "
                    "records them once"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _refusal(self, task: str, e) -> JournalError:
        """What the server's refusal of an append means for the caller."""
        detail = getattr(getattr(e, "diag", None), "message_detail", None) or ""
        if e.sqlstate == "RJ001":
            run_id, want, have = detail.split("\t")
            return SequenceConflict(run_id, int(want), int(have))
        if e.sqlstate == "RJ003":
            want, have = detail.split("\t")
            return JournalMovedOn(task, int(want), int(have))
        if e.sqlstate == "RJ002":
            run_id, seq = detail.split("\t")
            return HistoryViolation(
                f"run {run_id} already has {int(seq) - 1} event(s): a run is started once (a later attempt begins with a "
                "run_resumed); nothing was written"
            )
        return JournalWriteFailed(f"the store {self.url} refused an append to task {task}: {self._say(e)}; nothing was written")

    def _lookup(self, task: str, append_id: bytes, batch: list[Item]):
        """The (seq, run_seq) rows of an append that committed, found by its id; None if it did not."""
        row = self._connection().execute(
            self._sql.SQL("SELECT seq FROM {}.records WHERE task = %s AND seq > %s AND append_id = %s").format(self._s),
            (task, self._seen_last.get(task, 0), append_id),
        ).fetchone()  # among the records after the last this store saw committed: a short range scan
        if row is None:
            return None
        first = row[0]
        return self._connection().execute(
            self._sql.SQL("SELECT seq, run_seq FROM {}.records WHERE task = %s AND seq >= %s AND seq < %s ORDER BY seq").format(self._s),
            (task, first, first + len(batch)),
        ).fetchall()

    def _resolve(self, task: str, doubt, batch: list[Item], payloads: list[bytes]):
        """Before appending ``batch``: the append whose outcome was unknown, looked up. If it
        committed and ``batch`` begins with its events, those are not written again."""
        append_id, events = doubt
        head = [(it.run_id, it.event) for it in batch[: len(events)]]
        try:
            self._ensure_schema(write=True)
            rows = self._lookup(task, append_id, [Item(events[0][0], events[0][1])] * len(events))
        except (StoreUnavailable, self._psycopg.OperationalError):
            self._drop()
            self._in_doubt[task] = doubt
            raise JournalWriteFailed(f"cannot reach the store {self.url} to settle an earlier append to task {task}; nothing was written") from None
        if rows is None or head != events:
            return [], batch, payloads
        try:
            got = self._connection().execute(
                self._sql.SQL("SELECT ts FROM {}.records WHERE task = %s AND seq >= %s ORDER BY seq LIMIT %s").format(self._s),
                (task, rows[0][0], len(events)),
            ).fetchall()
        except self._psycopg.OperationalError:
            self._drop()
            self._in_doubt[task] = doubt
            raise JournalWriteFailed(f"cannot reach the store {self.url} to settle an earlier append to task {task}; nothing was written") from None
        done = [Record(seq, it.run_id, rs, ts, it.event) for (seq, rs), (ts,), it in zip(rows, got, batch)]
        n = len(events)
        return done, batch[n:], payloads[n:]

    def _notify(self, task: str) -> None:
        """Wake followers, after the commit (see the module docstring), from a thread of its
        own with a connection of its own, so that the append returns after one round trip;
        notifications for a burst of appends are merged. A lost one loses nothing: followers poll."""
        notifier = self._notifier
        if notifier is None:
            with self._mutex:
                if self._notifier is None:
                    self._notifier = _Notifier(self)
                    self._notifier.start()
                notifier = self._notifier
        notifier.add(task)

    def prepare(self, task: str) -> None:
        validate_task_id(task)
        with self._mutex:
            try:
                self._ensure_schema(write=True)
                self._connection().execute(
                    self._sql.SQL("INSERT INTO {}.tasks (task, identity) VALUES (%s, %s) ON CONFLICT (task) DO NOTHING").format(self._s),
                    (task, uuid.uuid4().hex),
                )
            except StoreUnavailable as e:
                raise JournalWriteFailed(str(e)) from None
            except self._psycopg.Error as e:
                self._drop()
                raise JournalWriteFailed(f"cannot write to the store {self.url}: {self._say(e)}") from None

    def flush(self, task: str) -> None:
        """A commit with ``synchronous_commit = on`` is flushed with every commit before it."""

        def synced(conn) -> None:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                conn.execute("SELECT pg_current_xact_id()")

        self._in_transaction(synced)

    def _in_transaction(self, work) -> None:
        """``work(connection)``, a transaction of several statements; a connection found
        broken is made again once (as ``_query`` does)."""
        with self._mutex:
            for attempt in (1, 2):
                try:
                    if not self._ensure_schema(write=False):
                        return
                    work(self._connection())
                    return
                except self._psycopg.OperationalError as e:
                    self._drop()
                    if attempt == 2:
                        raise StoreUnavailable(f"lost the store {self.url}: {self._say(e)}") from None

    # -- reading ------------------------------------------------------------------------

    def tasks(self) -> list[str]:
        rows = self._query(self._sql.SQL("SELECT task FROM {}.tasks ORDER BY task").format(self._s))
        found = []
        for (task,) in rows:
            try:
                found.append(validate_task_id(task))
            except BadInput:
                continue
        return found

    def where(self, task: str) -> str:
        return f"{self.url} (task {validate_task_id(task)})"

    def _task_row(self, task: str):
        rows = self._query(self._sql.SQL("SELECT last_seq, identity FROM {}.tasks WHERE task = %s").format(self._s), (validate_task_id(task),))
        return rows[0] if rows else None

    def last_seq(self, task: str) -> int:
        row = self._task_row(task)
        return row[0] if row else 0

    def exists(self, task: str) -> bool:
        return self._task_row(task) is not None

    def run_seq(self, task: str, run_id: str) -> int:
        return self.run_seqs(task, [run_id])[run_id]

    def run_seqs(self, task: str, run_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(run_ids)
        rows = self._query(
            self._sql.SQL("SELECT run_id, run_seq FROM {}.runs WHERE task = %s AND run_id = ANY(%s)").format(self._s),
            (validate_task_id(task), wanted),
        )
        have = dict(rows)
        return {r: have.get(r, 0) for r in wanted}

    def records(self, task: str, from_seq: int = 1, hint: str | None = None) -> Reading:
        if self._task_row(task) is None:
            raise JournalNotFound(f"no journal for task {task} in {self.url}")
        return _PgReading(self, task, from_seq)

    def _page(self, task: str, from_seq: int) -> list[tuple]:
        return self._query(
            self._sql.SQL(
                "SELECT seq, run_id, run_seq, ts, payload, origin FROM {}.records WHERE task = %s AND seq >= %s ORDER BY seq LIMIT %s"
            ).format(self._s),
            (task, from_seq, PAGE),
        )

    def first_at(self, task: str, ts: int) -> int | None:
        """A binary search over the sequence (the primary key; ``ts`` has no index, which every
        append would pay for): about 21 lookups in 2,000,000 records."""
        statement = self._sql.SQL("SELECT seq, ts FROM {}.records WHERE task = %s AND seq >= %s ORDER BY seq LIMIT 1").format(self._s)
        validate_task_id(task)
        first = self._query(statement, (task, 1))
        if not first:
            return None
        last = self.last_seq(task)
        lo, hi = first[0][0], last + 1  # the answer is in lo..hi; hi: none is
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._query(statement, (task, mid))
            if not row:  # (hi was past the end)
                hi = mid
            elif row[0][1] < ts:
                lo = row[0][0] + 1
            else:
                hi = row[0][0]
        return lo if lo <= last else None

    def identity(self, task: str) -> str | None:
        row = self._task_row(task)
        if row is None:
            return None
        return row[1] if row[0] else ""

    def wait(self, task: str, after_seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        listener = self._listen()
        while True:
            mark = listener.mark()
            if self.last_seq(task) > after_seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            listener.wait(mark, min(left, POLL))

    def _listen(self) -> _Listener:
        with self._mutex:
            if self._listener is None:
                self._listener = _Listener(self)
                self._listener.start()
            return self._listener

    def subscribe(
        self,
        on_change: Callable[[str], None],
        task: str | None = None,
        poll: float | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Subscription:
        return _PgSubscription(self, on_change, task, poll, warn)

    # -- retention ------------------------------------------------------------------------

    def archive(self, task: str, before_seq: int, runs: set[str]) -> list[ArchiveUnit]:
        """Each unit in one transaction: the oldest live rows while they are of ``runs`` (or
        journal-level) and before ``before_seq``, up to ``archive_unit_bytes``, compressed into
        one ``archive`` row, and deleted from ``records``. A kill rolls the unit back whole;
        appends go on (they lock the task's row, this an advisory lock of its own)."""
        validate_task_id(task)
        allowed = runs | {JOURNAL_RUN}
        moved: list[ArchiveUnit] = []

        def one(conn) -> ArchiveUnit | None:
            with conn.transaction():
                self._archive_lock(conn, task)
                row = conn.execute(self._sql.SQL("SELECT max(last_seq) FROM {}.archive WHERE task = %s").format(self._s), (task,)).fetchone()
                start = (row[0] or 0) + 1
                rows: list[Row] = []
                size = 0
                while size < self.archive_unit_bytes:
                    page = conn.execute(
                        self._sql.SQL(
                            "SELECT seq, run_id, run_seq, ts, payload, origin FROM {}.records WHERE task = %s AND seq >= %s AND seq < %s ORDER BY seq LIMIT %s"
                        ).format(self._s),
                        (task, start + len(rows), before_seq, ARCHIVE_PAGE),
                    ).fetchall()
                    for r in page:
                        if r[0] != start + len(rows) or r[1] not in allowed or (rows and size + len(r[4]) > self.archive_unit_bytes):
                            page = []  # a gap (a start past the archive), another run, or full: the unit ends
                            break
                        rows.append(tuple(r))
                        size += len(r[4])
                    if len(page) < ARCHIVE_PAGE:
                        break
                if not rows:
                    return None
                data = zlib.compress(msgspec.msgpack.encode(rows), 6)
                unit = ArchiveUnit(_unit_name(rows[0][0]), rows[0][0], rows[-1][0], tuple(dict.fromkeys(r[1] for r in rows)), size, len(data))
                conn.execute(
                    self._sql.SQL("INSERT INTO {}.archive (task, first_seq, last_seq, runs, bytes, stored_bytes, data) VALUES (%s, %s, %s, %s, %s, %s, %s)").format(self._s),
                    (task, unit.first, unit.last, list(unit.runs), unit.bytes, unit.stored_bytes, data),
                )
                conn.execute(self._sql.SQL("DELETE FROM {}.records WHERE task = %s AND seq BETWEEN %s AND %s").format(self._s), (task, unit.first, unit.last))
                return unit

        while True:
            done: list[ArchiveUnit | None] = [None]
            self._in_transaction(lambda conn: done.__setitem__(0, one(conn)))
            if done[0] is None:
                return moved
            moved.append(done[0])

    def _archive_lock(self, conn, task: str) -> None:
        """One archiver or pruner of a task at a time (appends do not take it)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"runjournal:archive:{self.schema}:{task}",))

    def archive_units(self, task: str) -> list[ArchiveUnit]:
        rows = self._query(
            self._sql.SQL("SELECT first_seq, last_seq, runs, bytes, stored_bytes, data IS NULL FROM {}.archive WHERE task = %s ORDER BY first_seq").format(self._s),
            (validate_task_id(task),),
        )
        return [ArchiveUnit(_unit_name(first), first, last, tuple(runs), size, stored, pruned) for first, last, runs, size, stored, pruned in rows]

    def prune_archive(self, task: str, names: set[str]) -> None:
        validate_task_id(task)
        firsts = [u.first for u in self.archive_units(task) if u.name in names]

        def pruned(conn) -> None:
            with conn.transaction():
                self._archive_lock(conn, task)
                conn.execute(self._sql.SQL("UPDATE {}.archive SET data = NULL WHERE task = %s AND first_seq = ANY(%s)").format(self._s), (task, firsts))

        self._in_transaction(pruned)

    def archived_records(self, task: str, runs: set[str]) -> Iterator[Record]:
        for first, _, rows in self._archived_rows(task, runs=runs):
            for seq, run_id, run_seq, ts, payload, origin in rows:
                if run_id in runs:
                    yield Record(seq, run_id, run_seq, ts, _decode(payload, f"{self.schema}.archive", seq), origin)

    def _archived_rows(self, task: str, runs: set[str] | None = None, first: int = 1, last: int | None = None) -> Iterator[tuple[int, int, list[Row]]]:
        """(first, last, rows) of each archived unit still held (holding one of ``runs``, or
        overlapping ``first``..``last``), in order; CorruptRecord if one does not read back."""
        where = self._sql.SQL("task = %s AND data IS NOT NULL AND last_seq >= %s AND first_seq <= %s")
        params: list = [validate_task_id(task), first, last if last is not None else 2**63 - 1]
        if runs is not None:
            where = self._sql.SQL("{} AND runs && %s").format(where)
            params.append(sorted(runs))
        units = self._query(self._sql.SQL("SELECT first_seq, last_seq, bytes FROM {}.archive WHERE {} ORDER BY first_seq").format(self._s, where), params)
        for unit_first, unit_last, size in units:  # one unit's data at a time: each is up to archive_unit_bytes
            got = self._query(self._sql.SQL("SELECT data FROM {}.archive WHERE task = %s AND first_seq = %s").format(self._s), (task, unit_first))
            if not got or got[0][0] is None:
                continue  # pruned meanwhile
            yield unit_first, unit_last, _unpack(got[0][0], f"{self.schema}.archive", unit_first, size)

    # -- checking -----------------------------------------------------------------------

    def check(self, task: str, pins: dict[int, bytes] | None = None) -> Report:
        """Every record in order: gaps, duplicates, payloads that do not decode, run
        sequences, the rules of a run's history, and the task's counter against its records.
        No hash chain is kept here (the database's own access control is what guards the
        records): a pin is reported as not checkable."""
        row = self._task_row(task)
        if row is None:
            raise JournalNotFound(f"no journal for task {task} in {self.url}")
        report = Report()
        run_seqs: dict[str, int] = {}
        history = History()
        unsure: set = set()
        seq = self._check_archive(task, report, run_seqs, history, unsure)
        after = 0  # the live rows from their first: one that overlaps the archive is reported
        where = f"{self.schema}.records"
        while True:
            page = self._page(task, after + 1)
            seq = _check_rows(page, seq, where, report, run_seqs, history, unsure)
            if len(page) < PAGE:
                break
            after = page[-1][0]
        if seq - 1 != row[0]:
            report.problems.append(Problem(f"{self.schema}.tasks", 0, "sequence-gap", f"the task's counter says {row[0]}, its records end at {seq - 1}"))
        report.runs = len([r for r in run_seqs if r != JOURNAL_RUN])
        for seq in sorted(pins or ()):
            report.problems.append(Problem(where, seq, "pin-mismatch", f"sequence {seq}: the PostgreSQL store keeps no hash chain to check a pin against"))
        return report

    def _check_archive(self, task: str, report: Report, run_seqs: dict[str, int], history: History, unsure: set) -> int:
        """Check the archived units as the journal's first records (each read back, its rows
        checked as live ones are); pruned ones are passed over. The sequence the live records
        must begin at."""
        where = f"{self.schema}.archive"
        seq = 1
        for unit in self.archive_units(task):
            if unit.first != seq:
                report.problems.append(Problem(where, unit.first, "bad-archive", f"the unit from sequence {unit.first} does not continue the archive at {seq}"))
            if unit.pruned:
                report.pruned += 1
                unsure.update(unit.runs)  # journal-level records go with a pruned unit: theirs may skip
                seq = unit.last + 1
                continue
            try:
                found = list(self._archived_rows(task, first=unit.first, last=unit.first))
            except CorruptRecord as e:
                report.problems.append(Problem(where, unit.first, "bad-archive", e.detail))
                seq = unit.last + 1
                continue
            if not found:  # pruned while this check ran
                report.pruned += 1
                unsure.update(unit.runs)
                seq = unit.last + 1
                continue
            report.archived += 1
            seq = _check_rows(found[0][2], seq, where, report, run_seqs, history, unsure)
            if seq != unit.last + 1:
                report.problems.append(Problem(where, unit.first, "bad-archive", f"the unit holds records to sequence {seq - 1}, its row says {unit.last}"))
                seq = unit.last + 1
        return seq

    def repair(self, task: str, quarantine: bool = False) -> Report:
        """Nothing in a database is torn or spilled: the same as ``check``."""
        return self.check(task)

    def writer_stats(self, task: str) -> WriterStats:
        return self._stats.get(task) or WriterStats()

    def close(self) -> None:
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop()  # what is pending is sent first
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        with self._mutex:
            self._drop()

    # -- for tests and for moving a journal -------------------------------------------------

    def drop_task(self, task: str) -> None:
        """Delete a task's journal (its records, runs and counter), in one transaction."""

        def dropped(conn) -> None:
            with conn.transaction():
                for table in ("records", "archive", "runs", "tasks"):
                    conn.execute(self._sql.SQL("DELETE FROM {}.{} WHERE task = %s").format(self._s, self._sql.Identifier(table)), (task,))

        self._in_transaction(dropped)
        self._seen_last.pop(task, None)


def _check_rows(rows, seq: int, where: str, report: Report, run_seqs: dict[str, int], history: History, unsure: set) -> int:
    """``check_record`` for rows (seq, run_id, run_seq, ts, payload, origin), live or archived;
    the sequence expected next."""
    for s, run_id, run_seq, ts, payload, origin in rows:
        report.bytes += len(payload)
        try:
            event = event_decoder.decode(payload)
        except DECODE_ERRORS as e:
            report.problems.append(Problem(where, s, "corrupt", f"sequence {s}: the event does not decode ({e})"))
            seq = s + 1
            continue
        seq = check_record(Record(s, run_id, run_seq, ts, event, origin), seq, where, s, report, run_seqs, history, unsure)
    return seq


def _unit_name(first: int) -> str:
    """An archived unit as people and ``prune_archive`` name it: its first sequence."""
    return f"{first:020d}"


def _decode(payload: bytes, where: str, seq: int):
    try:
        return event_decoder.decode(payload)
    except DECODE_ERRORS as e:
        raise CorruptRecord(where, seq, f"the event of sequence {seq} does not decode ({e})") from None


def _unpack(data: bytes, where: str, first: int, size: int) -> list[Row]:
    """An archived unit's rows (``size``: its payload bytes, as its row says); CorruptRecord if
    they do not decompress and decode, or would take far more than that (a forged row)."""
    limit = min(size, MAX_UNIT_ROWS_BYTES) * 4 + (1 << 20)  # the rows' own fields besides the payloads
    inflate = zlib.decompressobj()
    try:
        rows = inflate.decompress(data, limit)
        if inflate.unconsumed_tail:
            raise CorruptRecord(where, first, f"the archived unit from sequence {first} holds more than {limit} bytes: refused")
        return _rows_decoder.decode(rows)
    except (zlib.error, *DECODE_ERRORS) as e:
        raise CorruptRecord(where, first, f"the archived unit from sequence {first} does not read back ({e})") from None


def _after(done: list[Record], expected: dict[str, int] | None, last: int | None):
    """A caller's expectations for the rest of a batch whose first records (``done``) were
    already recorded by an append whose outcome was unknown: a run expected where it stood
    before them is now expected after them (one expected after them already is left alone)."""
    if expected:
        expected = dict(expected)
        for run_id in {r.run_id for r in done}:
            mine = [r.run_seq for r in done if r.run_id == run_id]
            if expected.get(run_id) == mine[0] - 1:
                expected[run_id] = mine[-1]
    if last is not None and last == done[0].seq - 1:
        last = done[-1].seq
    return expected, last


class _PgReading(Reading):
    """Committed records of a task from a sequence, read in pages: each page sees every append
    committed before it, and, sequences being given in commit order, no page skips one."""

    hint = None

    def __init__(self, store: PostgresStore, task: str, from_seq: int):
        self._records = self._pages(store, task, max(1, from_seq))

    @staticmethod
    def _pages(store: PostgresStore, task: str, next_seq: int):
        where = f"{store.schema}.records"
        begun = next_seq > 1  # from a cursor, records archived since are read from the archive (from 1: the live journal)
        while True:
            page = store._page(task, next_seq)
            if begun and page and page[0][0] > next_seq:  # archived since this read began: read from there
                for _, _, rows in store._archived_rows(task, first=next_seq, last=page[0][0] - 1):
                    for seq, run_id, run_seq, ts, payload, origin in rows:
                        if next_seq <= seq < page[0][0]:
                            yield Record(seq, run_id, run_seq, ts, _decode(payload, f"{store.schema}.archive", seq), origin)
            for seq, run_id, run_seq, ts, payload, origin in page:
                yield Record(seq, run_id, run_seq, ts, _decode(payload, where, seq), origin)
            if len(page) < PAGE:
                return
            next_seq, begun = page[-1][0] + 1, True

    def __iter__(self):
        return self._records

    def __next__(self) -> Record:
        return next(self._records)


class _Notifier(threading.Thread):
    """Sends the store's NOTIFYs on the store's own connection, between appends: every task
    appended to since the last send, in one statement, at most once every NOTIFY_EVERY. The
    append returns after its own round trip, a burst of appends costs a few sends, and a
    process holds one connection, however much it appends."""

    def __init__(self, store: PostgresStore):
        super().__init__(name="runjournal-pg-notify", daemon=True)
        self.store = store
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._halt = False

    def add(self, task: str) -> None:
        if task in self._pending:  # already to be sent (a racy look: at worst one more notify)
            return
        with self._cond:
            self._pending.add(task)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._halt = True
            self._cond.notify()
        self.join(5)

    def run(self) -> None:
        store = self.store
        sent = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._halt)
                self._cond.wait_for(lambda: self._halt, sent + NOTIFY_EVERY - time.monotonic())
                tasks, self._pending = self._pending, set()
                if not tasks:
                    return  # halted, and nothing left to send
            with store._mutex:
                try:
                    store._connection().execute("SELECT pg_notify(%s, t) FROM unnest(%s::text[]) AS t", (store.channel, sorted(tasks)))
                except Exception:  # noqa: BLE001 - whatever it is, followers poll: this thread must live on
                    store._drop()  # the next append makes the connection again
            sent = time.monotonic()


class _Listener(threading.Thread):
    """One connection that LISTENs on the store's channel; wakes waiters and subscribers. A
    lost connection is made again (everyone is woken then: notifications may have been lost)."""

    def __init__(self, store: PostgresStore):
        super().__init__(name="runjournal-pg-listen", daemon=True)
        self.store = store
        self._cond = threading.Condition()
        self._count = 0
        self._halt = threading.Event()
        self._callbacks: list[Callable[[str | None], None]] = []

    def mark(self) -> int:
        with self._cond:
            return self._count

    def wait(self, mark: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._count != mark or self._halt.is_set(), timeout)

    def add(self, callback: Callable[[str | None], None]) -> None:
        with self._cond:
            self._callbacks.append(callback)

    def remove(self, callback: Callable[[str | None], None]) -> None:
        with self._cond:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def _wake(self, task: str | None) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(task)

    def stop(self) -> None:
        self._halt.set()
        self._wake(None)
        self.join(5)

    def run(self) -> None:
        store = self.store
        psycopg = store._psycopg
        while not self._halt.is_set():
            try:
                conn = psycopg.connect(store._conninfo, autocommit=True, connect_timeout=5, application_name="runjournal-listen")
            except psycopg.Error:
                self._halt.wait(POLL)
                continue
            try:
                conn.execute(store._sql.SQL("LISTEN {}").format(store._sql.Identifier(store.channel)))
                self._wake(None)  # anything committed before LISTEN took effect is looked for now
                while not self._halt.is_set():
                    for note in conn.notifies(timeout=0.5):
                        self._wake(note.payload)
            except psycopg.Error:
                pass
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass


class _PgSubscription(Subscription):
    """``on_change(task)`` on notifications, and on a poll of every task's counter (one query)
    that catches what a lost notification or a new task would hide."""

    def __init__(self, store: PostgresStore, on_change, task: str | None, poll: float | None, warn):
        self.store, self.on_change, self.task = store, on_change, task
        self.kind = "LISTEN/NOTIFY, and a poll every 2 s" if poll is None else f"polling every {poll:g} s"
        self._poll = 2.0 if poll is None else poll
        self._warn = warn or (lambda message: None)
        self._stop = threading.Event()
        self._seen: dict[str, int] = {}
        self._running = threading.Lock()
        self._listener = store._listen() if poll is None else None
        if self._listener is not None:
            self._listener.add(self._heard)
        self._poller = threading.Thread(target=self._poll_loop, name="runjournal-pg-poll", daemon=True)
        self._poller.start()

    def _heard(self, task: str | None) -> None:
        if task is None:
            self.refresh()
        elif self.task is None or task == self.task:
            self._call(task)

    def _call(self, task: str) -> None:
        if self._stop.is_set():
            return
        with self._running:
            if not self._stop.is_set():
                self.on_change(task)

    def refresh(self) -> None:
        try:
            rows = self.store._query(self.store._sql.SQL("SELECT task, last_seq FROM {}.tasks").format(self.store._s))
        except JournalError as e:
            self._warn(str(e))
            return
        for task, last in rows:
            if (self.task is None or task == self.task) and self._seen.get(task) != last:
                self._seen[task] = last
                self._call(task)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.remove(self._heard)
        self._poller.join(10)
        with self._running:
            pass
