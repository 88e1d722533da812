"""Byte format of journal segments: header, record frames, and the frame scanner.

Layout (all integers little-endian; docs/journal-format.md is the reference):

    segment  = header frame*
    header   = magic "RJOURNAL" | u16 format | u16 schema | u32 header_len (32)
               | u64 base_seq | u32 reserved (0) | u32 crc32(bytes 0..28)
    frame    = u32 word | u32 crc32(word) | u32 crc32(payload) | payload
    word     = payload length (bits 0-28) | LINK (bit 29) | SEAL (bit 30) | CONTINUES (bit 31)

The word carries its own checksum so that a damaged length is told apart from a frame
that a crashed writer left unfinished.

A batch is a run of frames with CONTINUES set, closed by one without it; a batch is
committed only once its closing frame is complete. A SEAL frame (empty payload) ends a
segment; the next segment is named by the sequence number that follows.

In a chained segment (format 3, and 4 with a hole) every batch ends with a LINK frame, which
carries the journal's hash chain where the batch ends (``journal/hashchain.py``); a segment's
first frame is a LINK alone, the chain where the segment begins. Readers step over links;
``verify`` checks them.

A HOLE frame (SEAL and CONTINUES both set) is written only by ``verify --quarantine`` over a
damaged region, which it fills exactly: its payload says which sequences were lost and
whether the segment ends with it (``Hole``). Readers step over it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass

from .errors import CorruptRecord
from .fsutil import Where, at

MAGIC = b"RJOURNAL"
FORMAT_VERSION = 1
#: the format of a segment that holds a hole frame: written by ``verify --quarantine`` over the
#: header of the segment it sets a region of aside, so that a runjournal that does not know
#: holes refuses the segment instead of reading the hole as a seal
HOLE_FORMAT = 2
#: a segment whose batches carry the hash chain (LINK frames), and the same with a hole frame
CHAINED_FORMAT = 3
CHAINED_HOLE_FORMAT = 4
FORMATS = (FORMAT_VERSION, HOLE_FORMAT, CHAINED_FORMAT, CHAINED_HOLE_FORMAT)
#: the format a hole makes of a segment of each format
HOLED = {FORMAT_VERSION: HOLE_FORMAT, HOLE_FORMAT: HOLE_FORMAT, CHAINED_FORMAT: CHAINED_HOLE_FORMAT, CHAINED_HOLE_FORMAT: CHAINED_HOLE_FORMAT}
HEADER = struct.Struct("<8sHHIQI")  # magic, format, schema, header_len, base_seq, reserved
HEADER_LEN = 32
FRAME = struct.Struct("<III")  # word, crc32(word), crc32(payload)
FRAME_LEN = FRAME.size
WORD = struct.Struct("<I")
LEN_MASK = (1 << 29) - 1
LINK = 1 << 29
SEAL = 1 << 30
CONTINUES = 1 << 31
FLAGS = LINK | SEAL | CONTINUES
HOLE = SEAL | CONTINUES
HOLE_PAYLOAD = struct.Struct("<8sQQB")  # magic, first sequence lost, next sequence, ends the segment
HOLE_MAGIC = b"RJHOLE01"
HOLE_MIN = FRAME_LEN + HOLE_PAYLOAD.size  # the smallest region a hole can fill
MAX_PAYLOAD = 64 << 20
SEGMENT_RE = re.compile(r"^seg-(\d{20})\.rjl$")
READ_CHUNK = 1 << 20

crc32 = zlib.crc32


def segment_name(base_seq: int) -> str:
    return f"seg-{base_seq:020d}.rjl"


def encode_header(base_seq: int, schema: int, format_version: int = FORMAT_VERSION) -> bytes:
    head = HEADER.pack(MAGIC, format_version, schema, HEADER_LEN, base_seq, 0)
    return head + struct.pack("<I", crc32(head))


@dataclass(frozen=True)
class SegmentHeader:
    base_seq: int
    format: int
    schema: int

    @property
    def chained(self) -> bool:
        return self.format >= CHAINED_FORMAT


def decode_header(data: bytes, segment: str) -> SegmentHeader:
    """Parse a segment header, raising CorruptRecord (offset 0) if it is not one."""
    if len(data) < HEADER_LEN:
        raise CorruptRecord(segment, 0, f"segment header is {len(data)} bytes, expected {HEADER_LEN}")
    magic, fmt, schema, hlen, base_seq, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord(segment, 0, "not a runjournal segment (bad magic)")
    (crc,) = struct.unpack_from("<I", data, 28)
    if crc != crc32(data[:28]):
        raise CorruptRecord(segment, 0, "segment header checksum mismatch")
    if fmt not in FORMATS or hlen != HEADER_LEN:
        raise CorruptRecord(segment, 0, f"segment format {fmt} is not supported by this runjournal (knows {', '.join(map(str, FORMATS))})")
    return SegmentHeader(base_seq, fmt, schema)


_word_crcs: dict[int, int] = {}


def _word_crc(word: int) -> int:
    wcrc = crc32(WORD.pack(word))
    if len(_word_crcs) < 65536:
        _word_crcs[word] = wcrc
    return wcrc


def encode_frame(payload: bytes, continues: bool) -> bytes:
    word = len(payload) | CONTINUES if continues else len(payload)
    wcrc = _word_crcs.get(word)
    if wcrc is None:
        wcrc = _word_crc(word)
    return FRAME.pack(word, wcrc, crc32(payload)) + payload


def frame_starts(fd: int, offset: int) -> bool:
    """Whether a frame head that checks starts at ``offset`` (or the file ends there): what a
    batch boundary looks like. For a writer about to read forward from a place the head cache
    gave it, so that a stale cache never makes it take data for a torn tail."""
    head = os.pread(fd, FRAME_LEN, offset)
    if not head:
        return True
    if len(head) < FRAME_LEN:
        return False
    word, wcrc, _ = FRAME.unpack(head)
    return wcrc == _word_crc(word)


def encode_link(payload: bytes) -> bytes:
    """The LINK frame that closes a batch of a chained segment (``hashchain.link_payload``)."""
    word = LINK | len(payload)
    wcrc = _word_crcs.get(word)
    if wcrc is None:
        wcrc = _word_crc(word)
    return FRAME.pack(word, wcrc, crc32(payload)) + payload


def encode_linked_batch(payloads: list[bytes], link: bytes) -> bytes:
    """A batch of a chained segment: every record frame continues, the LINK frame closes it."""
    return b"".join([encode_frame(p, True) for p in payloads]) + encode_link(link)


def seal_frame() -> bytes:
    return FRAME.pack(SEAL, _word_crc(SEAL), crc32(b""))


class Hole(list):
    """What a scanner yields for a quarantined region: no records (an empty batch), but the
    sequences ``first`` to ``next - 1`` are gone, and the one after it is ``next``. With
    ``seals``, the region ran to the end of a segment that another follows: the chain goes on
    in the segment based at ``next``."""

    def __init__(self, offset: int, size: int, first: int, next_seq: int, seals: bool):
        super().__init__()
        self.offset, self.size, self.first, self.next, self.seals = offset, size, first, next_seq, seals


def hole_fits(hole: Hole, expected: int, segment: str) -> int:
    """The sequence after ``hole``, read where ``expected`` is the next sequence: CorruptRecord
    if the hole does not begin there (a hole says which sequences it stands for)."""
    if hole.first != expected:
        raise CorruptRecord(segment, hole.offset, f"hole frame for sequences from {hole.first} where {expected} was expected")
    return hole.next


def encode_hole(size: int, first: int, next_seq: int, seals: bool) -> bytes:
    """A hole frame of exactly ``size`` bytes (at least ``HOLE_MIN``): zeros pad its payload."""
    payload = HOLE_PAYLOAD.pack(HOLE_MAGIC, first, next_seq, int(seals)).ljust(size - FRAME_LEN, b"\0")
    word = HOLE | len(payload)
    return FRAME.pack(word, crc32(WORD.pack(word)), crc32(payload)) + payload


def encode_batch(payloads: list[bytes]) -> bytes:
    last = len(payloads) - 1
    return b"".join(encode_frame(p, i < last) for i, p in enumerate(payloads))


def segment_base(name: str) -> int | None:
    """The base sequence a segment's name gives, None if it is not a segment's name."""
    m = SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


def list_segments(directory: Where) -> list[tuple[int, str]]:
    """(base_seq, file name) of every segment in the directory (a path or a descriptor), oldest first."""
    found = []
    for name in os.listdir(directory):
        base = segment_base(name)
        if base is not None:
            found.append((base, name))
    found.sort()
    return found


def missing_start(base: int) -> str:
    """What is wrong with a journal whose lowest segment is not based at sequence 1.

    Nothing ever deletes a segment, so every journal starts at sequence 1."""
    return f"segment starts at sequence {base}, expected 1: the journal's first segment {segment_name(1)} is missing"


def open_segment(directory: Where, name: str, flags: int = os.O_RDONLY) -> tuple[int, int]:
    """Open a segment file; return (fd, size). A segment must be a regular file: anything else
    named like one (a directory, a FIFO) is CorruptRecord at offset 0, found without blocking."""
    path, dfd = at(directory, name)
    try:
        # a FIFO opened without O_NONBLOCK waits for a writer; a link is never followed
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        if e.errno not in (errno.EISDIR, errno.ENXIO, errno.ELOOP):  # a directory opened for writing; a socket; a link
            raise
        try:
            mode = os.stat(path, dir_fd=dfd, follow_symlinks=False).st_mode
        except OSError:
            raise e from None
    else:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                os.set_blocking(fd, True)  # as any file is read and written, on every file system
                return fd, st.st_size
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        mode = st.st_mode
    raise CorruptRecord(name, 0, f"is {_FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a segment file")


_FILE_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


@dataclass
class ScanEnd:
    """How a scan of one segment stopped.

    ``state`` is ``open`` (clean end, more may be appended), ``sealed`` (the segment is
    closed; continue with the next), or ``tail`` (an incomplete batch or frame starts at
    ``offset``: being written right now, or torn by a crash; only a lock holder may tell).
    """

    state: str
    offset: int
    detail: str = ""


class SegmentScanner:
    """Walks the committed batches of one segment from a byte offset, in large reads.

    ``batches()`` yields lists of ``(offset, payload)`` for complete, checksummed batches
    and then sets ``end``. Damage followed by more data raises CorruptRecord; damage that
    reaches the end of the file is reported as a tail (``end.state == "tail"``).
    """

    def __init__(self, fd: int, segment: str, offset: int, chunk: int = READ_CHUNK):
        self.fd = fd
        self.segment = segment
        self.offset = offset  # just after the last yielded batch
        self.end: ScanEnd | None = None
        self.chunk = chunk  # bytes per read: small for a look at one batch, large for a scan
        #: set to a list to be told of every LINK frame: (offset, payload bytes, records in its
        #: batch), appended before the batch is yielded; a link with no records (0) is a
        #: segment's start, or a place a reader resumed from between a batch and its link
        self.links: list[tuple[int, bytes, int]] | None = None
        #: the payload of the last LINK frame passed (None: none yet)
        self.link: bytes | None = None

    def batches(self):
        fd = self.fd
        READ_CHUNK = self.chunk  # noqa: N806 - the module's default, or the caller's
        buf = b""
        buf_start = self.offset  # file offset of buf[0]
        pos = 0
        batch: list[tuple[int, memoryview]] = []
        eof = False
        while True:
            if not eof:
                chunk = os.pread(fd, READ_CHUNK, buf_start + len(buf))
                if chunk:
                    # memoryviews already in ``batch`` keep the old buffer alive
                    buf = buf[pos:] + chunk
                    buf_start += pos
                    pos = 0
                else:
                    eof = True
            view = memoryview(buf)
            n = len(buf)
            known = _word_crcs
            unpack, check, frame_len, len_mask, flags = FRAME.unpack_from, crc32, FRAME_LEN, LEN_MASK, FLAGS  # locals: per frame
            while pos + frame_len <= n:
                word, wcrc, pcrc = unpack(buf, pos)
                # the checksums of common words are known: a dict lookup instead of a crc32
                if known.get(word) != wcrc:
                    if check(view[pos : pos + 4]) != wcrc:
                        self._damaged(buf_start + pos, "frame header checksum mismatch", header_ok=False, batch=batch)
                        return
                    if len(known) < 65536:
                        known[word] = wcrc
                length = word & len_mask
                end = pos + frame_len + length
                if length > MAX_PAYLOAD:
                    self._damaged(buf_start + pos, f"frame length {length} exceeds {MAX_PAYLOAD}", header_ok=False, batch=batch)
                    return
                if end > n:
                    break
                payload = view[pos + frame_len : end]
                if check(payload) != pcrc:
                    self._damaged(buf_start + pos, "payload checksum mismatch", header_ok=True, frame_end=buf_start + end, batch=batch)
                    return
                kind = word & flags
                if kind == LINK:  # the common case of a chained segment: a batch's end
                    link = payload.tobytes()
                    self.link = link
                    if self.links is not None:
                        self.links.append((buf_start + pos, link, len(batch)))
                    pos = end
                    self.offset = buf_start + pos
                    if batch:
                        yield batch
                        batch = []
                    continue
                if not kind or kind == CONTINUES:  # a record
                    batch.append((buf_start + pos, payload))
                    pos = end
                    if not kind:
                        self.offset = buf_start + pos
                        yield batch
                        batch = []
                    continue
                if word & SEAL:
                    if batch:
                        raise CorruptRecord(self.segment, buf_start + pos, "segment seal inside an unfinished batch")
                    if word & CONTINUES:
                        hole = self._hole(buf_start + pos, payload)
                        pos = end
                        self.offset = buf_start + pos
                        if hole.seals:
                            self.end = ScanEnd("sealed", buf_start + end)
                        yield hole
                        if hole.seals:
                            return
                        continue
                    self.offset = buf_start + end
                    self.end = ScanEnd("sealed", buf_start + end)
                    return
                raise CorruptRecord(self.segment, buf_start + pos, "chain link frame marked as continued")  # LINK | CONTINUES
            if eof:
                if batch:
                    self.end = ScanEnd("tail", batch[0][0], "unfinished batch at the end of the segment")
                elif pos < n:
                    self.end = ScanEnd("tail", buf_start + pos, "incomplete frame at the end of the segment")
                else:
                    self.end = ScanEnd("open", buf_start + pos)
                return

    def _hole(self, offset: int, payload: memoryview) -> Hole:
        if len(payload) < HOLE_PAYLOAD.size:
            raise CorruptRecord(self.segment, offset, "hole frame too short")
        magic, first, next_seq, seals = HOLE_PAYLOAD.unpack_from(payload)
        if magic != HOLE_MAGIC or next_seq < first or seals > 1:
            raise CorruptRecord(self.segment, offset, "hole frame does not describe a hole")
        return Hole(offset, FRAME_LEN + len(payload), first, next_seq, bool(seals))

    def _damaged(self, offset: int, detail: str, header_ok: bool, frame_end: int = 0, batch: list | None = None) -> None:
        """Classify a bad frame: a torn tail if nothing but zeros (or, for an intact header,
        nothing at all) follows it; corruption otherwise, which is raised. A tail starts with
        the unfinished batch the frame belongs to (``batch``: its frames read so far), so that
        cutting it never leaves the batch's first frames for the next batch to be read with."""
        size = os.fstat(self.fd).st_size
        if header_ok and frame_end >= size or _all_zero(self.fd, offset, size):
            self.end = ScanEnd("tail", batch[0][0] if batch else offset, detail)
            return
        raise CorruptRecord(self.segment, offset, detail)


def _all_zero(fd: int, start: int, stop: int) -> bool:
    while start < stop:
        chunk = os.pread(fd, min(READ_CHUNK, stop - start), start)
        if not chunk:
            return True
        if chunk.count(0) != len(chunk):
            return False
        start += len(chunk)
    return True
