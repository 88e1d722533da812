"""journal.payload: faults of a record payload are named from its bytes, whatever msgspec says.

The reader and check report a damaged record with these messages under every msgspec the
project allows (0.22 and 0.23 raise different exceptions for the same bytes); the properties
tie the walker to what a msgpack decoder accepts, in both directions where they must agree.
"""

from __future__ import annotations

import msgspec
import pytest
from helpers.strategies import INT64, any_events
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import events as ev
from runjournal.journal.events import Record
from runjournal.journal.payload import MAX_DEPTH, defect

T0 = 1_764_581_831_576_000_000


def record_bytes(event: ev.Event, run_id: str = "r") -> bytes:
    return ev.encoder.encode(Record(7, run_id, 1, T0, event))


@given(any_events(), st.text(max_size=40), INT64)
def test_every_record_the_encoder_makes_has_no_defect(event: ev.Event, run_id: str, ts: int):
    assert defect(ev.encoder.encode(Record(1, run_id, 1, ts, event))) is None


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"\xa2\xc3\xa9", None),  # "é": two bytes of UTF-8
        (b"\xa1\x80", "a string is not UTF-8 (byte 0x80 at 1: invalid start byte)"),
        (b"\x92\x01\xa2\xc3\x28", "a string is not UTF-8 (byte 0xc3 at 3: invalid continuation byte)"),
        (b"\xd9\x02a\xff", "a string is not UTF-8 (byte 0xff at 3: invalid start byte)"),
        (b"\xda\x00\x01\xed", "a string is not UTF-8 (byte 0xed at 3: unexpected end of data)"),
        (b"\xa3\xed\xa0\x80", "a string is not UTF-8 (byte 0xed at 1: invalid continuation byte)"),  # a surrogate
        (b"\x92\x01", "the value at byte 2 is cut short: the record ends"),
        (b"\xa5abc", "the value at byte 0 is cut short: the record ends"),
        (b"\xcd\x01", "the value at byte 0 is cut short: the record ends"),
        (b"\xdc\x00", "the value at byte 0 is cut short: the record ends"),
        (b"\xc7\x02\x05a", "the value at byte 0 is cut short: the record ends"),
        (b"\x91\xc1", "byte 0xc1 at 1 is not a msgpack type"),
        (b"\x01\x02\x03", "2 byte(s) after the record's value, from byte 1"),
        (b"\x81\xa1k" + b"\x91" * MAX_DEPTH + b"\x01", f"values nested too deeply (more than {MAX_DEPTH} levels at byte {2 + MAX_DEPTH})"),
        (b"\x81\xa1k" + b"\x91" * (MAX_DEPTH - 1) + b"\x01", None),
        (b"\xdd\x00\x00\x00\x01\xde\x00\x01\xa1k\xc0", None),  # array 32 and map 16 headers
    ],
)
def test_a_fault_is_named_with_its_place(payload: bytes, expected: str | None):
    assert defect(payload) == expected


def test_a_run_id_that_is_not_utf8_is_found_in_a_real_record():
    payload = record_bytes(ev.Heartbeat(), run_id="b")
    at = payload.index(b"\xa1b") + 1
    bad = payload.replace(b"\xa1b", b"\xa1\x80")
    assert defect(bad) == f"a string is not UTF-8 (byte 0x80 at {at}: invalid start byte)"
    with pytest.raises(ev.DECODE_ERRORS) as raised:
        ev.record_decoder.decode(bad)
    # whatever the decoder raised, the message comes from the bytes
    assert ev.why_undecodable(bad, raised.value) == defect(bad)


@given(any_events(), st.data())
def test_a_record_cut_anywhere_has_a_defect(event: ev.Event, data: st.DataObject):
    payload = record_bytes(event)
    cut = data.draw(st.integers(0, len(payload) - 1), label="cut")
    found = defect(payload[:cut])
    assert found is not None and found.endswith(" is cut short: the record ends")
    at = int(found.removeprefix("the value at byte ").split()[0])
    assert at <= cut  # the value named starts before the cut (or exactly at it)
    with pytest.raises(ev.DECODE_ERRORS):
        msgspec.msgpack.decode(payload[:cut])


@given(st.binary(max_size=64))
def test_the_walker_agrees_with_the_decoder_on_any_bytes(payload: bytes):
    found = defect(payload)
    try:
        msgspec.msgpack.decode(payload)
        decoded = True
    except ev.DECODE_ERRORS:
        decoded = False
    deep = found is not None and found.startswith("values nested too deeply")
    if decoded:  # bytes a decoder takes have no fault, beyond the depth rule
        assert found is None or deep
    if found is not None and not deep:
        assert not decoded

