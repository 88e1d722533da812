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
from .fsutil import Where, at, shared, subdir, sync_dir, write_temp

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


def write(directory: Where, name: str, payloads: list[bytes]) -> str:
    """Put a pending file in place durably (temporary name, fsync, rename, directory fsync);
    its path below the journal directory (``pending/<name>``)."""
    with subdir(directory, PENDING_DIR, create=True) as pending:
        path, pfd = at(pending, name)
        tmp = write_temp(pending, name, PENDING_MAGIC + fmt.encode_batch(payloads))
        os.rename(tmp, path, src_dir_fd=pfd, dst_dir_fd=pfd)
        try:
            sync_dir(pending)
        except OSError:
            pass  # the batch is in pending/ now, and will be merged: saying otherwise would have it appended twice
    return f"{PENDING_DIR}/{name}"


def read(directory: Where, name: str) -> list[tuple[str, AnyEvent, int]]:
    """The (run id, event, ts) of the pending file ``name``; CorruptRecord if any part of it is damaged."""
    shown = f"{PENDING_DIR}/{name}"
    with subdir(directory, PENDING_DIR) as pending:
        fd, size = fmt.open_segment(pending, name)  # a regular file, or CorruptRecord
    try:
        if os.pread(fd, len(PENDING_MAGIC), 0) != PENDING_MAGIC:
            raise CorruptRecord(shown, 0, "not a runjournal pending file")
        scanner = fmt.SegmentScanner(fd, shown, len(PENDING_MAGIC))
        try:
            batches = list(scanner.batches())
        except CorruptRecord as e:
            raise CorruptRecord(shown, e.offset, f"pending file damaged: {e.detail}") from None
        if scanner.end.state != "open" or scanner.end.offset != size or len(batches) > 1:
            raise CorruptRecord(shown, scanner.end.offset, f"pending file damaged: {scanner.end.detail or 'not one whole batch'}")
        items = []
        for off, payload in batches[0] if batches else []:
            try:
                s = _spilled_decoder.decode(payload)
            except DECODE_ERRORS as e:
                raise CorruptRecord(shown, off, f"pending record does not decode: {why_undecodable(payload, e)}") from None
            items.append((s.run_id, s.event, s.ts))
        return items
    finally:
        os.close(fd)


def names(directory: Where) -> list[str]:
    """The files in ``pending/``, sorted (oldest spill first); none if there is no ``pending/``."""
    try:
        with subdir(directory, PENDING_DIR) as pending:
            return sorted(os.listdir(pending))
    except FileNotFoundError:
        return []


def rename(directory: Where, name: str, new: str) -> None:
    """Rename a pending file (not synced: the caller decides when that must be durable)."""
    with subdir(directory, PENDING_DIR) as pending:
        old_path, pfd = at(pending, name)
        os.rename(old_path, at(pending, new)[0], src_dir_fd=pfd, dst_dir_fd=pfd)


def remove(directory: Where, name: str) -> None:
    """Delete a merged pending file, durably."""
    with subdir(directory, PENDING_DIR) as pending:
        path, pfd = at(pending, name)
        os.unlink(path, dir_fd=pfd)
        sync_dir(pending)


def set_aside(directory: Where, name: str, why: str = "damaged") -> None:
    """A pending file that is not merged is renamed ``….damaged`` (or ``….foreign``) so it
    blocks no one; verify reports it."""
    with subdir(directory, PENDING_DIR) as pending:
        old_path, pfd = at(pending, name)
        os.rename(old_path, at(pending, f"{name.removesuffix('.merging')}.{why}")[0], src_dir_fd=pfd, dst_dir_fd=pfd)
        sync_dir(pending)


def foreign(directory: Where, name: str) -> bool:
    """Whether a pending file belongs to another account than the journal directory's owner
    (in a shared group journal: to another group than the directory's): never merged,
    whoever could drop it there (a forged spill)."""
    try:
        own = os.fstat(directory) if isinstance(directory, int) else os.stat(directory)
        with subdir(directory, PENDING_DIR) as pending:
            path, pfd = at(pending, name)
            st = os.stat(path, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return st.st_uid != own.st_uid and not (shared(own) and st.st_gid == own.st_gid)


def merged_before(directory: Where, origin: str) -> bool:
    """Whether a batch from the pending file ``origin`` is in the journal already (a merge that
    died before deleting it). Only asked after such a crash, so reading every batch is fine."""
    for _, batch in chain.first_batches(directory):
        if not batch:  # a region set aside (a hole frame): no records
            continue
        try:
            if _origin_decoder.decode(batch[0][1]).origin == origin:
                return True
        except DECODE_ERRORS:
            continue
    return False
