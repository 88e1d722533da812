"""The event schema: round trips, the evolution rules of docs/events.md, unknown types."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import msgspec
import pytest
from helpers.strategies import any_events
from helpers.records import linked_batch
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import CorruptRecord, Journal, UnknownEventType, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.events import Record, encoder, record_decoder
from runjournal.journal.transfer import parse_lines, to_json_line

# A tag never changes and is never reused: this list only grows.
TAGS = [
    "run_started", "stage_started", "stage_finished", "stage_failed", "stage_skipped", "output",
    "output_truncated", "heartbeat", "error", "run_completed", "run_failed", "run_cancelled",
    "run_resumed", "child_run_linked", "approval", "writer_stats", "run_stale", "tail_repaired",
]  # fmt: skip
# docs/events.md, "Boundary events"
BOUNDARY = {
    "run_started", "stage_finished", "stage_failed", "stage_skipped", "run_completed",
    "run_failed", "run_cancelled", "run_resumed", "child_run_linked", "approval", "run_stale", "tail_repaired",
    "region_quarantined", "runs_archived",
}  # fmt: skip


def test_tags_are_never_renamed_or_dropped():
    assert list(ev.EVENT_TYPES)[: len(TAGS)] == TAGS


def test_boundary_events_are_the_documented_ones():
    assert {tag for tag, cls in ev.EVENT_TYPES.items() if cls.boundary} == BOUNDARY


@given(event=any_events(), seq=st.integers(1, 2**63 - 1), run_seq=st.integers(1, 2**31), ts=st.integers(0, 2**63 - 1))
def test_every_event_round_trips_through_a_record_and_an_export_line(event, seq, run_seq, ts):
    rec = Record(seq, "2025-12-01T09-37-11-576Z-1a60ebea", run_seq, ts, event)
    assert record_decoder.decode(encoder.encode(rec)) == rec
    (line,) = parse_lines([to_json_line(rec)], "export.jsonl")
    assert (line.seq, line.run_id, line.run_seq, line.ts, line.event) == (seq, rec.run_id, run_seq, ts, event)


# -- evolution: a new field has a default; old records still decode ----------------------


class ThingV1(msgspec.Struct, tag_field="type", tag="thing", omit_defaults=True, frozen=True):
    name: str


class ThingV2(msgspec.Struct, tag_field="type", tag="thing", omit_defaults=True, frozen=True):
    name: str
    retries: int = 3  # added in v2, with a default


class Other(msgspec.Struct, tag_field="type", tag="other", frozen=True):
    pass


def test_a_record_written_before_a_field_was_added_decodes_with_its_default():
    old = msgspec.msgpack.encode([7, "r", 1, 5, ThingV1("build")])
    new_decoder = msgspec.msgpack.Decoder(tuple[int, str, int, int, Union[ThingV2, Other]])
    assert new_decoder.decode(old) == (7, "r", 1, 5, ThingV2("build", retries=3))


def test_a_record_written_after_a_field_was_added_decodes_in_the_old_version():
    new = msgspec.msgpack.encode([7, "r", 1, 5, ThingV2("build", retries=9)])
    old_decoder = msgspec.msgpack.Decoder(tuple[int, str, int, int, Union[ThingV1, Other]])
    assert old_decoder.decode(new) == (7, "r", 1, 5, ThingV1("build"))


def test_real_events_from_before_the_runner_fields_decode():
    """run_started as the first schema wrote it, without the runner_* fields added later."""
    old = msgspec.msgpack.encode([1, "r", 1, 5, {"type": "run_started", "task_id": "t", "pipeline_id": "p"}])
    event = record_decoder.decode(old).event
    assert event == ev.RunStarted(task_id="t", pipeline_id="p")
    assert (event.runner_pid, event.runner_host, event.runner_start) == (0, "", 0)


def test_the_record_envelope_only_grows_at_the_end():
    heartbeat = {"type": "heartbeat"}
    five = record_decoder.decode(msgspec.msgpack.encode([1, "r", 1, 5, heartbeat]))  # before `origin`
    seven = record_decoder.decode(msgspec.msgpack.encode([1, "r", 1, 5, heartbeat, "p.rjp", "a future field"]))
    assert five == Record(1, "r", 1, 5, ev.Heartbeat())
    assert seven == Record(1, "r", 1, 5, ev.Heartbeat(), "p.rjp")


# -- an event type this version does not know ----------------------------------------------


def future_record(seq: int) -> bytes:
    return msgspec.msgpack.encode([seq, "r", 2, 5, {"type": "future_thing", "payload": [1, 2]}, None])


def test_an_unknown_event_type_is_an_error_naming_it(journal_dir: Path):
    with Journal(str(journal_dir), durability="none") as j:
        first = j.append("r", ev.Heartbeat())
    seg = journal_dir / fmt.segment_name(1)
    offset = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(linked_batch(f.name, [future_record(2)]))

    seen = []
    with pytest.raises(UnknownEventType, match=r"at byte \d+ has unknown event type 'future_thing': it was written by a newer runjournal; upgrade") as info:
        for rec in read_records(str(journal_dir)):
            seen.append(rec)
    assert seen == [first]
    assert (info.value.segment, info.value.offset, info.value.type_name) == (seg.name, offset, "future_thing")
    assert [(p.offset, p.kind) for p in check(str(journal_dir)).problems] == [(offset, "unknown-event")]


def test_a_known_type_with_a_field_of_the_wrong_type_is_corruption_not_an_unknown_type(journal_dir: Path):
    with Journal(str(journal_dir), durability="none") as j:
        j.append("r", ev.Heartbeat())
    seg = journal_dir / fmt.segment_name(1)
    bad = msgspec.msgpack.encode([2, "r", 2, 5, {"type": "stage_started", "index": "one", "stage_id": "s"}, None])
    with open(seg, "ab") as f:
        f.write(linked_batch(f.name, [bad]))
    with pytest.raises(CorruptRecord, match=r"record does not decode: Expected `int`, got `str` - at `\$\[4\]\.index`") as info:
        list(read_records(str(journal_dir)))
    assert not isinstance(info.value, UnknownEventType)
    assert [p.kind for p in check(str(journal_dir)).problems] == ["corrupt"]

