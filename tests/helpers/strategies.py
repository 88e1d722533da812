"""Hypothesis strategies named for what they make."""

from __future__ import annotations

import msgspec
from hypothesis import strategies as st

from runjournal.journal import events as ev

INT64 = st.integers(-(2**63), 2**63 - 1)
SMALL_TEXT = st.text(max_size=40)


def _values(t: msgspec.inspect.Type) -> st.SearchStrategy:
    """Values of one msgspec field type, as the event schema uses them."""
    mi = msgspec.inspect
    if isinstance(t, mi.IntType):
        return INT64
    if isinstance(t, mi.StrType):
        return SMALL_TEXT
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=200)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of([_values(u) for u in t.types])
    if isinstance(t, mi.DictType):
        return st.dictionaries(_values(t.key_type), _values(t.value_type), max_size=3)
    if isinstance(t, mi.VarTupleType):
        return st.lists(_values(t.item_type), max_size=3).map(tuple)
    if isinstance(t, mi.StructType):
        return struct_values(t.cls)
    raise NotImplementedError(f"no strategy for field type {t!r}: add one here")


def struct_values(cls: type) -> st.SearchStrategy:
    """Instances of a Struct with every field drawn (defaults included)."""
    info = msgspec.inspect.type_info(cls)
    return st.builds(cls, **{f.name: _values(f.type) for f in info.fields})


def any_events() -> st.SearchStrategy:
    """Every event type of the schema, every field drawn."""
    return st.one_of([struct_values(cls) for cls in ev.EVENT_TYPES.values()])


def small_events() -> st.SearchStrategy:
    """The events a run appends most (stage boundaries, output, heartbeats), kept small."""
    return st.one_of(
        st.builds(ev.Heartbeat),
        st.builds(ev.StageStarted, index=st.integers(0, 99), stage_id=st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
        st.builds(ev.OutputChunk, index=st.integers(0, 99), stream=st.sampled_from(["stdout", "stderr"]), data=st.binary(max_size=300)),
        st.builds(ev.RunFailed, reason=SMALL_TEXT),
    )


def run_ids() -> st.SearchStrategy:
    """A few valid run ids, so that runs get several events each."""
    return st.sampled_from(["2025-12-01T09-37-11-576Z-1a60ebea", "2025-12-01T09-37-12-001Z-0000beef", "r3"])
