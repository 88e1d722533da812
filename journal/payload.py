"""What is wrong with a record payload, decided from its bytes alone.

The typed decoder says *that* a payload does not decode; which exception it raises and how
it words it changes between msgspec releases (0.22 raised UnicodeDecodeError for a string
that is not UTF-8, 0.23 a DecodeError). Every message a user sees about a damaged record is
made here instead, by walking the msgpack structure without building any value, so the
same bytes are reported the same way under every msgspec the project allows.
"""

from __future__ import annotations

#: deeper than any event nests (a record is an array holding a map holding a map of strings);
#: a payload nested deeper is reported as such, whether or not the decoder got that far
MAX_DEPTH = 32

_SIZED = {  # type byte: (bytes of length, what the length counts)
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"),
    0xC7: (1, "ext"), 0xC8: (2, "ext"), 0xC9: (4, "ext"),
    0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "array"), 0xDD: (4, "array"),
    0xDE: (2, "map"), 0xDF: (4, "map"),
}  # fmt: skip
_FIXED = {  # type byte: bytes of data that follow it
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8,
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip


def defect(payload: bytes | memoryview) -> str | None:
    """The first structural fault of a msgpack payload, in the order a decoder meets it:
    a value cut short, a reserved type byte, a string that is not UTF-8, nesting deeper than
    MAX_DEPTH, or bytes after the value. None if the payload is well-formed msgpack (a
    payload that is well-formed but still does not decode does not fit the event schema)."""
    data = bytes(payload)
    end = len(data)
    pos = 0
    pending = [1]  # values still to read at each open level
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            return f"the value at byte {pos} is cut short: the record ends"
        at = pos
        b = data[pos]
        pos += 1
        count = kind = None
        if b <= 0x7F or b >= 0xE0:
            continue
        if b <= 0x8F:
            count, kind = b & 0x0F, "map"
        elif b <= 0x9F:
            count, kind = b & 0x0F, "array"
        elif b <= 0xBF:
            count, kind = b & 0x1F, "str"
        elif b in _FIXED:
            pos += _FIXED[b]
            if pos > end:
                return f"the value at byte {at} is cut short: the record ends"
            continue
        elif b in _SIZED:
            width, kind = _SIZED[b]
            if pos + width > end:
                return f"the value at byte {at} is cut short: the record ends"
            count = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        else:
            return f"byte 0x{b:02x} at {at} is not a msgpack type"
        if kind in ("array", "map"):
            if len(pending) > MAX_DEPTH:  # pending holds the top level too
                return f"values nested too deeply (more than {MAX_DEPTH} levels at byte {at})"
            pending.append(count * 2 if kind == "map" else count)
            continue
        stop = pos + count + (1 if kind == "ext" else 0)
        if stop > end:
            return f"the value at byte {at} is cut short: the record ends"
        if kind == "str":
            try:
                data[pos:stop].decode("utf-8")
            except UnicodeDecodeError as e:
                bad = pos + e.start
                return f"a string is not UTF-8 (byte 0x{data[bad]:02x} at {bad}: {e.reason})"
        pos = stop
    if pos != end:
        return f"{end - pos} byte(s) after the record's value, from byte {pos}"
    return None
