"""Printing helpers: JSON documents for scripts, aligned tables for people."""

from __future__ import annotations

import os
import sys

import click
import msgspec

from runjournal.journal.text import for_terminal

_encoder = msgspec.json.Encoder()


def echo(message: str = "", err: bool = False) -> None:
    """Print a line for people: every line runjournal prints goes through here, without the
    escape sequences and control characters that stage output or a journal may carry (JSON
    output needs none of this: its encoder escapes every control character)."""
    click.echo(for_terminal(str(message)), err=err)


def emit_json(doc) -> None:
    sys.stdout.buffer.write(msgspec.json.format(_encoder.encode(doc), indent=2) + b"\n")
    sys.stdout.flush()


def table(rows: list[list[str]], headers: list[str]) -> None:
    cells = [headers] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def reader_gone() -> int:
    """stdout's reader went away (``| head``): not an error. Silence further writes, exit 0."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0
