"""Hold a journal's lock until told to let go (tests/test_journal_procs.py).

    lock_holder.py JOURNAL_DIR

Takes the lock as a writer does, prints ``locked <pid>``, and releases it when a line
arrives on stdin (then prints ``released`` and exits).
"""

from __future__ import annotations

import os
import sys

from runjournal.journal.fsutil import makedirs_durable
from runjournal.journal.lock import JournalLock

directory = sys.argv[1]
makedirs_durable(directory)
lock = JournalLock(os.path.join(directory, "lock"))
lock.acquire()
print(f"locked {os.getpid()}", flush=True)
sys.stdin.readline()
lock.release()
lock.close()
print("released", flush=True)
