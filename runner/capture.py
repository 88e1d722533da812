"""Running one stage command: a process group, both pipes read as they come, output capped.

Per stream at most ``cap`` bytes enter memory and the journal: the first half is
journaled live as it arrives, the last half is kept in a rolling buffer and journaled at
the end together with the exact number of bytes left out between them. A command that
prints a gigabyte costs one 64 KiB read buffer and two half-cap buffers, no more.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runjournal.journal import events as ev
from runjournal.journal.text import for_terminal

READ_SIZE = 64 * 1024
FLUSH_INTERVAL = 0.1  # live output reaches the journal at least this often
DRAIN_AFTER_EXIT = 2.0  # how long the pipes may stay open after the stage's group was told to end


class StreamCapture:
    """Head streamed, tail kept, middle counted, for one stream of one command."""

    def __init__(self, index: int, stream: str, cap: int, excerpt: int):
        self.index = index
        self.stream = stream
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.excerpt_cap = excerpt
        self.total = 0
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        """Account for ``data``; return the part to journal now (the head)."""
        self.total += len(data)
        room = self.head_cap - len(self.head)
        live = data[:room] if room > 0 else b""
        self.head += live
        rest = data[len(live) :]
        if rest:
            self.tail += rest
            excess = len(self.tail) - self.tail_cap
            if excess > 0:
                del self.tail[:excess]
                self.dropped += excess
        return live

    def finish(self) -> list[ev.Event]:
        if self.dropped:
            return [
                ev.OutputTruncated(
                    index=self.index,
                    stream=self.stream,
                    total_bytes=self.total,
                    kept_head_bytes=len(self.head),
                    kept_tail_bytes=len(self.tail),
                    dropped_bytes=self.dropped,
                    tail=bytes(self.tail),
                )
            ]
        if self.tail:
            return [ev.OutputChunk(index=self.index, stream=self.stream, data=bytes(self.tail))]
        return []

    def excerpt(self) -> str:
        """The end of the stream, at most ``excerpt_cap`` bytes, for error events."""
        kept = bytes(self.tail) if self.dropped else bytes(self.head) + bytes(self.tail)
        cut = kept[-self.excerpt_cap :]
        if len(cut) < self.total:
            # cut on a character boundary: skip the rest of a UTF-8 character split by the cut
            skip = 0
            while skip < min(3, len(cut)) and 0x80 <= cut[skip] < 0xC0:
                skip += 1
            cut = cut[skip:]
        return cut.decode("utf-8", "replace")

    def first_line(self) -> str:
        """The first line with printable text (binary output gives none), for the stage summary."""
        for line in bytes(self.head).decode("utf-8", "replace").splitlines():
            text = for_terminal(line).replace("\t", " ").strip()
            if text:
                return text[:200]
        return ""


@dataclass
class Cancel:
    """Set from a signal handler: first request terminates the stage's group, a second kills it."""

    requests: int = 0
    signal_name: str = ""
    event: threading.Event = field(default_factory=threading.Event)

    def request(self, signum: int) -> None:
        self.requests += 1
        self.signal_name = signal.Signals(signum).name
        self.event.set()


@dataclass
class Outcome:
    exit_code: int | None
    signal: str | None
    cancelled: bool
    stdout: StreamCapture
    stderr: StreamCapture
    error: str | None = None  # the command could not be started
    #: background processes of the stage were still running when its shell exited (then ended)
    leftovers: bool = False


def run_command(
    index: int,
    command: str,
    cwd: str | None,
    env: dict[str, str],
    cap: int,
    excerpt: int,
    emit: Callable[[list[ev.Event]], None],
    cancel: Cancel,
    grace: float,
) -> Outcome:
    """Run ``/bin/sh -c command`` in its own process group; ``emit`` journals output as it comes."""
    out = StreamCapture(index, "stdout", cap, excerpt)
    err = StreamCapture(index, "stderr", cap, excerpt)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        return Outcome(None, None, False, out, err, error=f"cannot start the command: {e.strerror or e}")
    pgid = proc.pid
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in captures:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pending: list[ev.Event] = []
    last_flush = time.monotonic()
    term_at = None
    killed = False
    exited_at = None
    leftovers = False
    try:
        while sel.get_map():
            for key, _ in sel.select(timeout=0.1):
                try:
                    data = os.read(key.fd, READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                cap_ = captures[key.fd]
                live = cap_.feed(data)
                if live:
                    pending.append(ev.OutputChunk(index=index, stream=cap_.stream, data=live))
            now = time.monotonic()
            if pending and now - last_flush >= FLUSH_INTERVAL:
                emit(pending)
                pending, last_flush = [], now
            if cancel.requests and not killed:
                if term_at is None:
                    _signal_group(pgid, signal.SIGTERM)
                    term_at = now
                elif cancel.requests > 1 or now - term_at >= grace:
                    _signal_group(pgid, signal.SIGKILL)
                    killed = True
            if exited_at is None and proc.poll() is not None:
                # the stage is over when its shell exits: what it left running in its process
                # group is told to end (TERM now, KILL after the grace period), as for a cancel
                exited_at = now
                leftovers = _signal_group(pgid, signal.SIGTERM)
            if exited_at is not None and leftovers and not killed and now - exited_at >= grace:
                _signal_group(pgid, signal.SIGKILL)
                killed = True
            if exited_at is not None and now - exited_at > max(grace, 0) + DRAIN_AFTER_EXIT:
                break  # something outside the group (setsid) holds the pipes open: stop reading
        proc.wait()
        _signal_group(pgid, signal.SIGKILL)  # nothing of a stage outlives it
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    if pending:
        emit(pending)
    code = proc.returncode
    sig = signal.Signals(-code).name if code < 0 else None
    return Outcome(code if code >= 0 else None, sig, bool(cancel.requests), out, err, leftovers=leftovers and not cancel.requests)


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it has no processes left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
