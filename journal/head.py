"""The head: a shared, memory-mapped summary of the journal's end, kept by lock holders.

It lets a writer learn what other writers appended in O(1) instead of re-reading their
records: the current segment, its committed end offset and the last global sequence,
plus a table of each run's last sequence (4-way buckets keyed by a 64-bit hash of the run
id). It is a cache, never the truth: it is rebuilt from the segments whenever it does not
match them, whenever its checksum fails, and after a reboot (it records the boot id, since
after a power loss its pages may reach the disk in another order than the segments').

Layout (little-endian): magic "RJHEAD01" | u64 segment base | u64 end offset | u64 last
seq | u64 owner (random id of the writer that published them) | u64 check (the four xor-ed
with a constant: a writer killed in the middle of updating them leaves a head that does
not check) | 16 bytes boot id;
then BUCKETS x WAYS slots of (u64 key, u64 run seq, u64 global seq of that write);
then BUCKETS bytes of "a run was evicted from this bucket" flags.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct

MAGIC = b"RJHEAD01"
HEADER = struct.Struct("<QQQQQ")
HEADER_AT = 8
HEADER_END = HEADER_AT + HEADER.size
BOOT_AT = 48
CHECK = 0x52_4A_48_45_41_44_30_31
TABLE_AT = 64
WAYS = 4
SLOT = struct.Struct("<QQQ")
BUCKET = struct.Struct("<" + "QQQ" * WAYS)
BUCKETS = 4096
FLAGS_AT = TABLE_AT + BUCKETS * BUCKET.size
SIZE = FLAGS_AT + BUCKETS


def _boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return bytes.fromhex(f.read().strip().replace("-", ""))[:16].ljust(16, b"\0")
    except (OSError, ValueError):
        return b"\0" * 16


BOOT_ID = _boot_id()


def run_key(run_id: str) -> int:
    key = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "little")
    return key or 1


class Head:
    """The mmap of ``<journal>/head``. Only a lock holder writes it."""

    def __init__(self, path: str, dir_fd: int | None = None):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            if os.fstat(fd).st_size != SIZE:
                os.ftruncate(fd, SIZE)  # new, or from another layout: zeros are "unknown"
            self._mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._slots: dict[str, tuple[int, int]] = {}  # run id -> (key, offset of its slot last seen)

    def close(self) -> None:
        self._mm.close()

    def valid_for_this_boot(self) -> bool:
        mm = self._mm
        return mm[:8] == MAGIC and mm[BOOT_AT : BOOT_AT + 16] == BOOT_ID

    def read(self) -> tuple[int, int, int, int] | None:
        """(segment base, end offset, last seq, owner), or None if a writer died while updating them."""
        base, end, last, owner, check = HEADER.unpack_from(self._mm, HEADER_AT)
        if check != base ^ end ^ last ^ owner ^ CHECK:
            return None
        return base, end, last, owner

    def write(self, base: int, end: int, last: int, owner: int) -> bytes:
        """Store the header; returns its bytes, for ``unchanged``."""
        data = HEADER.pack(base, end, last, owner, base ^ end ^ last ^ owner ^ CHECK)
        self._mm[HEADER_AT:HEADER_END] = data
        return data

    def unchanged(self, data: bytes | None) -> bool:
        """The header is still ``data`` (what ``write`` returned): nobody has written it since."""
        return self._mm[HEADER_AT:HEADER_END] == data

    def clear(self) -> None:
        """Forget everything and stamp the head for this boot (before a rebuild from the segments)."""
        mm = self._mm
        mm[:] = bytes(SIZE)
        mm[BOOT_AT : BOOT_AT + 16] = BOOT_ID
        mm[:8] = MAGIC
        self._slots.clear()

    def _slot(self, run_id: str) -> tuple[int, int, int, int]:
        """(key, slot offset or -1, run seq, global seq) for the run, searching its bucket."""
        cached = self._slots.get(run_id)
        if cached is not None:
            key, off = cached
            k, rs, g = SLOT.unpack_from(self._mm, off)
            if k == key:
                return key, off, rs, g
        else:
            key = run_key(run_id)
        at = TABLE_AT + (key % BUCKETS) * BUCKET.size
        slots = BUCKET.unpack_from(self._mm, at)
        for w in range(WAYS):
            if slots[3 * w] == key:
                off = at + w * SLOT.size
                if len(self._slots) < 100_000:
                    self._slots[run_id] = (key, off)
                return key, off, slots[3 * w + 1], slots[3 * w + 2]
        return key, -1, 0, 0

    def lookup(self, run_id: str, last_seq: int) -> int | None:
        """The run's last sequence; 0 if it has none; None if the table cannot tell."""
        key, off, rs, g = self._slot(run_id)
        if off >= 0:
            # a slot newer than the head was left by a writer that died before publishing
            return rs if g <= last_seq else None
        return None if self._mm[FLAGS_AT + key % BUCKETS] else 0

    def store(self, run_id: str, run_seq: int, seq: int) -> None:
        key, off, _, _ = self._slot(run_id)
        if off < 0:
            bucket = key % BUCKETS
            at = TABLE_AT + bucket * BUCKET.size
            slots = BUCKET.unpack_from(self._mm, at)
            empty = [w for w in range(WAYS) if slots[3 * w] == 0]
            if empty:
                w = empty[0]
            else:  # evict the run written longest ago; lookups of it go to the segments
                w = min(range(WAYS), key=lambda i: slots[3 * i + 2])
                self._mm[FLAGS_AT + bucket] = 1
            off = at + w * SLOT.size
            if len(self._slots) < 100_000:
                self._slots[run_id] = (key, off)
        SLOT.pack_into(self._mm, off, key, run_seq, seq)
