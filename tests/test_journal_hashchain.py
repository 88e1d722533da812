"""The hash chain: an edit that keeps every CRC right is still found, and named.

A forger here changes a record's bytes and writes the frame's checksums anew (what the CRC
alone cannot see), or goes further and rewrites every later link; the pinned head catches that.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from helpers.invoke import invoke  # noqa: F401 - a fixture
from runjournal.journal import Item, Journal, check, events as ev, hashchain, read_records
from runjournal.journal import format as fmt
from runjournal.journal.events import Record, encoder


def build(d: Path, segment_bytes: int = 2000) -> None:
    """Three runs over several segments, in single appends and batches of three."""
    with Journal(str(d), durability="none", segment_bytes=segment_bytes) as j:
        for i in range(30):
            run = f"run-{i % 3}"
            j.append(run, ev.OutputChunk(index=1, stream="stdout", data=f"line {i:03d}".encode()))
            if i % 5 == 0:
                j.append_batch([Item(run, ev.Heartbeat()), Item(run, ev.OutputChunk(index=1, stream="stderr", data=b"e%03d" % i)), Item(run, ev.Heartbeat())])


def record_frames(d: Path) -> list[tuple[str, int, bytes]]:
    """(segment, offset, payload) of every record frame, in order."""
    out = []
    for _, name in fmt.list_segments(str(d)):
        data = (d / name).read_bytes()
        pos = fmt.HEADER_LEN
        while pos + fmt.FRAME_LEN <= len(data):
            word = fmt.WORD.unpack_from(data, pos)[0]
            end = pos + fmt.FRAME_LEN + (word & fmt.LEN_MASK)
            if not word & (fmt.LINK | fmt.SEAL):
                out.append((name, pos, data[pos + fmt.FRAME_LEN : end]))
            pos = end
    return out


def forge(d: Path, segment: str, offset: int, payload: bytes) -> None:
    """Put ``payload`` (same length) in the frame at ``offset``, its payload CRC recomputed."""
    path = d / segment
    data = bytearray(path.read_bytes())
    word = fmt.WORD.unpack_from(data, offset)[0]
    assert len(payload) == word & fmt.LEN_MASK
    data[offset + fmt.FRAME_LEN : offset + fmt.FRAME_LEN + len(payload)] = payload
    struct.pack_into("<I", data, offset + 8, zlib.crc32(payload))
    path.write_bytes(bytes(data))


def edited(payload: bytes, old: bytes, new: bytes) -> bytes:
    assert payload.count(old) == 1
    return payload.replace(old, new)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    d = tmp_path / "journal"
    build(d)
    assert len(fmt.list_segments(str(d))) >= 3
    report = check(str(d))
    assert report.ok and report.chain_stored_from == 1 and len(report.chain_head) == 64
    return d


def test_an_edited_record_with_its_crc_recomputed_is_named_by_verify(journal: Path):
    frames = record_frames(journal)
    segment, offset, payload = next(f for f in frames if b"line 014" in f[2])
    forge(journal, segment, offset, edited(payload, b"line 014", b"line 41!"))
    assert [r.event.data for r in read_records(str(journal)) if b"41!" in getattr(r.event, "data", b"")]  # a reader takes it: the CRC holds
    problems = check(str(journal)).problems
    assert [(p.segment, p.offset, p.kind) for p in problems] == [(segment, offset, "chain-broken")], problems


def test_an_edit_inside_a_batch_names_that_record_not_the_batch(journal: Path):
    frames = record_frames(journal)
    i = next(i for i, f in enumerate(frames) if b"e015" in f[2])  # the middle record of a batch of three
    segment, offset, payload = frames[i]
    assert frames[i - 1][0] == segment and frames[i - 1][1] < offset
    forge(journal, segment, offset, edited(payload, b"e015", b"E015"))
    problems = check(str(journal)).problems
    assert [(p.segment, p.offset, p.kind) for p in problems] == [(segment, offset, "chain-broken")], problems
    assert "sequence" in problems[0].detail


def test_two_records_swapped_with_their_sequences_kept_break_the_chain(journal: Path):
    frames = record_frames(journal)
    (sa, oa, pa), (sb, ob, pb) = next(
        (a, b) for a, b in zip(frames, frames[1:]) if a[0] == b[0] and len(a[2]) == len(b[2]) and b"line" in a[2] and b"line" in b[2]
    )
    ra, rb = (ev.record_decoder.decode(p) for p in (pa, pb))
    swapped_a = encoder.encode(Record(ra.seq, rb.run_id, ra.run_seq, rb.ts, rb.event))
    swapped_b = encoder.encode(Record(rb.seq, ra.run_id, rb.run_seq, ra.ts, ra.event))
    if len(swapped_a) != len(pa) or len(swapped_b) != len(pb):
        pytest.fail("the records chosen do not re-encode to the same length")
    forge(journal, sa, oa, swapped_a)
    forge(journal, sb, ob, swapped_b)
    kinds = [(p.segment, p.offset, p.kind) for p in check(str(journal)).problems]
    assert (sa, oa, "chain-broken") in kinds


def rewrite_chain(d: Path) -> None:
    """What a forger who knows the format does after an edit: every link recomputed."""
    value = hashchain.GENESIS
    for _, name in fmt.list_segments(str(d)):
        data = bytearray((d / name).read_bytes())
        pos, batch = fmt.HEADER_LEN, []
        while pos + fmt.FRAME_LEN <= len(data):
            word = fmt.WORD.unpack_from(data, pos)[0]
            length = word & fmt.LEN_MASK
            end = pos + fmt.FRAME_LEN + length
            if word & fmt.LINK:
                if batch:
                    link, value = hashchain.link_payload(value, batch)
                else:
                    link = value
                data[pos + fmt.FRAME_LEN : end] = link
                struct.pack_into("<I", data, pos + 8, zlib.crc32(link))
                batch = []
            elif not word & fmt.SEAL:
                batch.append(bytes(data[pos + fmt.FRAME_LEN : end]))
            pos = end
        (d / name).write_bytes(bytes(data))


def test_a_forger_who_rewrites_every_link_is_caught_by_the_pinned_head(journal: Path):
    pinned = check(str(journal))
    pins = {pinned.chain_seq: bytes.fromhex(pinned.chain_head)}
    assert check(str(journal), pins).ok
    segment, offset, payload = next(f for f in record_frames(journal) if b"line 003" in f[2])
    forge(journal, segment, offset, edited(payload, b"line 003", b"line 300"))
    rewrite_chain(journal)
    assert check(str(journal)).ok  # without the pin, a whole rewrite cannot be told
    problems = check(str(journal), pins).problems
    assert [p.kind for p in problems] == ["pin-mismatch"], problems
    assert str(pinned.chain_seq) in problems[0].detail


def test_a_pin_past_the_end_reports_records_cut_off(journal: Path, tmp_path: Path):
    report = check(str(journal))
    # the same history, shorter: built again with the last append left out
    shorter = tmp_path / "shorter"
    with Journal(str(shorter), durability="none", segment_bytes=2000) as j:
        for rec in list(read_records(str(journal)))[:-1]:
            j.append_batch([Item(rec.run_id, rec.event, rec.ts)])
    problems = check(str(shorter), {report.chain_seq: bytes.fromhex(report.chain_head)}).problems
    assert [p.kind for p in problems] == ["pin-mismatch"] and "cut off" in problems[0].detail


def test_the_chain_does_not_depend_on_how_records_were_batched(journal: Path, tmp_path: Path):
    again = tmp_path / "again"
    with Journal(str(again), durability="none", segment_bytes=50_000) as j:
        for rec in read_records(str(journal)):
            j.append_batch([Item(rec.run_id, rec.event, rec.ts)])
    assert check(str(again)).chain_head == check(str(journal)).chain_head


def test_a_record_cut_from_the_middle_with_later_ones_renumbered_breaks_the_chain(journal: Path):
    """Truncation of the middle: one single-record batch taken out (record and link) and every
    later record of the segment renumbered, frames and CRCs written anew: the sequence checks
    pass; the chain breaks at the first record after the cut."""
    name = fmt.segment_name(1)
    data = (journal / name).read_bytes()
    frames, pos = [], fmt.HEADER_LEN
    while pos + fmt.FRAME_LEN <= len(data):
        word = fmt.WORD.unpack_from(data, pos)[0]
        end = pos + fmt.FRAME_LEN + (word & fmt.LEN_MASK)
        frames.append((word, data[pos + fmt.FRAME_LEN : end]))
        pos = end
    victim = next(i for i, (w, p) in enumerate(frames) if not w & fmt.LINK and b"line 001" in p)
    assert frames[victim + 1][0] & fmt.LINK and frames[victim - 1][0] & fmt.LINK  # a batch of one
    gone = ev.record_decoder.decode(frames[victim][1])
    out, cut_at = [], None
    for i, (word, payload) in enumerate(frames):
        if i in (victim, victim + 1):
            continue
        if word & fmt.SEAL:
            out.append(fmt.seal_frame())
        elif word & fmt.LINK:
            out.append(fmt.encode_link(payload))
        else:
            rec = ev.record_decoder.decode(payload)
            if i > victim:
                cut_at = cut_at or fmt.HEADER_LEN + sum(map(len, out))
                run_seq = rec.run_seq - 1 if rec.run_id == gone.run_id else rec.run_seq
                payload = encoder.encode(Record(rec.seq - 1, rec.run_id, run_seq, rec.ts, rec.event, rec.origin))
            out.append(fmt.encode_frame(payload, True))
    (journal / name).write_bytes(data[: fmt.HEADER_LEN] + b"".join(out))
    problems = check(str(journal)).problems
    assert (name, cut_at, "chain-broken") in [(p.segment, p.offset, p.kind) for p in problems], problems
    assert not {p.kind for p in problems if p.segment == name} - {"chain-broken"}, problems  # the renumbering itself is seamless


# -- a journal written before the chain, and its upgrade ---------------------------------------


def v1_journal(d: Path, n: int = 8) -> list[Record]:
    """A journal as a runjournal without the chain wrote it: format 1, batches without links."""
    d.mkdir(parents=True)
    records = [Record(i, "old-run", i, 1_700_000_000_000_000_000 + i, ev.Heartbeat() if i % 2 else ev.OutputChunk(index=1, stream="stdout", data=b"o%d" % i)) for i in range(1, n + 1)]
    data = fmt.encode_header(1, ev.SCHEMA_VERSION) + b"".join(fmt.encode_batch([encoder.encode(r)]) for r in records)
    (d / fmt.segment_name(1)).write_bytes(data)
    return records


def test_a_v1_journal_reads_appends_unchained_and_upgrades_only_when_asked(tmp_path: Path):
    d = tmp_path / "journal"
    v1_journal(d)
    before = check(str(d))
    assert before.ok and before.chain_stored_from is None and len(before.chain_head) == 64
    with Journal(str(d), durability="none") as j:
        j.append("old-run", ev.Heartbeat())
    raw = (d / fmt.segment_name(1)).read_bytes()
    assert fmt.decode_header(raw[: fmt.HEADER_LEN], "s").format == fmt.FORMAT_VERSION and fmt.LINK.to_bytes(4, "little") not in raw
    computed = check(str(d))
    assert computed.ok and computed.chain_stored_from is None

    with Journal(str(d), durability="none") as j:
        segment, value = j.upgrade()
        assert j.upgrade() is None  # once
        j.append("old-run", ev.Heartbeat())
    assert segment == fmt.segment_name(10) and value.hex() == computed.chain_head
    after = check(str(d))
    assert after.ok and after.chain_stored_from == 10 and after.chain_seq == 10
    assert [r.seq for r in read_records(str(d))] == list(range(1, 11))

    # an edit of an old record is now found: at the link that covers it
    segment1 = fmt.segment_name(1)
    _, offset, payload = next(f for f in record_frames(d) if f[0] == segment1 and b"o4" in f[2])
    forge(d, segment1, offset, edited(payload, b"o4", b"O4"))
    problems = check(str(d)).problems
    assert [(p.segment, p.kind) for p in problems] == [(fmt.segment_name(10), "chain-broken")], problems


def test_upgrade_of_a_journal_with_no_record_replaces_its_empty_segment(tmp_path: Path):
    d = tmp_path / "journal"
    d.mkdir()
    (d / fmt.segment_name(1)).write_bytes(fmt.encode_header(1, ev.SCHEMA_VERSION))
    with Journal(str(d), durability="none") as j:
        assert j.upgrade() == (fmt.segment_name(1), hashchain.GENESIS)
        j.append("r", ev.Heartbeat())
    assert [n for _, n in fmt.list_segments(str(d))] == [fmt.segment_name(1)]
    assert check(str(d)).ok and check(str(d)).chain_stored_from == 1


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def task_root(tmp_path: Path, journal: Path) -> Path:
    root = tmp_path / "root"
    target = root / ".runs" / "nightly" / "journal"
    target.parent.mkdir(parents=True)
    shutil.copytree(journal, target)
    return root


def test_verify_prints_the_head_in_json_and_checks_a_pin(task_root: Path, invoke):
    code, out, err = invoke("verify", "--task", "nightly", "--format", "json", root=task_root)
    assert code == 0, err
    doc = json.loads(out)
    head, seq = doc["chain_head"], doc["chain_seq"]
    assert len(head) == 64 and seq == doc["records"] and doc["chain_stored_from"] == 1
    code, out, _ = invoke("verify", "--task", "nightly", "--pin", f"{seq}={head}", root=task_root)
    assert code == 0 and f"chain: head {head} at sequence {seq}" in out
    other = "0" * 64
    code, out, _ = invoke("verify", "--task", "nightly", "--pin", f"{seq}={other}", root=task_root)
    assert code == 1 and "pin-mismatch" in out
    code, _, err = invoke("verify", "--task", "nightly", "--pin", "12=nothex", root=task_root)
    assert code == 2 and "SEQ=HASH" in err


def test_report_prints_the_head(task_root: Path, invoke):
    code, out, err = invoke("report", "--task", "nightly", "--format", "json", root=task_root)
    assert code == 0, err
    [doc] = json.loads(out)["tasks"] if "tasks" in json.loads(out) else json.loads(out)
    _, verified, _ = invoke("verify", "--task", "nightly", "--format", "json", root=task_root)
    assert doc["chain"]["head"] == json.loads(verified)["chain_head"] and doc["chain"]["verified"] is True
    code, out, _ = invoke("report", "--task", "nightly", root=task_root)
    assert f"chain head:      {doc['chain']['head']}" in out


def test_export_carries_the_chain_and_import_proves_the_copy(task_root: Path, tmp_path: Path, invoke):
    export = tmp_path / "nightly.jsonl"
    code, _, err = invoke("export", "--task", "nightly", "-o", str(export), root=task_root)
    assert code == 0, err
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert all(len(line["chain"]) == 64 and len(line["chain_before"]) == 64 for line in lines)
    _, verified, _ = invoke("verify", "--task", "nightly", "--format", "json", root=task_root)
    assert lines[-1]["chain"] == json.loads(verified)["chain_head"]

    other = tmp_path / "other"
    other.mkdir()
    code, out, err = invoke("import", str(export), "--task", "copy", root=other)
    assert code == 0, err
    assert f"up to sequence {lines[-1]['seq']}: {lines[-1]['chain']}" in out

    # one event changed in the file: refused whole, naming the line
    tampered = tmp_path / "tampered.jsonl"
    text = export.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line["event"]["type"] == "output" and line["run_id"] == "run-1")
    changed = dict(lines[i], run_seq=lines[i]["run_seq"], ts=lines[i]["ts"] + 1)
    text[i] = json.dumps(changed)
    tampered.write_text("\n".join(text) + "\n")
    code, _, err = invoke("import", str(tampered), "--task", "copy2", root=other)
    assert code == 2 and f":{i + 1}: sequence {lines[i]['seq']} is not the record the source's hash chain covers" in err
    assert not (other / ".runs" / "copy2" / "journal").exists() or not list(read_records(str(other / ".runs" / "copy2" / "journal")))
