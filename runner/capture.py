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
from dataclasses import dataclass

from runjournal.journal import events as ev
from runjournal.journal.text import for_terminal

from . import procs

READ_SIZE = 64 * 1024
FLUSH_INTERVAL = 0.1  # live output reaches the journal at least this often
DRAIN_AFTER_EXIT = 2.0  # how long the pipes may stay open after the stage's group is empty or stopped
#: after the stage's shell exits, how long a process of its group has to leave it (setsid)
#: before it counts as a leftover: forking and exec'ing `setsid` takes milliseconds
SETTLE_AFTER_EXIT = 1.0

# Stages run as `/bin/sh -c _GATE COMMAND`: the shell waits for the runner's "go" on stdin, so
# the stage's process group is in the journal before its command runs; then it execs (same
# pid, same group, same start time) `/bin/sh -c COMMAND` with stdin from /dev/null. If the
# runner dies first, `read` meets end-of-file and the gate exits without running anything.
_GATE = 'IFS= read -r go || exit 125; exec /bin/sh -c "$0" </dev/null'


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


class Cancel:
    """Set from a signal handler, a cancel request or a timeout: the first request terminates
    the stage's group, a second kills it. A child run's Cancel has its parent run's as
    ``parent``: what cancels the parent cancels the child too, never the other way."""

    def __init__(self, parent: Cancel | None = None):
        self.parent = parent
        self._requests = 0
        self._signal_name = ""
        self._by = ""
        #: set when this run's own timeout asked (pipeline ``timeoutSeconds``): the limit, in ms
        self.run_timeout_ms: int | None = None
        self.event = threading.Event()

    @property
    def requests(self) -> int:
        return self._requests + (self.parent.requests if self.parent else 0)

    @property
    def signal_name(self) -> str:
        """The signal that asked, if one did ("" for a cancel request or a timeout)."""
        return self._signal_name or (self.parent.signal_name if self.parent else "")

    @property
    def by(self) -> str:
        """Who asked first, for the run's reason: a signal's name, or a cancel request's actor."""
        return self._by or (self.parent.by if self.parent else "")

    def request(self, signum: int) -> None:
        self._signal_name = signal.Signals(signum).name
        self.ask(self._signal_name)

    def ask(self, by: str) -> None:
        """A request that is not a signal (``runjournal cancel``, a timeout), made by ``by``."""
        self._requests += 1
        self._by = self._by or by
        self.event.set()

    def expire(self, timeout_ms: int) -> None:
        """The run has run past its timeout: stop it as a cancel does, and say so."""
        if not self.requests:
            self.run_timeout_ms = timeout_ms
        self.ask(f"its timeout ({seconds_text(timeout_ms)})")


def seconds_text(ms: int) -> str:
    """A timeout for people: ``2 s``, ``0.5 s``."""
    return f"{ms / 1000:g} s"


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
    #: the stage ran past its timeout and was stopped (TERM, the grace period, KILL)
    timed_out: bool = False


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
    on_start: Callable[[int, int], None] = lambda pgid, start: None,
    settle: float = SETTLE_AFTER_EXIT,
    timeout: float | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
) -> Outcome:
    """Run ``/bin/sh -c command`` in its own process group; ``emit`` journals output as it comes.

    ``on_start(pgid, start)`` is called once the group exists and before the command runs
    (the shell waits at a gate until it returns): the group id and its leader's start time, or
    (0, 0) if the command could not be started. A runner killed before it returns leaves
    nothing running: the gate sees its end of the pipe close and exits.

    ``timeout``: seconds after which the command is stopped as a cancel stops it (TERM, then
    KILL after ``grace``), and the outcome says it timed out. ``on_output(stream, data)``
    sees every byte read, also those beyond the cap (for ``--stream``).
    """
    out = StreamCapture(index, "stdout", cap, excerpt)
    err = StreamCapture(index, "stderr", cap, excerpt)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _GATE, command],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        on_start(0, 0)
        where = f" ({e.filename})" if e.filename else ""
        return Outcome(None, None, False, out, err, error=f"cannot start the command: {e.strerror or e}{where}")
    pgid = proc.pid
    try:
        on_start(pgid, procs.start_time(pgid))
    except BaseException:
        proc.stdin.close()  # end-of-file at the gate: the command never runs
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        raise
    _open_gate(proc)
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in captures:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    exit_fd = _exit_fd(proc.pid)  # readable when the shell exits: no polling for it
    if exit_fd is not None:
        sel.register(exit_fd, selectors.EVENT_READ)
    pending: list[ev.Event] = []
    last_flush = time.monotonic()
    term_at = None
    killed = False
    ending: _Leftovers | None = None
    drain_from = None  # when the group is empty or stopped: the pipes are read 2 s more at most
    try:
        while sel.get_map() or ending is None or not (cancel.requests or timed_out or ending.done):
            for key, _ in _wait(sel, proc, ending):
                if key.fd == exit_fd:
                    sel.unregister(exit_fd)  # the shell has exited: proc.poll() below sees it
                    continue
                try:
                    data = os.read(key.fd, READ_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                cap_ = captures[key.fd]
                if on_output is not None:
                    on_output(cap_.stream, data)
                live = cap_.feed(data)
                if live:
                    pending.append(ev.OutputChunk(index=index, stream=cap_.stream, data=live))
            now = time.monotonic()
            if pending and now - last_flush >= FLUSH_INTERVAL:
                emit(pending)
                pending, last_flush = [], now
            if deadline is not None and not timed_out and ending is None and now >= deadline:
                timed_out = True
            stopping = cancel.requests or timed_out
            if stopping and not killed:
                if term_at is None:
                    _signal_group(pgid, signal.SIGTERM)
                    term_at = now
                elif cancel.requests > 1 or now - term_at >= grace:
                    _signal_group(pgid, signal.SIGKILL)
                    killed = True
            if ending is None and proc.poll() is not None:
                # the stage is over when its shell exits; what it left in its group is let
                # settle (a daemon leaving by setsid), then told to end: TERM, KILL after the grace
                ending = _Leftovers(pgid, now, settle, grace)
            if ending is not None and not stopping:
                ending.step(now)
            if drain_from is None and ending is not None and (ending.done or (stopping and now - ending.exited_at >= max(grace, 0))):
                drain_from = now
            if drain_from is not None and now - drain_from > DRAIN_AFTER_EXIT:
                break  # something outside the group (setsid) holds the pipes open: stop reading
        proc.wait()
        _signal_group(pgid, signal.SIGKILL)  # nothing of a stage outlives it
    finally:
        sel.close()
        if exit_fd is not None:
            os.close(exit_fd)
        proc.stdout.close()
        proc.stderr.close()
    if pending:
        emit(pending)
    code = proc.returncode
    sig = signal.Signals(-code).name if code < 0 else None
    found = ending is not None and ending.found
    cancelled = bool(cancel.requests) and not timed_out
    stopped = cancelled or timed_out
    return Outcome(code if code >= 0 else None, sig, cancelled, out, err, leftovers=found and not stopped, timed_out=timed_out)


def _exit_fd(pid: int) -> int | None:
    """A pidfd for the stage's shell (Linux 5.3+), else None: the loop then polls for its exit."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait(sel: selectors.BaseSelector, proc: subprocess.Popen, ending: _Leftovers | None) -> list:
    """Wait for output, for the shell to exit once its pipes are closed, or a little while the
    group settles; return what is ready to read. Short waits: a cancel is seen within 0.1 s."""
    if sel.get_map():
        return sel.select(timeout=0.1)
    if ending is None:
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    else:
        time.sleep(0.02)
    return []


class _Leftovers:
    """What a stage's process group still runs after its shell exited: let settle, then stopped.

    A process still in the group may be a daemon on its way out (``setsid cmd &``: the shell
    can exit before its child has called setsid). So for ``settle`` seconds nothing is
    signalled; whatever leaves the group meanwhile is let go. What still runs in it after
    that is a leftover: SIGTERM, then SIGKILL ``grace`` seconds later. An empty group (zombies
    do not count) ends it at once.
    """

    def __init__(self, pgid: int, exited_at: float, settle: float, grace: float):
        self.pgid, self.exited_at, self.settle, self.grace = pgid, exited_at, settle, grace
        self.term_at: float | None = None
        self.found = False
        self.done = False

    def step(self, now: float) -> None:
        if self.done:
            return
        left = bool(procs.group_members(self.pgid))
        if self.term_at is None:
            if not left:
                self.done = True
            elif now - self.exited_at >= self.settle:
                self.found = _signal_group(self.pgid, signal.SIGTERM)
                self.term_at = now
        elif not left or now - self.term_at >= self.grace:
            _signal_group(self.pgid, signal.SIGKILL)
            self.done = True


def _open_gate(proc: subprocess.Popen) -> None:
    """Let the stage's shell run its command (see ``_GATE``)."""
    try:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    except OSError:  # the gate is gone already (killed): the stage fails as that shell did
        pass


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it has no processes left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
