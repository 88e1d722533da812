"""A parent that reaps nothing, like PID 1 in some containers: it starts the runner, SIGKILLs
it once its stage is ready, and stays alive without waiting for it, so the runner stays a
zombie until this process ends.

    python zombie_parent.py DIR READY KILLED RELEASE RUNNER_ARGV...

In DIR: the runner's output goes to runner.out and runner.err; once the file READY exists the
runner is killed and its pid written to KILLED; this process then waits (at most a minute) for
RELEASE to exist and exits, leaving the zombie to be reaped by whoever inherits it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

DEADLINE = 60.0


def wait_for(path: str) -> bool:
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def main() -> int:
    where, ready, killed, release, *argv = sys.argv[1:]
    os.chdir(where)
    with open("runner.out", "wb") as out, open("runner.err", "wb") as err:
        runner = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    if not wait_for(ready):
        runner.kill()
        return 1
    os.kill(runner.pid, signal.SIGKILL)
    with open(killed + ".tmp", "w") as f:
        f.write(f"{runner.pid}\n")
    os.replace(killed + ".tmp", killed)
    wait_for(release)
    os._exit(0)  # never waits for the runner: no reaping, not even at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
