"""Setting damage in the middle of a journal aside, so that appends can go on after it.

A writer refuses to append to a journal it finds damaged (``JournalDamaged``): records it
wrote after the damage could not be read. ``verify --quarantine`` is the user's say-so to go
on. Under the journal lock it finds the first damaged batch, looks for the first batch after
it from which the segment reads clean, copies the bytes in between to ``quarantine/`` and
overwrites them with one hole frame of the same size (``format.Hole``), which says which
sequences were lost; then it looks again, until the chain reads clean. Nothing before the
damage is touched, records after it become readable again, and the writer records each region
as a ``region_quarantined`` event. (etcd and LevelDB repair by cutting at the damage or by
moving whole files aside; a hole keeps everything that still checks.)

What cannot be set aside this way is refused with the reason: a damaged segment header, a
journal that lost its first segment, a segment missing from the chain, a record written by a
newer runjournal.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from . import chain
from . import format as fmt
from .errors import CorruptRecord, NotQuarantinable, UnknownEventType
from .events import DECODE_ERRORS, RegionQuarantined, head_decoder, record_decoder
from .fsutil import Where, at, exists_at, subdir, sync_dir, write_temp
from .reader import decode_record

QUARANTINE_DIR = "quarantine"
MAX_REGIONS = 10_000


class Damage(NamedTuple):
    """The first damaged place of a chain: the batch it starts at, and the sequence it held."""

    segment: str
    start: int
    expected: int
    detail: str


def first_damage(directory: Where) -> Damage | None:
    """Walk the chain from its first record; the first damaged batch, or None if it reads clean
    (a torn tail at the very end is not damage: ``verify --repair`` cuts it)."""
    try:
        found = chain.start(directory)
    except CorruptRecord as e:
        raise NotQuarantinable(f"{e.segment}: {e.detail}") from None
    if found is None:
        return None
    seq, name = found
    while True:
        fd, _ = _open(directory, name)
        try:
            try:
                header = fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), name)
            except CorruptRecord as e:
                raise NotQuarantinable(f"{name}: {e.detail}") from None
            if header.base_seq != seq:
                raise NotQuarantinable(f"{name}: header says base sequence {header.base_seq}, expected {seq}")
            scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN)
            try:
                for batch in scanner.batches():
                    if batch.__class__ is fmt.Hole:
                        seq = fmt.hole_fits(batch, seq, name)
                        continue
                    first = seq
                    for off, payload in batch:
                        why = _bad_record(payload, name, off, seq)
                        if why:
                            return Damage(name, batch[0][0], first, why)
                        seq += 1
            except CorruptRecord as e:
                return Damage(name, scanner.offset, seq, e.detail)
            end = scanner.end
            following = chain.later(directory, name)
            if end.state == "tail":
                return Damage(name, end.offset, seq, end.detail) if following else None
            if end.state == "open":
                return Damage(name, end.offset, seq, "segment is not sealed but another follows it") if following else None
            nxt = chain.after_seal(name, end, seq)
            if not exists_at(directory, nxt):
                if following:
                    raise NotQuarantinable(f"segment {nxt} is missing: {name} was sealed at sequence {seq - 1}, and {following} follows")
                return None
            name = nxt
        finally:
            os.close(fd)


def _bad_record(payload, segment: str, offset: int, seq: int) -> str | None:
    """What is wrong with a record that passed its checksum, or None."""
    try:
        rec = decode_record(payload, segment, offset)
    except UnknownEventType as e:
        raise NotQuarantinable(f"{e}: it is not damage") from None
    except CorruptRecord as e:
        return e.detail
    if rec.seq != seq:
        return f"sequence {rec.seq} where {seq} was expected"
    return None


def _open(directory: Where, name: str, flags: int = os.O_RDONLY) -> tuple[int, int]:
    try:
        return fmt.open_segment(directory, name, flags)
    except CorruptRecord as e:
        raise NotQuarantinable(f"{name}: {e.detail}") from None


def set_aside(directory: Where, damage: Damage, known_last: int = 0) -> RegionQuarantined:
    """Copy the damaged region of ``damage.segment`` to ``quarantine/`` and overwrite it with a
    hole frame (fsynced); the event that records it. Under the journal lock. ``known_last``:
    the last sequence the head says was committed (0: unknown); a hole at the end of the
    newest segment never gives back a sequence at or below it, nor below one that a frame in
    the region still shows."""
    fd, size = _open(directory, damage.segment, os.O_RDWR)  # no O_APPEND: pwrite writes in place
    try:
        stop, next_seq = _resync(fd, damage.segment, damage.start, damage.expected, size)
        seals = False
        if stop is None:  # nothing after the damage reads clean: the hole runs to the end
            following = chain.later(directory, damage.segment)
            seals = following is not None
            if following:
                next_seq = fmt.segment_base(following)
            else:
                next_seq = max(damage.expected, known_last + 1, _highest_seq(fd, damage.start, size) + 1)
            stop = max(size, damage.start + fmt.HOLE_MIN)
        if next_seq < damage.expected:
            raise NotQuarantinable(
                f"{damage.segment} at byte {damage.start}: what follows the damage begins at sequence {next_seq}, "
                f"before {damage.expected}"
            )
        data = os.pread(fd, min(stop, size) - damage.start, damage.start)
        copy = _keep_copy(directory, f"{damage.segment}.{damage.start}.damaged", data)
        _mark_holed(fd, damage.segment)
        write_all_at(fd, fmt.encode_hole(stop - damage.start, damage.expected, next_seq, seals), damage.start)
        os.fsync(fd)
    finally:
        os.close(fd)
    return RegionQuarantined(
        segment=damage.segment,
        offset=damage.start,
        bytes_set_aside=len(data),
        first_lost_seq=damage.expected,
        next_seq=next_seq,
        copy=copy,
        detail=damage.detail,
    )


def _mark_holed(fd: int, segment: str) -> None:
    """Give the segment's header the format of a segment with a hole (``format.HOLE_FORMAT``),
    fsynced before the hole is written: a runjournal that does not know holes then refuses the
    segment instead of reading the hole as a seal."""
    header = fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), segment)
    if header.format != fmt.HOLE_FORMAT:
        write_all_at(fd, fmt.encode_header(header.base_seq, header.schema, fmt.HOLE_FORMAT), 0)
        os.fsync(fd)


def _highest_seq(fd: int, start: int, size: int) -> int:
    """The highest sequence of a frame between ``start`` and the end that still checks and
    decodes (0 if none): records the damage hides were committed with sequences up to it."""
    highest, offset = 0, start
    while (offset := _next_frame_head(fd, offset, size)) is not None:
        word = _frame_head(fd, offset)
        length = word & fmt.LEN_MASK
        if not word & fmt.SEAL and offset + fmt.FRAME_LEN + length <= size:
            _, _, pcrc = fmt.FRAME.unpack(os.pread(fd, fmt.FRAME_LEN, offset))
            payload = os.pread(fd, length, offset + fmt.FRAME_LEN)
            if fmt.crc32(payload) == pcrc:
                try:
                    highest = max(highest, head_decoder.decode(payload).seq)
                except DECODE_ERRORS:
                    pass
        offset += 1
    return highest


def unrecorded(directory: Where) -> list[RegionQuarantined]:
    """The holes of the journal that no ``region_quarantined`` record tells of (a quarantine
    stopped between writing a hole and recording it), as the records to append."""
    holes: list[tuple[str, fmt.Hole]] = []
    told: set[tuple[str, int]] = set()
    for name, batch in chain.first_batches(directory):
        if batch.__class__ is fmt.Hole:
            holes.append((name, batch))
            continue
        for _, payload in batch:
            try:
                event = record_decoder.decode(payload).event
            except DECODE_ERRORS:
                continue
            if isinstance(event, RegionQuarantined):
                told.add((event.segment, event.offset))
    found = []
    for name, hole in holes:
        if (name, hole.offset) in told:
            continue
        copy = f"{QUARANTINE_DIR}/{name}.{hole.offset}.damaged"
        found.append(
            RegionQuarantined(
                segment=name, offset=hole.offset, bytes_set_aside=hole.size, first_lost_seq=hole.first,
                next_seq=hole.next, copy=copy if exists_at(directory, copy) else "", detail="",
            )
        )  # fmt: skip
    return found


def write_all_at(fd: int, data: bytes, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _keep_copy(directory: Where, name: str, data: bytes) -> str:
    """The damaged bytes, kept under ``quarantine/``. A copy made by an earlier run that was
    cut short is kept as it is: it holds the bytes as they were before any hole."""
    with subdir(directory, QUARANTINE_DIR, create=True) as where:
        path, dfd = at(where, name)
        tmp = write_temp(where, name, data)
        try:
            os.link(tmp, path, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp, dir_fd=dfd)
        sync_dir(where)
    return f"{QUARANTINE_DIR}/{name}"


def _resync(fd: int, segment: str, start: int, expected: int, size: int) -> tuple[int | None, int]:
    """Where the segment reads clean again after the damaged batch at ``start``: (the offset of
    the first batch from which it does, its first sequence), or (None, 0).

    The frames of the damaged batch are followed by their heads (each checked) to the batch's
    last frame; where a head is damaged, every later byte is tried as a frame head, and the
    batch that frame belongs to is skipped too (it may have begun in the damage). A place is
    taken only if its batch is whole and its first record decodes with a sequence not below
    ``expected``; the region set aside is at least a hole frame long."""
    offset, sure = start, False
    while offset + fmt.FRAME_LEN <= size:
        word = _frame_head(fd, offset)
        if word is None or word & fmt.SEAL or offset + fmt.FRAME_LEN + (word & fmt.LEN_MASK) > size:
            break  # a damaged head, the segment's seal, or a frame past the end: no batch end known
        offset += fmt.FRAME_LEN + (word & fmt.LEN_MASK)
        if not word & fmt.CONTINUES:
            sure = True  # the damaged batch ends here, by heads that check
            break
    candidate = offset if sure else start + 1
    while candidate < size:
        if not sure:
            candidate = _next_frame_head(fd, candidate, size)
            if candidate is None:
                return None, 0
            after = _batch_end(fd, candidate, size)  # the batch this frame is in may have begun in the damage
            if after is None:
                candidate += 1
                continue
            place = after
        else:
            place = candidate
        while place - start < fmt.HOLE_MIN and place < size:
            nxt = _batch_end(fd, place, size)
            if nxt is None:
                break
            place = nxt
        first = _first_seq(fd, segment, place, size) if place - start >= fmt.HOLE_MIN else None
        if first is not None and first >= expected:
            return place, first
        if sure:
            sure = False
            candidate = start + 1
        else:
            candidate += 1
    return None, 0


def _frame_head(fd: int, offset: int) -> int | None:
    """The word of a frame head that checks at ``offset``, or None."""
    head = os.pread(fd, fmt.FRAME_LEN, offset)
    if len(head) < fmt.FRAME_LEN:
        return None
    word, wcrc, _ = fmt.FRAME.unpack(head)
    if wcrc != fmt.crc32(fmt.WORD.pack(word)) or (word & fmt.LEN_MASK) > fmt.MAX_PAYLOAD:
        return None
    return word


def _next_frame_head(fd: int, offset: int, size: int) -> int | None:
    """The first offset at or after ``offset`` where a frame head checks."""
    while offset + fmt.FRAME_LEN <= size:
        chunk = os.pread(fd, fmt.READ_CHUNK + fmt.FRAME_LEN, offset)
        for i in range(max(0, len(chunk) - fmt.FRAME_LEN + 1)):
            if chunk[i + 3] & 0x18:  # a length of 2**27 or more (bit 29 is LINK): no frame starts here
                continue
            word, wcrc = fmt.FRAME.unpack_from(chunk, i)[:2]
            if wcrc == fmt.crc32(chunk[i : i + 4]):
                return offset + i
        offset += max(1, len(chunk) - fmt.FRAME_LEN + 1)
    return None


def _batch_end(fd: int, offset: int, size: int) -> int | None:
    """The offset after the frame ending the batch that the frame at ``offset`` is part of,
    each frame's head and payload checked on the way; None if one does not check."""
    while True:
        word = _frame_head(fd, offset)
        if word is None:
            return None
        length = word & fmt.LEN_MASK
        end = offset + fmt.FRAME_LEN + length
        if end > size:
            return None
        _, _, pcrc = fmt.FRAME.unpack(os.pread(fd, fmt.FRAME_LEN, offset))
        if fmt.crc32(os.pread(fd, length, offset + fmt.FRAME_LEN)) != pcrc or word & fmt.SEAL:
            return None
        if not word & fmt.CONTINUES:
            return end
        offset = end


def _first_seq(fd: int, segment: str, offset: int, size: int) -> int | None:
    """The sequence of the first record of a whole batch at ``offset``; None if there is none
    (or it does not decode). At the segment's end, or at its seal, it is the end."""
    if offset >= size:
        return None
    scanner = fmt.SegmentScanner(fd, segment, offset, chunk=64 << 10)
    try:
        for batch in scanner.batches():
            if batch.__class__ is fmt.Hole:
                return batch.first
            try:
                return head_decoder.decode(batch[0][1]).seq
            except DECODE_ERRORS:
                return None
    except CorruptRecord:
        return None
    return None


__all__ = ["Damage", "NotQuarantinable", "QUARANTINE_DIR", "first_damage", "set_aside"]
