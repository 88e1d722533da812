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


#: what the command line refuses as a task or run id, one of each kind (contract section 3):
#: traversal, separators, dot files, escape sequences and other controls (NUL and the C1
#: ones too), empty, longer than 200 characters or than 200 bytes, not UTF-8 (a byte that
#: is not UTF-8 reaches Python from argv as a lone surrogate)
HOSTILE_IDS = (
    "",
    ".",
    "..",
    "../x",
    "../../../../outside/x",
    "a/../../b",
    "./x",
    "x/",
    "a/b",
    "a\\b",
    "..\\x",
    ".hidden",
    "a..b",
    "x\x1b[2J",
    "\x1b]0;TITLE\x07",
    "a\x00b",
    "a\tb",
    "a\nb",
    "a\rb",
    "\x7f",
    "a\x85b",
    "a\x9bb",
    "a\u2028b",
    "a\u2029b",
    "a\udcffb",
    "x" * 201,
    "é" * 101,
)

_CONTROLS = [chr(i) for i in [*range(0x20), *range(0x7F, 0xA0)]]
#: the most directories a relative hostile id climbs ('../' at most four times in each of two words)
CLIMB = 8


def hostile_ids(absolute_under: str = "/nonexistent-runjournal-test") -> st.SearchStrategy[str]:
    """Strings that must never name a path component: HOSTILE_IDS and random ones of each kind.

    Absolute paths are made below ``absolute_under`` (without '..'), and relative ones climb
    at most eight directories (CLIMB): were a check to let one through, the write would land
    where a test looks, never in ``/`` (these tests often run as root).
    """
    # a word never starts with '/', so the only absolute ids are those below ``absolute_under``
    word = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(lambda w: not w.startswith("/"))
    return st.one_of(
        st.sampled_from(HOSTILE_IDS),
        st.builds(lambda a, b: f"{a}/{b}", word.filter(bool), word),
        st.builds(lambda a, b: f"{a}\\{b}", word, word),
        st.builds(lambda a, b: f"{a}..{b}", word, word),
        st.builds(lambda a: "." + a, word),
        st.builds(lambda a, c, b: f"{a}{c}{b}", word, st.sampled_from(_CONTROLS), word),
        st.builds(lambda n: "x" * n, st.integers(201, 400)),
        st.builds(lambda n: "é" * n, st.integers(101, 200)),  # at most 200 characters, over 200 bytes
        st.builds(lambda a: f"{absolute_under}/{a}", word.filter(lambda w: ".." not in w)),
    )
