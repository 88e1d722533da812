"""Text for a terminal: what a stage printed, or a journal holds, shown without its controls.

Stage output and journal strings are hostile input: escape sequences in them can clear the
screen, retitle the window or rewrite a line (``\\r``). The journal and the command logs keep
the bytes exactly (they are evidence); everything runjournal prints for people goes through
``for_terminal``, which drops escape sequences (CSI, OSC, DCS, SOS, PM, APC and the rest) and
every C0 and C1 control character except newline and tab. The Unicode controls that reorder
text on screen (bidirectional embeddings, overrides, isolates and marks: "Trojan Source") are
shown by name, ``<U+202E>``, so an id or a line can never display as something it is not.
"""

from __future__ import annotations

import re

_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"  # OSC, DCS, SOS, PM, APC ... BEL or ST
    r"|\x1b[ -/]*[0-~]?",  # any other escape, or a lone ESC
    re.S,
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: str) -> str:
    """``text`` without escape sequences or control characters (``\\n`` and ``\\t`` kept)."""
    if text.isprintable():  # the common case: nothing to look for
        return text
    return _BIDI.sub(_named, _CONTROLS.sub("", _SEQUENCES.sub("", text)))


def _named(found: re.Match) -> str:
    return f"<U+{ord(found.group()):04X}>"
