"""Damage for the fuzz tests (tests/test_fuzz.py), as hypothesis strategies.

A journal is handled as ``{segment file name: bytes}``; ``journal_damage()`` draws a short
list of ``Damage`` steps (bytes overwritten, zeroed, inserted, deleted or copied from
elsewhere; a cut; a segment removed, swapped, replaced by random bytes, or by a valid
header and random bytes; a random file named like a segment; a record re-framed with
valid checksums around a mutated payload). ``export_damage()`` does the same for the JSON
Lines of an export: bytes, and JSON fields set to odd values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import strategies as st

from runjournal.journal import format as fmt

Files = dict[str, bytes]

#: offsets and sizes are drawn as plain numbers and taken modulo what the target has
POSITIONS = st.integers(0, 1 << 24)
#: random bytes: mostly short, sometimes whole blocks
JUNK = st.one_of(st.binary(min_size=1, max_size=24), st.binary(min_size=1, max_size=3000))
#: the base sequence of a segment file added by the damage, taken relative to the last record
EXTRA_BASES = st.sampled_from(["zero", "first", "next", "inside", "far"])


@dataclass(frozen=True)
class Damage:
    """One step of damage to a journal's segment files."""

    kind: str
    target: int = 0  # which segment (modulo how many there are)
    at: int = 0  # byte offset (modulo the segment's size)
    size: int = 1
    data: bytes = b""
    source: int = 0  # splice: which segment to copy from; swap: the other segment
    base: str = "next"  # add, add_header: how to name the new file

    def apply(self, files: Files, last_seq: int) -> None:
        names = sorted(files)
        if self.kind in ("add", "add_header"):
            base = {"zero": 0, "first": 1, "next": last_seq + 1, "inside": max(1, last_seq // 2), "far": 10**19}[self.base]
            head = fmt.encode_header(base, 1) if self.kind == "add_header" else b""
            files[fmt.segment_name(base)] = head + self.data
            return
        if not names:
            return
        name = names[self.target % len(names)]
        data = bytearray(files[name])
        at = self.at % (len(data) + 1)
        if self.kind == "overwrite":
            data[at : at + len(self.data)] = self.data
        elif self.kind == "zero":
            data[at : at + self.size] = bytes(len(data[at : at + self.size]))
        elif self.kind == "insert":
            data[at:at] = self.data
        elif self.kind == "delete":
            del data[at : at + self.size]
        elif self.kind == "cut":
            del data[at:]
        elif self.kind == "splice":  # bytes from elsewhere (valid frames, often) written over these
            src = files[names[self.source % len(names)]]
            start = self.at % (len(src) + 1)
            data[at : at + self.size] = src[start : start + self.size]
        elif self.kind == "remove":
            del files[name]
            return
        elif self.kind == "swap":
            other = names[self.source % len(names)]
            files[name], files[other] = files[other], files[name]
            return
        elif self.kind == "replace":
            data = bytearray(self.data)
        elif self.kind == "reheader":
            data = bytearray(fmt.encode_header(int(name[4:24]), 1) + self.data)
        elif self.kind == "reframe":
            data = bytearray(reframe(bytes(data), self.at, self.size, self.data))
        files[name] = bytes(data)


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of the frames of a segment, as far as their lengths lead."""
    out = []
    pos = fmt.HEADER_LEN
    while pos + fmt.FRAME_LEN <= len(data):
        word = fmt.WORD.unpack_from(data, pos)[0]
        length = word & fmt.LEN_MASK
        if pos + fmt.FRAME_LEN + length > len(data):
            break
        out.append((pos, length))
        pos += fmt.FRAME_LEN + length
    return out


def reframe(data: bytes, pick: int, at: int, new: bytes) -> bytes:
    """Overwrite bytes of one frame's payload and write both checksums anew: damage the
    framing cannot see, so it must be caught by decoding (or the sequence check)."""
    found = [(off, n) for off, n in frames(data) if n]
    if not found:
        return data
    off, n = found[pick % len(found)]
    payload = bytearray(data[off + fmt.FRAME_LEN : off + fmt.FRAME_LEN + n])
    i = at % n
    payload[i : i + len(new)] = new[: n - i]
    word = fmt.WORD.unpack_from(data, off)[0]
    head = fmt.FRAME.pack(word, fmt.crc32(fmt.WORD.pack(word)), fmt.crc32(bytes(payload)))
    return data[:off] + head + bytes(payload) + data[off + fmt.FRAME_LEN + n :]


def damage_steps(reframe: bool = True) -> st.SearchStrategy[Damage]:
    positions, sizes = POSITIONS, st.integers(1, 300)
    steps = [
        st.builds(Damage, kind=st.sampled_from(["overwrite", "insert"]), target=positions, at=positions, data=JUNK),
        st.builds(Damage, kind=st.sampled_from(["zero", "delete", "cut"]), target=positions, at=positions, size=sizes),
        st.builds(Damage, kind=st.just("splice"), target=positions, at=positions, size=st.integers(1, 5000), source=positions),
        st.builds(Damage, kind=st.sampled_from(["remove", "swap"]), target=positions, source=positions),
        st.builds(Damage, kind=st.sampled_from(["replace", "reheader"]), target=positions, data=st.binary(max_size=3000)),
        st.builds(Damage, kind=st.sampled_from(["add", "add_header"]), data=st.binary(max_size=3000), base=EXTRA_BASES),
    ]
    if reframe:
        steps.append(st.builds(Damage, kind=st.just("reframe"), target=positions, at=positions, size=positions, data=st.binary(min_size=1, max_size=8)))
    return st.one_of(steps)


def journal_damage(reframe: bool = True) -> st.SearchStrategy[list[Damage]]:
    """One to three steps of damage, applied in order (``reframe``: including re-framed records)."""
    return st.lists(damage_steps(reframe), min_size=1, max_size=3)


# -- export files (JSON Lines) ---------------------------------------------------------

#: JSON values that are wrong in interesting ways: out of range, wrong type, odd text
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", ".", "..", "../x", "a/b", "a\\b", "\x00", "a\x85b", "\u202e", "x" * 300, "é" * 150, "run_started", "heartbeat"]),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
TOP_FIELDS = ("seq", "run_id", "run_seq", "ts", "time", "event", "extra")
EVENT_FIELDS = ("type", "index", "stage_id", "stream", "data", "exit_code", "stages", "task_id", "reason", "attempt", "extra")


@dataclass(frozen=True)
class LineDamage:
    """One step of damage to an export file, given as its lines (without their newlines)."""

    kind: str  # set | drop | line | bytes
    line: int = 0
    field: str = ""
    value: object = None
    op: str = ""  # line: duplicate | remove | swap | blank; bytes: overwrite | insert | delete | cut
    at: int = 0
    data: bytes = b""

    def apply(self, lines: list[bytes]) -> list[bytes]:
        if not lines:
            return lines
        i = self.line % len(lines)
        if self.kind in ("set", "drop"):
            try:
                doc = json.loads(lines[i])
            except ValueError:
                return lines  # already broken by an earlier step
            if not isinstance(doc, dict):
                return lines
            holder, key = doc, self.field
            if key.startswith("event."):
                holder, key = doc.get("event"), key[len("event.") :]
                if not isinstance(holder, dict):
                    return lines
            if self.kind == "set":
                holder[key] = self.value
            else:
                holder.pop(key, None)
            return lines[:i] + [json.dumps(doc, ensure_ascii=False).encode()] + lines[i + 1 :]
        if self.kind == "line":
            j = self.at % len(lines)
            if self.op == "duplicate":
                return lines[: i + 1] + [lines[i]] + lines[i + 1 :]
            if self.op == "remove":
                return lines[:i] + lines[i + 1 :]
            if self.op == "swap":
                out = list(lines)
                out[i], out[j] = out[j], out[i]
                return out
            return lines[:i] + [b"   "] + lines[i:]  # blank
        whole = bytearray(b"\n".join(lines))
        at = self.at % (len(whole) + 1)
        if self.op == "overwrite":
            whole[at : at + len(self.data)] = self.data
        elif self.op == "insert":
            whole[at:at] = self.data
        elif self.op == "delete":
            del whole[at : at + len(self.data)]
        else:
            del whole[at:]
        return bytes(whole).split(b"\n")


def export_damage() -> st.SearchStrategy[list[LineDamage]]:
    """One to three steps of damage to an export file."""
    fields = st.sampled_from(TOP_FIELDS + tuple(f"event.{f}" for f in EVENT_FIELDS))
    step = st.one_of(
        st.builds(LineDamage, kind=st.just("set"), line=POSITIONS, field=fields, value=ODD_VALUES),
        st.builds(LineDamage, kind=st.just("drop"), line=POSITIONS, field=fields),
        st.builds(LineDamage, kind=st.just("line"), line=POSITIONS, op=st.sampled_from(["duplicate", "remove", "swap", "blank"]), at=POSITIONS),
        st.builds(LineDamage, kind=st.just("bytes"), op=st.sampled_from(["overwrite", "insert", "delete", "cut"]), at=POSITIONS, data=JUNK),
    )
    return st.lists(step, min_size=1, max_size=3)
