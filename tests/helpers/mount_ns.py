"""Runs commands in a private mount namespace, so a test can mount file systems of its own.

    unshare --mount --propagation private python mount_ns.py PLAN.json RESULTS.json

PLAN: ``{"mounts": [ARGV, ...], "steps": [ARGV, ...]}``. Every mount command must succeed,
else it exits 3 with their stderr (the test skips: mounting is not possible here). Then
each step runs in turn, whatever the step before returned, and RESULTS gets one
``{"argv", "returncode", "stdout", "stderr"}`` per step. The mounts vanish with the
namespace when this process exits.
"""

from __future__ import annotations

import json
import subprocess
import sys

SETUP_FAILED = 3


def main() -> None:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    for argv in plan["mounts"]:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}\n")
            sys.exit(SETUP_FAILED)
    results = []
    for argv in plan["steps"]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        results.append({"argv": argv, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
