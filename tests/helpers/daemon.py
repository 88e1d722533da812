"""A `runjournal watch` process under test: its stdout lines, its stderr, clean stop or SIGKILL."""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import DEADLINE, clean_env

#: what a projector killed between writing a temp file and renaming it leaves behind
TEMP_FILE = re.compile(r"(^|/)\.[^/]+\.[0-9a-f]{16}\.tmp$")  # .<file>.<16 random hex>.tmp


class Daemon:
    """A `runjournal watch` process: its stdout lines (read by a thread) and its stderr file."""

    def __init__(self, root: Path, *args: str):
        self.stderr_path = root.parent / f"{root.name}-watch-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runjournal", "--root", str(root), "watch", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=clean_env(),
            cwd=root,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"watch ended before printing {pattern!r}; it printed {self.seen}; stderr: {self.stderr()}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=DEADLINE)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def watching(root: Path, *args: str):
    daemon = Daemon(root, *args)
    try:
        daemon.wait_for(r'^watching |"event":"ready"')
        yield daemon
    finally:
        daemon.close()
