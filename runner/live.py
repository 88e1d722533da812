"""Stage output for people, as it comes or from the journal: lines marked with their stage and stream.

``--stream`` and ``runjournal logs`` print the same lines: ``[build] text`` for stdout,
``[build:stderr] text`` for stderr, each passed through ``for_terminal`` (escape sequences
and control characters left out: stage output is hostile input). A failed stage's last
lines of stderr are printed the same way below the runner's ``failed:`` line.
"""

from __future__ import annotations

from collections.abc import Callable

from runjournal.journal.text import for_terminal

#: a line longer than this is printed in pieces (a binary blob without a newline stays bounded)
LINE_CAP = 4096
#: how many lines of a failed stage's stderr the runner prints
TAIL_LINES = 20
#: longest stderr line the runner prints below a failure; longer ones end in "..."
TAIL_WIDTH = 300


def prefix(stage_id: str, stream: str) -> str:
    """``[build] `` for stdout, ``[build:stderr] `` for stderr."""
    return f"[{stage_id}] " if stream == "stdout" else f"[{stage_id}:{stream}] "


def marked(stage_id: str, stream: str, text: str) -> str:
    """One line for a terminal: its stage and stream, then the text without its controls."""
    return prefix(stage_id, stream) + for_terminal(text)


def truncation_note(e) -> str:
    """What stands where the cap cut a stream (an ``output_truncated`` event): the log's marker."""
    return (
        f"[runjournal: {e.dropped_bytes} bytes of {e.stream} left out here "
        f"({e.total_bytes} in all; first {e.kept_head_bytes} and last {e.kept_tail_bytes} kept)]"
    )


class Lines:
    """Bytes of one stage's streams in, whole lines out: ``emit(stream, text)`` (text decoded,
    not yet made safe: ``marked`` does that for a terminal); ``close`` emits what is left
    without a final newline."""

    def __init__(self, stage_id: str, emit: Callable[[str], None] | None = None, lines: Callable[[str, str], None] | None = None):
        """``emit(line)``: each line ``marked`` for a terminal; or ``lines(stream, text)``: each line as it is."""
        self.stage_id = stage_id
        self.lines = lines or (lambda stream, text: emit(marked(stage_id, stream, text)))
        self._partial: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._partial.get(stream, b"") + data
        *whole, rest = buf.split(b"\n")
        for line in whole:
            self._line(stream, line)
        while len(rest) > LINE_CAP:
            self._line(stream, rest[:LINE_CAP])
            rest = rest[LINE_CAP:]
        self._partial[stream] = rest

    def note(self, stream: str, text: str) -> None:
        """A line of runjournal's own (a truncation marker), after what came before it."""
        self.flush(stream)
        self.lines(stream, text)

    def flush(self, stream: str) -> None:
        rest = self._partial.pop(stream, b"")
        if rest:
            self._line(stream, rest)

    def close(self) -> None:
        for stream in list(self._partial):
            self.flush(stream)

    def _line(self, stream: str, raw: bytes) -> None:
        self.lines(stream, raw.decode("utf-8", "replace").rstrip("\r"))


def stderr_tail(text: str, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` non-empty-at-the-end lines of ``text``, safe for a terminal, each cut to ``TAIL_WIDTH``."""
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    out = []
    for line in lines[-count:]:
        line = for_terminal(line.rstrip("\r"))
        out.append(line if len(line) <= TAIL_WIDTH else line[: TAIL_WIDTH - 3] + "...")
    return out
