"""Archived segments: sealed segments that hold only archived runs, moved out of the live
journal into ``<journal>/archive/``, compressed, with the hash chain at both ends kept.

``archive/manifest.json`` lists them in order (``Entry``); the live journal then begins at the
sequence after the last one. Moving one segment is three steps, each durable before the next:

1. its bytes, gzip-compressed, to ``archive/<segment>.gz`` (temp file, fsync, rename);
2. the manifest rewritten with its entry (temp file, fsync, rename);
3. under the journal's lock, the live segment unlinked.

A process killed between them leaves a compressed copy the manifest does not list (removed:
rolled back) or a listed segment still live (its copy checked byte for byte, then the live one
removed: finished); ``recover`` does either, and every reader in between reads the live
copy, so each record is in one place for whoever reads. ``prune`` deletes compressed copies
and marks their entries pruned: the entries stay, with their chain hashes, so the chain from
the archive into the live journal can still be followed where records remain.

gzip (zlib) is the compression: in the standard library, readable by ``zcat`` anywhere, and
fast to decompress (an archived run is read back whole to be replayed or exported); lzma
would save some more bytes at several times the cost.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from . import format as fmt
from . import hashchain
from .errors import CorruptRecord
from .fsutil import Where, create_temp, subdir, sync_dir, write_all

ARCHIVE_DIR = "archive"
MANIFEST = "manifest.json"
SUFFIX = ".gz"
LEVEL = 6
#: the largest archived segment read back (a segment is sealed at 16 MiB, or after one batch)
MAX_SEGMENT_BYTES = 1 << 30


class Entry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One archived segment: its sequences, times, size, file, chain at both ends, runs."""

    segment: str
    base: int
    last: int
    first_ts: int
    last_ts: int
    bytes: int
    file: str
    file_bytes: int
    chain_in: str
    chain_out: str
    runs: list[str]
    pruned: bool = False


class Manifest(msgspec.Struct, omit_defaults=True):
    version: int = 1
    #: the journal's identity (its first record's run id and time), kept once seq 1 is archived
    identity: str = ""
    segments: list[Entry] = []


_decoder = msgspec.json.Decoder(Manifest)
_encoder = msgspec.json.Encoder()


def _read(directory: Where, name: str) -> bytes | None:
    """The bytes of ``archive/<name>``, None if there is none. Neither the directory nor the
    file is followed through a link; CorruptRecord if either is not what runjournal makes."""
    opened = not isinstance(directory, int)
    top = None if opened else directory
    try:
        if opened:
            top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        adir = os.open(ARCHIVE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=adir)
        finally:
            os.close(adir)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CorruptRecord(f"{ARCHIVE_DIR}/{name}", 0, "is not a regular file in a directory (a link, or something else)") from None
        raise
    finally:
        if opened and top is not None:
            os.close(top)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptRecord(f"{ARCHIVE_DIR}/{name}", 0, "is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def manifest(directory: Where) -> Manifest:
    """The archive's manifest (empty without one), checked: entries in order from sequence 1,
    each named as a segment with its own file; CorruptRecord naming what is wrong."""
    data = _read(directory, MANIFEST)
    if data is None:
        return Manifest()
    try:
        found = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise CorruptRecord(f"{ARCHIVE_DIR}/{MANIFEST}", 0, f"the archive's manifest does not decode: {e}") from None
    expected = 1
    for e in found.segments:
        if fmt.segment_base(e.segment) != e.base or e.file != e.segment + SUFFIX or e.base != expected or e.last < e.base:
            raise CorruptRecord(f"{ARCHIVE_DIR}/{MANIFEST}", 0, f"entry {e.segment!r} does not continue the archive at sequence {expected}")
        expected = e.last + 1
    return found


def starts(directory: Where) -> set[int]:
    """The bases the live journal may begin at: 1, or an archived segment's (one being moved
    has a live copy still), or the sequence after the archive."""
    segments = manifest(directory).segments
    return {1, *(e.base for e in segments), segments[-1].last + 1 if segments else 1}


def holding(directory: Where, seq: int) -> Entry | None:
    """The archived segment still held that holds sequence ``seq``, if one does."""
    return next((e for e in manifest(directory).segments if e.base <= seq <= e.last and not e.pruned), None)


def held(directory: Where) -> set[str]:
    """The archived segments whose records the archive still holds."""
    return {e.segment for e in manifest(directory).segments if not e.pruned}


def write_manifest(dfd: int, found: Manifest) -> None:
    """Replace the manifest (temp file, fsync, rename, directory fsync) in ``archive/``."""
    with subdir(dfd, ARCHIVE_DIR, create=True) as adir:
        fd, tmp = create_temp(adir, MANIFEST)
        try:
            write_all(fd, _encoder.encode(found) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, MANIFEST, src_dir_fd=adir, dst_dir_fd=adir)
        sync_dir(adir)


def segment_bytes(directory: Where, entry: Entry) -> bytes:
    """An archived segment's bytes, decompressed; CorruptRecord if they are gone or damaged."""
    if entry.pruned:
        raise CorruptRecord(entry.segment, 0, "archived segment was pruned: its records were deleted")
    raw = _read(directory, entry.file)
    if raw is None:
        raise CorruptRecord(entry.segment, 0, f"archived copy {ARCHIVE_DIR}/{entry.file} is missing")
    if not 0 < entry.bytes <= MAX_SEGMENT_BYTES:
        raise CorruptRecord(entry.segment, 0, f"the manifest gives the archived segment {entry.bytes} bytes: refused")
    inflate = zlib.decompressobj(31)  # decompressed no further than the manifest says, plus one byte to tell
    try:
        data = inflate.decompress(raw, entry.bytes + 1)
    except zlib.error as e:
        raise CorruptRecord(entry.segment, 0, f"archived copy {ARCHIVE_DIR}/{entry.file} does not decompress: {e}") from None
    if len(data) != entry.bytes or inflate.unconsumed_tail:
        raise CorruptRecord(entry.segment, 0, f"archived copy holds {len(data)} bytes, the manifest says {entry.bytes}")
    return data


def open_archived(directory: Where, name: str) -> int | None:
    """A descriptor on the archived segment ``name``'s bytes (in memory), None if it is not archived."""
    entry = next((e for e in manifest(directory).segments if e.segment == name), None)
    return None if entry is None else open_entry(directory, entry)


def open_entry(directory: Where, entry: Entry) -> int:
    """A descriptor on the archived segment ``entry``'s bytes, decompressed in memory."""
    return _in_memory(entry.segment, segment_bytes(directory, entry))


def _in_memory(name: str, data: bytes) -> int:
    """A descriptor on ``data``, for the scanner (which reads descriptors)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    write_all(fd, data)
    return fd


def records(directory: Where, runs: set[str] | None = None) -> Iterator:
    """The records of every archived segment still held (of ``runs`` only, if given), in order."""
    from .reader import decode_record

    for entry in manifest(directory).segments:
        if entry.pruned or runs is not None and runs.isdisjoint(entry.runs):
            continue
        fd = open_entry(directory, entry)
        try:
            for batch in fmt.SegmentScanner(fd, entry.segment, fmt.HEADER_LEN).batches():
                for off, payload in batch:
                    rec = decode_record(payload, entry.segment, off)
                    if runs is None or rec.run_id in runs:
                        yield rec
        finally:
            os.close(fd)


def describe(fd: int, name: str, base: int, chain_in: bytes) -> tuple[Entry, bytes]:
    """The entry of the sealed segment open at ``fd`` (its records read, the chain carried on
    from ``chain_in``), and its bytes. CorruptRecord if it is not sealed and whole."""
    from .reader import decode_record

    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    fmt.decode_header(data[: fmt.HEADER_LEN], name)  # CorruptRecord if it is not a segment's
    scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN)
    chain, seq, runs, first_ts, last_ts = chain_in, base - 1, {}, 0, 0
    for batch in scanner.batches():
        if batch.__class__ is fmt.Hole:
            raise CorruptRecord(name, batch.offset, "a segment with a region set aside is not archived")
        for off, payload in batch:
            rec = decode_record(payload, name, off)
            seq += 1
            if rec.seq != seq:
                raise CorruptRecord(name, off, f"sequence {rec.seq} where {seq} was expected")
            runs[rec.run_id] = None
            first_ts = first_ts or rec.ts
            last_ts = rec.ts
            chain = hashchain.step(chain, payload)
    if scanner.end is None or scanner.end.state != "sealed" or seq < base:
        raise CorruptRecord(name, scanner.offset, "only a sealed segment with records is archived")
    entry = Entry(name, base, seq, first_ts, last_ts, size, name + SUFFIX, 0, chain_in.hex(), chain.hex(), list(runs))
    return entry, data


def store_copy(dfd: int, entry: Entry, data: bytes) -> Entry:
    """Step 1: the compressed copy in ``archive/``, durable; the entry with its size."""
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # 31: the gzip format (zlib.compress takes wbits from 3.11 on)
    packed = packer.compress(data) + packer.flush()
    with subdir(dfd, ARCHIVE_DIR, create=True) as adir:
        fd, tmp = create_temp(adir, entry.file)
        try:
            write_all(fd, packed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, entry.file, src_dir_fd=adir, dst_dir_fd=adir)
        sync_dir(adir)
    return msgspec.structs.replace(entry, file_bytes=len(packed))


def recover(dfd: int) -> list[str]:
    """Finish or roll back a move a killed process left: a listed segment still live is removed
    once its copy reads back the same; a copy or temp file the manifest does not list is
    removed. The caller holds the journal's lock. What was done, for people."""
    done = []
    found = manifest(dfd)
    listed = {e.file for e in found.segments if not e.pruned}  # a pruned one's copy may be left by a kill
    for e in found.segments:
        if e.pruned:
            continue
        try:
            fd, _ = fmt.open_segment(dfd, e.segment)
        except FileNotFoundError:
            continue
        try:
            live = os.pread(fd, os.fstat(fd).st_size + 1, 0)
        finally:
            os.close(fd)
        if segment_bytes(dfd, e) != live:
            raise CorruptRecord(e.segment, 0, "the live segment and its archived copy differ: neither is removed")
        os.unlink(e.segment, dir_fd=dfd)
        sync_dir(dfd)
        done.append(f"finished archiving {e.segment}")
    try:
        with subdir(dfd, ARCHIVE_DIR) as adir:
            for name in os.listdir(adir):
                stray = name.endswith(".tmp") or (name.endswith(SUFFIX) and name not in listed)
                if stray:
                    os.unlink(name, dir_fd=adir)
                    done.append(f"removed {ARCHIVE_DIR}/{name}, left by an archive or prune that did not finish")
            if done:
                sync_dir(adir)
    except FileNotFoundError:
        pass
    return done


def move(journal, before_seq: int, archived: set[str]) -> list[Entry]:
    """Move the live journal's oldest sealed segments to the archive while each holds only
    records of ``archived`` runs (and journal-level ones) and ends before ``before_seq`` (the
    ``runs_archived`` record that covers them stays live). Stops at the first that does not:
    the live journal stays one unbroken chain. Appends go on meanwhile; the journal's lock is
    held only to finish what a killed move left and to remove each live segment. One archiver
    at a time (a flock on ``archive/``)."""
    from . import chain

    moved: list[Entry] = []
    with exclusive(journal):
        with journal.hold() as dfd:
            recover(dfd)  # another archiver's leftovers, now that it is done
        found = manifest(dfd)
        chain_in = bytes.fromhex(found.segments[-1].chain_out) if found.segments else hashchain.GENESIS
        live = chain.segments(dfd)
        for (base, name), nxt in zip(live, live[1:]):
            fd, _ = fmt.open_segment(dfd, name)
            try:
                entry, data = describe(fd, name, base, chain_in)
            finally:
                os.close(fd)
            if entry.last >= before_seq or not set(entry.runs) <= archived | {""} or nxt[0] != entry.last + 1:
                break
            entry = store_copy(dfd, entry, data)
            if base == 1 and not found.identity:
                found = msgspec.structs.replace(found, identity=_identity(data))
            found = msgspec.structs.replace(found, segments=[*found.segments, entry])
            write_manifest(dfd, found)
            with journal.hold() as held:
                os.unlink(name, dir_fd=held)
                sync_dir(held)
            moved.append(entry)
            chain_in = bytes.fromhex(entry.chain_out)
    return moved


def prune(journal, names: set[str]) -> None:
    """Delete the archived copies of the segments ``names``: their entries are marked pruned
    first (a kill then leaves files the next ``recover`` removes), then the files go."""
    with exclusive(journal):  # no archiver moving segments meanwhile
        with journal.hold() as dfd:
            recover(dfd)
            found = manifest(dfd)
            going = [e for e in found.segments if e.segment in names and not e.pruned]
            entries = [msgspec.structs.replace(e, pruned=True) if e in going else e for e in found.segments]
            write_manifest(dfd, msgspec.structs.replace(found, segments=entries))
        with subdir(journal.dir_fd, ARCHIVE_DIR) as adir:
            for e in going:
                try:
                    os.unlink(e.file, dir_fd=adir)
                except FileNotFoundError:
                    pass
            sync_dir(adir)


@contextmanager
def exclusive(journal) -> Iterator[None]:
    """One archiver or pruner of a journal at a time: a flock on its ``archive/`` directory."""
    with subdir(journal.dir_fd, ARCHIVE_DIR, create=True) as adir:
        fcntl.flock(adir, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(adir, fcntl.LOCK_UN)


def _identity(data: bytes) -> str:
    """The journal's identity as ``FileStore.identity`` gives it: its first record's run and time."""
    from .reader import decode_record

    fd = _in_memory("identity", data)
    try:
        first = next((b for b in fmt.SegmentScanner(fd, "", fmt.HEADER_LEN).batches() if b), None)
    finally:
        os.close(fd)
    if not first:
        return ""
    rec = decode_record(first[0][1], "", first[0][0])
    return f"{rec.run_id}@{rec.ts}"


__all__ = ["ARCHIVE_DIR", "Entry", "Manifest", "manifest", "move", "prune", "records", "recover"]
