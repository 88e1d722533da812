"""A `runjournal` command running as a real process: its stdout lines as they come, its stderr."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import DEADLINE, clean_env


class CliProcess:
    """``runjournal --root ROOT ARGS`` in the background; ``wait_for`` reads its stdout lines
    (a thread pumps them) until one matches, so a test acts once the command has got there."""

    def __init__(self, root: Path, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runjournal", "--root", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=root,
        )
        self.lines: queue.Queue = queue.Queue()
        self.err_lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self._stderr: list[str] = []
        self._pumps = [threading.Thread(target=self._pump, args=(stream, q), daemon=True) for stream, q in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err_lines))]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def wait_for(self, pattern: str, stderr: bool = False) -> str:
        """The first stdout (or stderr) line from now on that matches ``pattern``; fails if the process ends first."""
        lines, seen = (self.err_lines, self._stderr) if stderr else (self.lines, self.seen)
        deadline = time.monotonic() + DEADLINE
        while True:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"{self.proc.args[4:]} ended before printing {pattern!r}; it printed {seen}")
            seen.append(line)
            if re.search(pattern, line):
                return line

    def interrupt(self) -> tuple[int, list[str], str]:
        """Ctrl-C: SIGINT, then the exit code, the rest of stdout and all of stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=DEADLINE)
        rest = []
        while (line := self.lines.get(timeout=DEADLINE)) is not None:
            rest.append(line)
        while (line := self.err_lines.get(timeout=DEADLINE)) is not None:
            self._stderr.append(line)
        return code, rest, "".join(f"{line}\n" for line in self._stderr)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
