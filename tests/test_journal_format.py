"""The segment format as docs/journal-format.md describes it, byte for byte."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import threading
import zlib
from pathlib import Path

import msgspec
import pytest

from runjournal.journal import Item, Journal, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt

RUN = "2025-12-01T09-37-11-576Z-1a60ebea"
TS = 1764581831576000000  # 2025-12-01T09:37:11.576Z

# docs/journal-format.md section 9, "Worked example: one record" (its xxd dump)
WORKED_EXAMPLE = bytes.fromhex(
    """
    524a 4f55 524e 414c 0300 0100 2000 0000
    0100 0000 0000 0000 0000 0000 6cad e606
    2000 0020 ea50 18ba ad55 0a19 0000 0000
    0000 0000 0000 0000 0000 0000 0000 0000
    0000 0000 0000 0000 0000 0000 5a00 0080
    fab3 4c68 9f76 731c 9601 d921 3230 3235
    2d31 322d 3031 5430 392d 3337 2d31 312d
    3537 365a 2d31 6136 3065 6265 6101 cf18
    7d0d d3a0 3216 0083 a474 7970 65ad 7374
    6167 655f 7374 6172 7465 64a5 696e 6465
    7801 a873 7461 6765 5f69 64a5 6275 696c
    64c0 2000 0020 ea50 18ba 9e54 fc05 a470
    bb85 28dd 86fc 3a8c 3f7c 6154 a4f1 2bd6
    765a 888c 8140 f8cf abcf 9ebb 94ce
    """
)


def test_one_record_is_written_exactly_as_documented(journal_dir: Path):
    with Journal(str(journal_dir)) as j:
        j.append_batch([Item(RUN, ev.StageStarted(index=1, stage_id="build"), TS)])
    assert len(WORKED_EXAMPLE) == 222
    assert (journal_dir / fmt.segment_name(1)).read_bytes() == WORKED_EXAMPLE


def test_seal_frame_is_the_documented_twelve_bytes():
    assert fmt.seal_frame() == bytes.fromhex("000000408c9e985700000000")


def test_header_fields_and_checksum():
    header = fmt.encode_header(base_seq=12345, schema=7)
    magic, version, schema, hlen, base, reserved = struct.unpack_from("<8sHHIQI", header)
    assert (magic, version, schema, hlen, base, reserved) == (b"RJOURNAL", 1, 7, 32, 12345, 0)
    assert struct.unpack_from("<I", header, 28)[0] == zlib.crc32(header[:28])
    assert fmt.decode_header(header, "s").base_seq == 12345


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda h: h[:31], "segment header is 31 bytes, expected 32"),
        (lambda h: b"XJOURNAL" + h[8:], "bad magic"),
        (lambda h: h[:16] + b"\x02" + h[17:], "segment header checksum mismatch"),
        (lambda h: _rechecksum(h[:8] + b"\x05\x00" + h[10:28]), "segment format 5 is not supported"),
    ],
)
def test_a_bad_header_is_corruption_at_offset_zero(damage, detail):
    with pytest.raises(fmt.CorruptRecord, match=detail) as info:
        fmt.decode_header(damage(fmt.encode_header(1, 1)), "seg-x.rjl")
    assert (info.value.segment, info.value.offset) == ("seg-x.rjl", 0)


def _rechecksum(first28: bytes) -> bytes:
    return first28 + struct.pack("<I", zlib.crc32(first28))


def decoded(batch: list[bytes], expect: int):
    """A committed batch's records, each carrying the sequence expected next."""
    for raw in batch:
        rec = msgspec.msgpack.decode(raw)
        assert rec[0] == expect
        expect += 1
        yield rec


def read_as_documented(directory: Path):
    """A reader written from docs/journal-format.md alone: struct, zlib, hashlib and generic
    msgpack. It checks the hash chain as the page describes it, too."""
    names = sorted(n for n in os.listdir(directory) if fmt.SEGMENT_RE.match(n))
    name, expect, chain = names[0], int(names[0][4:24]), bytes(32)
    while True:
        data = (directory / name).read_bytes()
        assert data[:8] == b"RJOURNAL" and zlib.crc32(data[:28]) == struct.unpack_from("<I", data, 28)[0]
        assert struct.unpack_from("<Q", data, 16)[0] == expect
        chained = struct.unpack_from("<H", data, 8)[0] in (3, 4)
        pos, batch, sealed = 32, [], False
        while pos + 12 <= len(data):
            word, wcrc, pcrc = struct.unpack_from("<III", data, pos)
            assert zlib.crc32(data[pos : pos + 4]) == wcrc
            payload = data[pos + 12 : pos + 12 + (word & 0x1FFFFFFF)]
            assert zlib.crc32(payload) == pcrc
            at, pos = pos, pos + 12 + len(payload)
            if word & 0x40000000:
                assert not batch and pos == len(data), "nothing follows a seal"
                sealed = True
                break
            if word & 0x20000000:  # LINK: closes a batch, or begins a segment
                assert chained and not word & 0x80000000
                if not batch:
                    assert at == 32 and payload == chain, "a segment begins with the chain as it stands"
                for i, raw in enumerate(batch):
                    chain = hashlib.blake2b(chain + raw, digest_size=32).digest()
                    assert chain.startswith(payload[8 * i : 8 * i + 8] if i < len(batch) - 1 else payload[-32:])
                yield from decoded(batch, expect)
                expect, batch = expect + len(batch), []
                continue
            batch.append(payload)
            if not word & 0x80000000:
                assert not chained, "a chained segment closes every batch with a link"
                yield from decoded(batch, expect)
                expect, batch = expect + len(batch), []
        assert not batch and pos == len(data)
        if not sealed:
            return
        name = f"seg-{expect:020d}.rjl"


def test_a_reader_written_from_the_docs_reads_what_the_journal_wrote(journal_dir: Path):
    with Journal(str(journal_dir), durability="none", segment_bytes=600) as j:
        for i in range(12):
            j.append(f"run-{i % 2}", ev.OutputChunk(index=i, stream="stdout", data=bytes([i]) * 40))
            if i % 4 == 0:
                j.append_batch([Item("run-2", ev.Heartbeat()), Item("run-0", ev.StageStarted(index=i, stage_id="s"))])
    assert len(fmt.list_segments(str(journal_dir))) > 2
    ours = list(read_records(str(journal_dir)))
    theirs = list(read_as_documented(journal_dir))
    assert len(theirs) == len(ours) == 18
    for raw, rec in zip(theirs, ours):
        seq, run_id, run_seq, ts, event, origin = raw
        assert (seq, run_id, run_seq, ts, origin) == (rec.seq, rec.run_id, rec.run_seq, rec.ts, rec.origin)
        assert event["type"] == rec.event.__struct_config__.tag
        assert msgspec.convert(event, ev.AnyEvent) == rec.event


def test_a_segment_holds_at_least_one_batch_and_rolls_over_past_the_limit(journal_dir: Path):
    big = ev.OutputChunk(index=1, stream="stdout", data=b"x" * 500)
    with Journal(str(journal_dir), durability="none", segment_bytes=300) as j:
        records = [j.append("r", big) for _ in range(3)]
    segments = fmt.list_segments(str(journal_dir))
    assert [base for base, _ in segments] == [1, 2, 3]  # each batch alone is over the limit
    assert [r.seq for r in records] == [1, 2, 3]
    assert [r.event for r in read_records(str(journal_dir))] == [big] * 3


def test_a_payload_larger_than_a_read_chunk_reads_back(journal_dir: Path):
    data = os.urandom(fmt.READ_CHUNK + fmt.READ_CHUNK // 2)
    with Journal(str(journal_dir), durability="none") as j:
        j.append("r", ev.Heartbeat())
        j.append("r", ev.OutputChunk(index=1, stream="stderr", data=data))
        j.append("r", ev.Heartbeat())
    records = list(read_records(str(journal_dir)))
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].event.data == data


def test_threads_appending_to_one_run_through_one_journal(journal_dir):
    # a Journal is shared by the threads of a process (the runner's heartbeat thread and its
    # main thread): each append must see the run's sequence as the previous one left it
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        with Journal(str(journal_dir), durability="none") as j:
            j.append("shared", ev.Heartbeat())

            def worker(n: int) -> None:
                for i in range(2000):
                    j.append("shared", ev.OutputChunk(index=n, stream="stdout", data=b"%d" % i))

            threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(before)
    records = list(read_records(str(journal_dir)))
    assert [r.run_seq for r in records] == list(range(1, 6002))
    for n in (1, 2, 3):
        assert [r.event.data for r in records if isinstance(r.event, ev.OutputChunk) and r.event.index == n] == [b"%d" % i for i in range(2000)]
