"""Fills a small file system, then appends until the OS says the disk is full.

    full_disk_writer.py JOURNAL_DIR FILLER ROOM_BYTES ACK_FILE

Opens the journal (so its head and first segment exist), writes FILLER until the file
system is full, then gives ROOM_BYTES of it back. Appends with ``always`` durability and
acks every acknowledged event (``seq counter`` per line, one write each, to ACK_FILE on
another file system), then prints the error the journal raised as ``error <type>:
<message>`` and exits 0; exits 1 if no error came.
"""

from __future__ import annotations

import errno
import os
import sys

from runjournal.journal import Journal, JournalError
from runjournal.journal import events as ev

MAX_APPENDS = 100_000  # far more than the room given: an append that never fails is a bug


def fill(path: str, room: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    size = 0
    chunk = bytes(1 << 16)
    try:
        while True:
            try:
                size += os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        os.ftruncate(fd, max(0, size - room))
    finally:
        os.close(fd)


def main() -> None:
    directory, filler, room, ack_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ack = os.open(ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    journal = Journal(directory, durability="always")
    journal.run_seq("r")  # the head and the first segment exist before the disk fills
    fill(filler, room)
    for counter in range(1, MAX_APPENDS + 1):
        try:
            rec = journal.append("r", ev.OutputChunk(index=counter, stream="stdout", data=b"y" * 100))
        except JournalError as e:
            print(f"error {type(e).__name__}: {e}", flush=True)
            return
        os.write(ack, f"{rec.seq} {counter}\n".encode())
    sys.exit(f"no error after {MAX_APPENDS} appends: the disk never filled")


if __name__ == "__main__":
    main()
