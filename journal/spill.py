"""Spilled batches: what a writer that could not get the lock keeps in ``pending/``.

A pending file is ``PENDING_MAGIC`` and then one batch framed as in a segment
(docs/journal-format.md section 8). It is written to a temporary name, fsynced and renamed,
so it is there whole or not at all; the next lock holder merges it (``Journal``) and a merge
that died before deleting it is recognised by the ``origin`` of the batch it appended.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import msgspec

from . import chain
from . import format as fmt
from .errors import CorruptRecord
from .events import DECODE_ERRORS, AnyEvent, encoder, why_undecodable
from .fsutil import create_temp, fsync_dir, makedirs_durable, write_all

PENDING_DIR = "pending"
PENDING_MAGIC = b"RJPENDG1"


class Spilled(msgspec.Struct, array_like=True, frozen=True):
    """One spilled event: its sequence numbers are given when it is merged."""

    run_id: str
    ts: int
    event: AnyEvent


_spilled_decoder = msgspec.msgpack.Decoder(Spilled)


class _Origin(msgspec.Struct, array_like=True):
    seq: int
    run_id: str
    run_seq: int
    ts: int
    event: msgspec.Raw
    origin: str | None = None


_origin_decoder = msgspec.msgpack.Decoder(_Origin)


def encode(batch: Sequence[tuple]) -> list[bytes]:
    """The payloads of a batch of (run id, event, ts); OverflowError for an integer out of range."""
    return [encoder.encode(Spilled(run_id, ts, event)) for run_id, event, ts in batch]


def write(directory: str, name: str, payloads: list[bytes]) -> str:
    """Put a pending file in place durably (temporary name, fsync, rename, directory fsync)."""
    pending = os.path.join(directory, PENDING_DIR)
    makedirs_durable(pending)
    fd, tmp = create_temp(pending, name)
    try:
        write_all(fd, PENDING_MAGIC + fmt.encode_batch(payloads))
        os.fsync(fd)
    finally:
        os.close(fd)
    path = os.path.join(pending, name)
    os.rename(tmp, path)
    fsync_dir(pending)
    return path


def read(path: str) -> list[tuple[str, AnyEvent, int]]:
    """The (run id, event, ts) of a pending file; CorruptRecord if any part of it is damaged."""
    fd, size = fmt.open_segment(os.path.dirname(path), os.path.basename(path))  # a regular file, or CorruptRecord
    try:
        if os.pread(fd, len(PENDING_MAGIC), 0) != PENDING_MAGIC:
            raise CorruptRecord(path, 0, "not a runjournal pending file")
        scanner = fmt.SegmentScanner(fd, path, len(PENDING_MAGIC))
        try:
            batches = list(scanner.batches())
        except CorruptRecord as e:
            raise CorruptRecord(path, e.offset, f"pending file damaged: {e.detail}") from None
        if scanner.end.state != "open" or scanner.end.offset != size or len(batches) > 1:
            raise CorruptRecord(path, scanner.end.offset, f"pending file damaged: {scanner.end.detail or 'not one whole batch'}")
        items = []
        for off, payload in batches[0] if batches else []:
            try:
                s = _spilled_decoder.decode(payload)
            except DECODE_ERRORS as e:
                raise CorruptRecord(path, off, f"pending record does not decode: {why_undecodable(payload, e)}") from None
            items.append((s.run_id, s.event, s.ts))
        return items
    finally:
        os.close(fd)


def names(directory: str) -> list[str]:
    """The files in ``pending/``, sorted (oldest spill first); none if there is no ``pending/``."""
    try:
        return sorted(os.listdir(os.path.join(directory, PENDING_DIR)))
    except FileNotFoundError:
        return []


def set_aside(directory: str, name: str, why: str = "damaged") -> None:
    """A pending file that is not merged is renamed ``….damaged`` (or ``….foreign``) so it
    blocks no one; verify reports it."""
    pending = os.path.join(directory, PENDING_DIR)
    os.rename(os.path.join(pending, name), os.path.join(pending, f"{name.removesuffix('.merging')}.{why}"))
    fsync_dir(pending)


def foreign(directory: str, name: str) -> bool:
    """Whether a pending file belongs to another account than the journal directory's owner:
    never merged, whoever could drop it there (a forged spill)."""
    try:
        owner = os.stat(directory).st_uid
        return os.lstat(os.path.join(directory, PENDING_DIR, name)).st_uid != owner
    except FileNotFoundError:
        return False


def merged_before(directory: str, origin: str) -> bool:
    """Whether a batch from the pending file ``origin`` is in the journal already (a merge that
    died before deleting it). Only asked after such a crash, so reading every batch is fine."""
    for _, batch in chain.first_batches(directory):
        try:
            if _origin_decoder.decode(batch[0][1]).origin == origin:
                return True
        except DECODE_ERRORS:
            continue
    return False
