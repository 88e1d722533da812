"""Merge a journal's pending spills and die by SIGKILL at the worst instant (tests/test_journal_procs.py).

    merge_and_die.py JOURNAL_DIR

The instant: a spilled batch has been appended to the journal (and synced) and its
``.merging`` file is about to be deleted. The process kills itself there, as a crash would.
"""

from __future__ import annotations

import os
import signal
import sys

from runjournal.journal import Journal

_unlink = os.unlink


def unlink_or_die(path, *args, **kwargs):
    if str(path).endswith(".merging"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _unlink(path, *args, **kwargs)


os.unlink = unlink_or_die
with Journal(sys.argv[1]) as journal:
    journal.flush()
sys.exit("the merge finished: nothing was pending?")
