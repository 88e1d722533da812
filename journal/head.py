"""The head (``<journal>/head2``): a shared, memory-mapped summary of the journal's end,
kept by lock holders. (``head`` is the first format's file, RJHEAD01: a writer of that
version may still be running beside this one during an upgrade, so this format has a name of
its own and neither disturbs the other's cache.)

It lets a writer learn what other writers appended in O(1) instead of re-reading their
records: the current segment, its committed end offset and the last global sequence, plus a
hash table of every run's last sequence (buckets of ``WAYS`` slots keyed by a 64-bit hash of
the run id). The table grows (doubling, into a new file renamed over the old one) instead of
forgetting runs, so the first append of a new run is one bucket look-up however many runs the
task has. It is a cache, never the truth: it is rebuilt from the segments whenever it does not
match them, whenever a checksum fails, and after a reboot (it records the boot id, since after
a power loss its pages may reach the disk in another order than the segments').

Layout (little-endian), every part a decision depends on under a check:

- 0: magic "RJHEAD02";
- 8: u64 segment base | u64 end offset | u64 last seq | u64 owner (random id of the writer
  that published them) | u64 check (CRC-32 of the four, tagged: a writer killed in the
  middle of updating them, or a flipped bit, leaves a head that does not check);
- 48: 16 bytes boot id;
- 64: u64 buckets (a power of two) | u64 complete (1: every run of the journal is in the
  table; 0: some may be missing, after a table that could not grow) | u64 check (CRC-32 of
  the two, tagged);
- 88: u64 synced mark: the last global sequence known to be on disk (``fdatasync``ed), in the
  high 48 bits, and the low 16 bits of a CRC-32 of it (see ``synced``): how writers in
  ``always`` share fdatasyncs (``journal.commit``). Zero (nothing known) in a new head, after
  a rebuild, a reboot or a cut tail;
- 96: u64 segment base | u64 end offset | u64 running CRC-32 of the segment's bytes from the
  end of its header to that end | u64 check (CRC-32 of the three, tagged): what a writer
  opening the journal compares the current segment with, so that damage to records already
  written is found before anything is appended after it (published with the header, before it);
- 128: ``buckets`` buckets of 256 bytes: ``WAYS`` slots of (u64 key, u64 run seq, u64 global
  seq of that write), then u64 check (CRC-32 of the slots, seeded with the bucket's number,
  tagged), then 8 zero bytes. An empty slot is all zeros; an empty bucket is all zeros.

A run may be in any of four buckets: ``key mod buckets``, the next one, ``(key >> 32) mod
buckets`` and the next one; it is stored in the one of them with the fewest runs, and when all
four are full the table doubles. A look-up checks every bucket it reads.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import zlib

from .fsutil import create_temp, grouped, parent_stat, preallocate, shared

MAGIC = b"RJHEAD02"
SUPERSEDED = b"RJHEAD--"  # what a grown head's old file begins with
HEADER = struct.Struct("<QQQQQ")
HEADER_VALUES = struct.Struct("<QQQQ")
HEADER_AT = 8
HEADER_END = HEADER_AT + HEADER.size
BOOT_AT = 48
TABLE_HEADER = struct.Struct("<QQQ")
TABLE_HEADER_AT = 64
TABLE_TAG = 0x524A_5442 << 32
SYNCED_AT = 88
SYNCED_LIMIT = 1 << 48  # sequences at or past it are never marked (each writer syncs its own)
SEGMENT_CHECK = struct.Struct("<QQQQ")
SEGMENT_CHECK_AT = 96
SEGMENT_TAG = 0x524A_5343 << 32
TABLE_AT = 128
WAYS = 10
SLOT = struct.Struct("<QQQ")
SLOTS = struct.Struct("<" + "QQQ" * WAYS)
BUCKET_SIZE = 256
CHECK_AT = SLOTS.size  # within a bucket
BUCKET_TAG = 0x524A_4B54 << 32
INITIAL_BUCKETS = 1024
#: the size of a new head (the table grows from there)
SIZE = TABLE_AT + INITIAL_BUCKETS * BUCKET_SIZE


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


def bucket_check(slots: bytes, index: int) -> int:
    """The check of a bucket's slots (``index``: the bucket's number, so a bucket copied to
    the wrong place does not check)."""
    return BUCKET_TAG | zlib.crc32(slots, index & 0xFFFF_FFFF)


def candidates(key: int, buckets: int) -> tuple[int, ...]:
    """The buckets a run may be in (see the module docstring)."""
    mask = buckets - 1
    a, b = key & mask, (key >> 32) & mask
    return tuple(dict.fromkeys((a, (a + 1) & mask, b, (b + 1) & mask)))


def header_check(base: int, end: int, last: int, owner: int) -> int:
    """The check of the header's four values: CRC-32 (any change of a few bits shows), tagged."""
    return BUCKET_TAG | zlib.crc32(HEADER_VALUES.pack(base, end, last, owner))


def table_check(buckets: int, complete: int) -> int:
    return TABLE_TAG | zlib.crc32(HEADER_VALUES.pack(buckets, complete, 0, 0))


def _synced_check(seq: int) -> int:
    return zlib.crc32(seq.to_bytes(8, "little")) & 0xFFFF


def size_for(buckets: int) -> int:
    return TABLE_AT + buckets * BUCKET_SIZE


class HeadDamaged(Exception):
    """A part of the head failed its check: the writer rebuilds it from the segments."""


class Head:
    """The mmap of ``<journal>/head`` (``dir_fd``: the journal directory). Only a lock holder writes it."""

    def __init__(self, name: str, dir_fd: int | None = None):
        self._name, self._dir_fd = name, dir_fd
        self._open()

    def _open(self) -> None:
        fd = os.open(self._name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self._dir_fd)
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size == 0 and st.st_uid == os.geteuid() and shared(parent_stat(self._name, self._dir_fd)):
                os.fchmod(fd, grouped(0o644))  # made here, in a group's shared journal: every member writes it
            if size < SIZE:
                os.ftruncate(fd, SIZE)  # new: zeros are "unknown", and the writer rebuilds it
                size = SIZE
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._mm, self._inode = mm, (st.st_dev, st.st_ino)
        self._slots: dict[str, tuple[int, int, int]] = {}  # run id -> (key, bucket, slot) last seen
        self._buckets = 0  # known once read under the lock (``read``), or made (``clear``)

    def close(self) -> None:
        self._mm.close()

    def _table(self) -> tuple[int, int] | None:
        """(buckets, complete) if the table header checks and fits the mapping, else None."""
        mm = self._mm
        if mm[:8] != MAGIC:
            return None
        buckets, complete, check = TABLE_HEADER.unpack_from(mm, TABLE_HEADER_AT)
        if check != table_check(buckets, complete) or buckets < 1 or buckets & (buckets - 1) or complete > 1 or size_for(buckets) > len(mm):
            return None
        return buckets, complete

    def replaced(self) -> bool:
        """Whether the file named ``head`` is no longer the one mapped (another writer grew it)."""
        try:
            st = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def reopen(self) -> None:
        """Map the file named ``head`` now (created if it is missing). The old mapping is let go
        only once the new one is made: a failure leaves this head as it was (OSError)."""
        old = self._mm
        self._open()
        old.close()

    def valid_for_this_boot(self) -> bool:
        mm = self._mm
        return mm[:8] == MAGIC and mm[BOOT_AT : BOOT_AT + 16] == BOOT_ID and self._table() is not None

    def read(self) -> tuple[int, int, int, int] | None:
        """(segment base, end offset, last seq, owner), or None if the head does not check
        (a writer died while updating it, or it was damaged). Under the lock: it also takes
        the table's size as it is now, for the look-ups and stores that follow."""
        table = self._table()
        if table is None:
            return None
        if table[0] != self._buckets:
            self._buckets = table[0]
            self._slots.clear()
        base, end, last, owner, check = HEADER.unpack_from(self._mm, HEADER_AT)
        if check != header_check(base, end, last, owner):
            return None
        return base, end, last, owner

    def write(self, base: int, end: int, last: int, owner: int, crc: int) -> bytes:
        """Store the segment's check, then the header; returns the head's first bytes as they
        are now, for ``unchanged``."""
        check = SEGMENT_TAG | zlib.crc32(SEGMENT_CHECK.pack(base, end, crc, 0))
        SEGMENT_CHECK.pack_into(self._mm, SEGMENT_CHECK_AT, base, end, crc, check)
        data = HEADER.pack(base, end, last, owner, header_check(base, end, last, owner))
        self._mm[HEADER_AT:HEADER_END] = data
        return MAGIC + data

    def segment_crc(self, base: int, end: int) -> int | None:
        """The running CRC-32 of segment ``base`` up to ``end``, if the head holds one for
        exactly that end and it checks; None otherwise (the caller reads the segment)."""
        b, e, crc, check = SEGMENT_CHECK.unpack_from(self._mm, SEGMENT_CHECK_AT)
        if (b, e) != (base, end) or check != SEGMENT_TAG | zlib.crc32(SEGMENT_CHECK.pack(b, e, crc, 0)):
            return None
        return crc

    def synced(self) -> int:
        """The last global sequence a writer of this journal made durable, as far as the head
        knows (0: nothing known). Read without the lock: the mark is one aligned 8-byte word,
        and a value that does not check (a damaged head) counts as nothing."""
        v = int.from_bytes(self._mm[SYNCED_AT : SYNCED_AT + 8], "little")
        seq = v >> 16
        return seq if v & 0xFFFF == _synced_check(seq) else 0

    def mark_synced(self, seq: int) -> None:
        """Say that every record up to ``seq`` is on disk. Without the lock: two writers racing
        may move the mark back, which only costs a later writer a sync of its own."""
        if 0 < seq < SYNCED_LIMIT and seq > self.synced():
            self._mm[SYNCED_AT : SYNCED_AT + 8] = ((seq << 16) | _synced_check(seq)).to_bytes(8, "little")

    def forget_synced(self) -> None:
        """Forget the mark: sequences past the journal's end are to be written again (a cut tail)."""
        self._mm[SYNCED_AT : SYNCED_AT + 8] = bytes(8)

    def written_through(self, base: int, at_least: int) -> int:
        """The last sequence published in segment ``base`` (or ``at_least`` if the head is now in
        another segment or does not check), read without the lock: everything up to it was
        written to that segment before this read, so an fdatasync of it begun after the read covers it."""
        b, end, last, owner, check = HEADER.unpack_from(self._mm, HEADER_AT)
        if b != base or check != header_check(b, end, last, owner):
            return at_least
        return max(last, at_least)

    def invalidate(self) -> None:
        """Make the header fail its check: every writer rebuilds the head before trusting it."""
        HEADER.pack_into(self._mm, HEADER_AT, 0, 0, 0, 0, 1)

    def unchanged(self, data: bytes | None) -> bool:
        """The head still begins with ``data`` (what ``write`` returned): nobody has written it since."""
        return self._mm[:HEADER_END] == data

    def clear(self) -> None:
        """Forget everything and stamp the head for this boot (before a rebuild from the segments).
        The table keeps its size: a rebuild of a big journal need not grow it again."""
        mm = self._mm
        buckets = self._buckets or (len(mm) - TABLE_AT) // BUCKET_SIZE
        buckets = 1 << (max(buckets, 1).bit_length() - 1)  # a power of two that fits the mapping
        mm[:] = bytes(len(mm))
        mm[BOOT_AT : BOOT_AT + 16] = BOOT_ID
        self._set_table(buckets, 1)
        mm[:8] = MAGIC
        self._slots.clear()

    def _set_table(self, buckets: int, complete: int) -> None:
        TABLE_HEADER.pack_into(self._mm, TABLE_HEADER_AT, buckets, complete, table_check(buckets, complete))
        self._buckets = buckets

    def _bucket(self, index: int, strict: bool) -> tuple | None:
        """A bucket's slots (a flat tuple), or None if it does not check (HeadDamaged if ``strict``)."""
        at = TABLE_AT + index * BUCKET_SIZE
        data = self._mm[at : at + BUCKET_SIZE]
        check = int.from_bytes(data[CHECK_AT : CHECK_AT + 8], "little")
        if check != bucket_check(data[:CHECK_AT], index) and any(data):
            if strict:
                raise HeadDamaged(f"bucket {index} at byte {at}")
            return None
        return SLOTS.unpack_from(data)

    def _find(self, run_id: str, strict: bool) -> tuple[int, int, int, int, int]:
        """(key, bucket, slot or -1, run seq, global seq) of the run. ``strict`` (a look-up):
        HeadDamaged if a bucket read does not check; otherwise such a bucket is passed over."""
        cached = self._slots.get(run_id)
        if cached is not None:
            key, b, w = cached
            slots = self._bucket(b, strict)
            if slots is not None and slots[3 * w] == key:
                return key, b, w, slots[3 * w + 1], slots[3 * w + 2]
        else:
            key = run_key(run_id)
        for b in candidates(key, self._buckets):
            slots = self._bucket(b, strict)
            if slots is None:
                continue
            for w in range(WAYS):
                if slots[3 * w] == key:
                    if len(self._slots) < 100_000:
                        self._slots[run_id] = (key, b, w)
                    return key, b, w, slots[3 * w + 1], slots[3 * w + 2]
        return key, -1, -1, 0, 0

    def lookup(self, run_id: str, last_seq: int) -> int | None:
        """The run's last sequence; 0 if it has none; None if the table cannot tell (it could
        not grow once and lost track of some runs: the caller reads the segments).
        HeadDamaged if a part of the table it reads does not check."""
        table = self._table()
        if table is None or table[0] != self._buckets:
            raise HeadDamaged("table header")
        _, b, w, rs, g = self._find(run_id, strict=True)
        if w >= 0:
            if g > last_seq:  # a slot newer than the head's end: the head is not what it says
                raise HeadDamaged(f"bucket {b} holds a write past the journal's end")
            return rs
        return 0 if table[1] else None

    def reserve(self) -> None:
        """Give the mapped file real disk blocks (see ``fsutil.preallocate``): under the lock,
        for a head made by someone who did not."""
        preallocate(self._name, len(self._mm), dir_fd=self._dir_fd)

    def store(self, run_id: str, run_seq: int, seq: int) -> None:
        if not self._buckets:  # no table known (never read under the lock): nothing it says may stand
            self.invalidate()
            return
        key, b, w, _, _ = self._find(run_id, strict=False)
        if w < 0:
            b, w = self._free(key)
            if w < 0:
                self._grow()
                b, w = self._free(key)
            if w < 0:  # the table could not grow: forget the run written longest ago
                b = candidates(key, self._buckets)[0]
                slots = self._bucket(b, strict=False) or (0,) * (3 * WAYS)
                w = min(range(WAYS), key=lambda i: slots[3 * i + 2])
                self._set_table(self._buckets, 0)
        slots = self._bucket(b, strict=False)
        if slots is None:  # damaged: never bless it with a new check; the next look-up rebuilds
            TABLE_HEADER.pack_into(self._mm, TABLE_HEADER_AT, 0, 0, 1)  # no longer checks
            self.invalidate()
            return
        slots = list(slots)
        slots[3 * w : 3 * w + 3] = (key, run_seq, seq)
        data = SLOTS.pack(*slots)
        at = TABLE_AT + b * BUCKET_SIZE
        self._mm[at : at + CHECK_AT + 8] = data + bucket_check(data, b).to_bytes(8, "little")
        if len(self._slots) < 100_000:
            self._slots[run_id] = (key, b, w)

    def _free(self, key: int) -> tuple[int, int]:
        """(bucket, slot) where a new run goes: a free slot of its least full candidate; (-1, -1)."""
        best = (-1, -1, WAYS)
        for b in candidates(key, self._buckets):
            slots = self._bucket(b, strict=False)
            if slots is None:
                continue
            used = WAYS - slots[0::3].count(0)
            if used < best[2]:
                best = (b, slots[0::3].index(0), used)
        return best[0], best[1]

    def _grow(self) -> None:
        """Double the table into a new file, renamed over ``head`` (under the journal lock).

        Other writers find the name on another file when they next catch up, and map it.
        Where the new file cannot be made (a full disk), the table stays as it is. A bucket
        that does not check is left behind, and the new table says it is incomplete."""
        old, buckets = self._mm, self._buckets
        complete = self._table()[1] if self._table() else 0
        entries = []
        for b in range(buckets):
            slots = self._bucket(b, strict=False)
            if slots is None:
                complete = 0
                continue
            entries += [slots[i : i + 3] for i in range(0, 3 * WAYS, 3) if slots[i]]
        while True:  # doubling once is nearly always enough; a crowded table doubles again
            buckets *= 2
            grown = _filled(entries, buckets)
            if grown is not None:
                break
        size = size_for(buckets)
        directory = self._dir_fd if self._dir_fd is not None else os.path.dirname(self._name) or "."
        try:
            fd, tmp = create_temp(directory, os.path.basename(self._name), os.O_RDWR)
        except OSError:
            return
        try:
            try:
                preallocate(tmp, size, dir_fd=self._dir_fd)  # blocks reserved: no SIGBUS on a full disk
                os.ftruncate(fd, size)
                mm = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            mm[:TABLE_HEADER_AT] = old[:TABLE_HEADER_AT]
            mm[SEGMENT_CHECK_AT:TABLE_AT] = old[SEGMENT_CHECK_AT:TABLE_AT]
            TABLE_HEADER.pack_into(mm, TABLE_HEADER_AT, buckets, complete, table_check(buckets, complete))
            mm[TABLE_AT:size] = grown
            os.replace(tmp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            st = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
        except OSError:
            try:
                os.unlink(tmp, dir_fd=self._dir_fd)
            except OSError:
                pass
            return
        # the old file is no one's head now: a writer still mapping it finds its first bytes
        # changed (``unchanged``), and so takes the slow path, which maps the new one
        old[:8] = SUPERSEDED
        old.close()
        self._mm, self._inode, self._buckets = mm, (st.st_dev, st.st_ino), buckets
        self._slots.clear()


def _filled(entries: list[tuple[int, int, int]], buckets: int) -> bytearray | None:
    """A table of ``buckets`` holding the entries, each placed as ``store`` would; None if
    some run finds all its candidate buckets full."""
    used = [0] * buckets
    rows: list[list] = [[] for _ in range(buckets)]
    for entry in entries:
        b = min(candidates(entry[0], buckets), key=used.__getitem__)
        if used[b] == WAYS:
            return None
        used[b] += 1
        rows[b].extend(entry)
    table = bytearray(buckets * BUCKET_SIZE)
    for b, row in enumerate(rows):
        if row:
            data = SLOTS.pack(*row, *(0,) * (3 * WAYS - len(row)))
            at = b * BUCKET_SIZE
            table[at : at + CHECK_AT + 8] = data + bucket_check(data, b).to_bytes(8, "little")
    return table
