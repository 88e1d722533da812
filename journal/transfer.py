"""Export records as JSON Lines and import them elsewhere, idempotently.

Each line is ``{"seq", "run_id", "run_seq", "ts", "time", "event"}``; ``ts`` is the writer's
time in ns (kept on import), ``time`` the same in ISO-8601 for people; ``origin`` where the
record has one, and, from a store that keeps the hash chain, ``chain_before`` and ``chain``:
the chain before and after the record in the source (hex). Import checks each such line
against them (the record, encoded again, must be the bytes the source's chain covers, and
consecutive lines must join), so a copy is proven faithful to the chain head the source's
``verify`` prints; anything else is refused whole. Import keys events
by (run_id, run_seq): events a run already has are skipped, so importing a file twice adds
nothing, and the rest of each run must continue its sequence exactly. The whole file is
parsed and checked before anything is written, and it is written as one atomic batch.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import msgspec

from . import format as fmt, hashchain
from .errors import BadInput, SequenceConflict
from .rules import History
from .events import DECODE_ERRORS, JOURNAL_RUN, AnyEvent, Record, encoder, int_out_of_range
from .naming import iso_utc, validate_run_id
from .store import EventStore
from .writer import Item


class ExportRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    seq: int
    run_id: str
    run_seq: int
    ts: int
    event: AnyEvent
    time: str = ""
    origin: str | None = None
    chain_before: str = ""
    chain: str = ""


_json_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(ExportRecord)
_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def to_json_line(rec: Record, before: bytes | None = None, after: bytes | None = None) -> bytes:
    line = ExportRecord(
        rec.seq, rec.run_id, rec.run_seq, rec.ts, rec.event, iso_utc(rec.ts), rec.origin,
        before.hex() if before is not None and after is not None else "",
        after.hex() if before is not None and after is not None else "",
    )
    return _json_encoder.encode(line) + b"\n"


def export_lines(store: EventStore, task: str, run_id: str | None = None) -> Iterator[bytes]:
    """The task's events (or one run's) as JSON Lines, with the hash chain around each where the
    store keeps it; journal-level events are left out."""
    if run_id is not None:  # an archived run: its archived records first, without the chain
        for rec in store.archived_records(task, {run_id}):
            yield to_json_line(rec)
    for rec, before, after in store.chained_records(task):
        if rec.run_id == JOURNAL_RUN or run_id is not None and rec.run_id != run_id:
            continue
        yield to_json_line(rec, before, after)


class ImportLines(list):
    """The checked records of an export file (a list of ExportRecord), with where each came from."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source
        self.places: list[str] = []  # "3" for line 3, "item 3" for the third of an array
        #: (sequence, chain value) of the last line whose chain was checked; None if none carried one
        self.chain_head: tuple[int, str] | None = None
        self.unchained = 0  # lines that carried no chain

    def where(self, i: int) -> str:
        return f"{self.source}:{self.places[i]}: "


def parse_export(stream: BinaryIO, source: str) -> ImportLines:
    """An export file: JSON Lines, or one JSON array of the same objects (``export --format json``)."""
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)
    if stream.peek(64).lstrip().startswith(b"["):
        document = stream.read()
        try:
            items = _array_decoder.decode(document)
        except DECODE_ERRORS as e:
            raise BadInput(f"{source}: {_malformed(document, e)}; nothing was imported") from None
        return _parse(((f"item {i}", bytes(raw)) for i, raw in enumerate(items, 1)), source)
    return parse_lines(stream, source)


def parse_lines(lines: Iterable[bytes], source: str) -> ImportLines:
    """Decode and check every line; the first bad one raises BadInput naming its line number."""
    return _parse(((str(n), line) for n, line in enumerate(lines, 1) if line.strip()), source)


def _parse(items: Iterable[tuple[str, bytes]], source: str) -> ImportLines:
    out = ImportLines(source)
    last: dict[str, int] = {}
    # what the writer would refuse, or verify report, in the file's own history is refused
    # here whole; a file that continues a run already in the journal is judged from where it
    # begins (its earlier events are not read), so verify may still report what they break
    history = History()
    for place, line in items:
        try:
            rec = _line_decoder.decode(line)
            validate_run_id(rec.run_id)
            _check_storable(rec)
        except BadInput as e:
            raise BadInput(f"{source}:{place}: {e}; nothing was imported") from None
        except DECODE_ERRORS as e:
            raise BadInput(f"{source}:{place}: {_malformed(line, e)}; nothing was imported") from None
        prev = last.get(rec.run_id)
        if prev is not None and rec.run_seq != prev + 1:
            raise BadInput(f"{source}:{place}: run {rec.run_id} sequence {rec.run_seq} follows {prev}; nothing was imported")
        last[rec.run_id] = rec.run_seq
        why = history.violation(rec)
        if why:
            raise BadInput(f"{source}:{place}: {why} (a rule of a run's history); nothing was imported")
        why = _chain_broken(rec, out.chain_head)
        if why:
            raise BadInput(f"{source}:{place}: {why}; nothing was imported")
        if rec.chain:
            out.chain_head = (rec.seq, rec.chain)
        else:
            out.unchained += 1
        out.append(rec)
        out.places.append(place)
    return out


def _chain_broken(rec: ExportRecord, previous: tuple[int, str] | None) -> str | None:
    """What is wrong with a line's hash chain: the record is not the bytes the source's chain
    covers there, or the line does not join the one before it. None if it holds, or the line
    carries no chain."""
    if not rec.chain and not rec.chain_before:
        return None
    try:
        before, after = bytes.fromhex(rec.chain_before), bytes.fromhex(rec.chain)
    except ValueError:
        before = after = b""
    if len(before) != hashchain.SIZE or len(after) != hashchain.SIZE:
        return "chain_before and chain must both be 64 hex digits"
    payload = encoder.encode(Record(rec.seq, rec.run_id, rec.run_seq, rec.ts, rec.event, rec.origin))
    if hashchain.step(before, payload) != after:
        return f"sequence {rec.seq} is not the record the source's hash chain covers (changed since the export, or lost in it)"
    if previous is not None and previous[0] + 1 == rec.seq and previous[1] != rec.chain_before:
        return f"sequence {rec.seq} does not follow sequence {previous[0]} in the source's hash chain"
    return None


def _malformed(document: bytes, error: Exception) -> str:
    """What is wrong with JSON the decoder refused. Bytes that are not UTF-8 are found here,
    not taken from the decoder (msgspec's class and wording for them change between releases)."""
    try:
        bytes(document).decode("utf-8")
    except UnicodeDecodeError as e:
        return f"JSON is malformed: byte 0x{e.object[e.start]:02x} at {e.start} is not UTF-8 ({e.reason})"
    return str(error)


def _check_storable(rec: ExportRecord) -> None:
    """What the decoder lets through but the journal cannot hold: checked per line, before any
    write (the writer refuses such a batch too, but without saying which line)."""
    if not 1 <= rec.run_seq < 1 << 63:
        raise BadInput(f"run_seq {rec.run_seq} is not a run sequence (1, 2, 3 ...) - at `$.run_seq`")
    record = Record(1 << 63, rec.run_id, rec.run_seq, rec.ts, rec.event)  # the largest seq
    try:
        size = len(encoder.encode(record))
    except OverflowError:
        raise BadInput(int_out_of_range(record) or "an integer is out of range (msgpack holds 64 bits)") from None
    if size > fmt.MAX_PAYLOAD:
        raise BadInput(f"the record is {size} bytes, more than the journal's limit of {fmt.MAX_PAYLOAD}")


def import_records(store: EventStore, task: str, records: list[ExportRecord], attempts: int = 5) -> int:
    """Append what the task's journal lacks of ``records``; return how many were added. Runs
    are appended with their expected sequences, so an import is idempotent and all or nothing."""
    runs = list(dict.fromkeys(r.run_id for r in records))
    for _ in range(attempts):
        have = store.run_seqs(task, runs)
        items, expected = [], {}
        for i, rec in enumerate(records):
            cur = have[rec.run_id]
            if rec.run_seq <= cur:
                continue
            if rec.run_id not in expected:
                if rec.run_seq != cur + 1:
                    where = records.where(i) if isinstance(records, ImportLines) else ""
                    raise BadInput(
                        f"{where}run {rec.run_id} has {cur} events here and the file continues at {rec.run_seq}: "
                        "export the whole run and import that; nothing was imported"
                    )
                expected[rec.run_id] = cur
            items.append(Item(rec.run_id, rec.event, rec.ts))
        if not items:
            return 0
        try:
            store.append_batch(task, items, expected)
            return len(items)
        except SequenceConflict:
            continue  # another writer appended to one of these runs meanwhile: plan again
    raise BadInput("the runs being imported kept changing under the import (try again); nothing was imported")
