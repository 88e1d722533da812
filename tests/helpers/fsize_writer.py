"""Appends under a small file-size limit (RLIMIT_FSIZE) until the OS refuses a write.

    fsize_writer.py JOURNAL_DIR LIMIT_BYTES ACK_FILE

Acks every acknowledged event (``seq counter`` per line, one write each), then prints the
error the journal raised, as ``error <type>: <message>``, and exits 0.
"""

from __future__ import annotations

import os
import resource
import sys

from runjournal.journal import Journal, JournalError
from runjournal.journal import events as ev


def main() -> None:
    directory, limit, ack_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ack = os.open(ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    journal = Journal(directory, durability="none")
    journal.run_seq("r")  # create the first segment before the limit applies
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    counter = 0
    try:
        while True:
            counter += 1
            rec = journal.append("r", ev.OutputChunk(index=counter, stream="stdout", data=b"y" * 100))
            os.write(ack, f"{rec.seq} {counter}\n".encode())
    except JournalError as e:
        print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
