"""Printing helpers: JSON documents for scripts, aligned tables for people, statuses in colour
on a terminal, output files, and the line a long-running command ends with on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator

import click
import msgspec

from runjournal.journal.errors import BadInput
from runjournal.journal.fsutil import atomic_write
from runjournal.journal.text import for_terminal

_encoder = msgspec.json.Encoder()


def echo(message: str = "", err: bool = False, safe: bool = False) -> None:
    """Print a line for people: every line runjournal prints goes through here, without the
    escape sequences and control characters that stage output or a journal may carry (JSON
    output needs none of this: its encoder escapes every control character). ``safe``: the
    line is made of parts already passed through ``for_terminal`` and runjournal's own colours,
    which click strips when the stream is not a terminal."""
    click.echo(message if safe else for_terminal(str(message)), err=err)


#: the colour of each status on a terminal (stage statuses and run statuses share the words)
STATUS_COLOURS = {"succeeded": "green", "failed": "red", "in_progress": "yellow", "running": "yellow", "cancelled": "yellow", "stale": "yellow"}


def paint_status(text: str) -> str:
    """``text`` (safe for a terminal), in the colour of the status it starts with, unless
    $NO_COLOR is set (https://no-color.org). ``echo(..., safe=True)`` prints it; click leaves
    the colour out where stdout is not a terminal. JSON output never goes through here."""
    colour = STATUS_COLOURS.get(text.split(" ", 1)[0])
    if colour is None or os.environ.get("NO_COLOR"):
        return text
    return click.style(text, fg=colour)


def emit_json(doc) -> None:
    sys.stdout.buffer.write(msgspec.json.format(_encoder.encode(doc), indent=2) + b"\n")
    sys.stdout.flush()


def table(rows: list[list[str]], headers: list[str], status_column: int | None = None) -> None:
    """Aligned columns; the cells of ``status_column`` (a status word first) in their colour."""
    cells = [headers] + [[for_terminal(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        padded = [c.ljust(w) for c, w in zip(r, widths)]
        if n and status_column is not None:
            cell = r[status_column]
            padded[status_column] = paint_status(cell) + padded[status_column][len(cell):]
        echo("  ".join(padded).rstrip(), safe=True)


def reader_gone() -> int:
    """stdout's reader went away (``| head``): not an error. Silence further writes, exit 0."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def write_output(path: str, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` (``-``: stdout). A regular file, or a new one, is replaced
    atomically (a temp file beside it, renamed over it: a reader sees the old or the new, and a
    symlink's target is the file replaced); anything else (a device such as /dev/null, a FIFO,
    a terminal) is written through, never renamed over, which would put a regular file in the
    place of a device node for every program on the machine."""
    if path == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is None or stat.S_ISREG(mode):
        atomic_write(os.path.realpath(path), b"".join(chunks))
        return
    if stat.S_ISDIR(mode):
        raise BadInput(f"{path} is a directory: give a file, or - for stdout")
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)  # no O_CREAT, no O_TRUNC: it exists and is not a file
    with open(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


class Interrupted(Exception):
    """Ctrl-C ended a long-running command; the message says what was done. Exit 130."""


@contextlib.contextmanager
def interruptible(done) -> Iterator[None]:
    """Turn Ctrl-C (SIGINT) in the body into ``Interrupted(done())``: the one line the command
    ends with (``cli.main`` prints it on stderr and exits 130), never ``error: cancelled``."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(done()) from None
