"""Faults of the machine: the OS refuses a write. A clear error, nothing acknowledged lost."""

from __future__ import annotations

import subprocess
import sys

from helpers import HELPERS, clean_env

from journal import Journal, check, read_records
from journal import events as ev


def test_file_size_limit_mid_append_gives_a_clear_error_and_loses_nothing(tmp_path):
    directory = tmp_path / "journal"
    acks = tmp_path / "acks"
    limit = 20_000  # the segment reaches it after about 130 records, mid-record
    out = subprocess.run(
        [sys.executable, str(HELPERS / "fsize_writer.py"), str(directory), str(limit), str(acks)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("error JournalWriteFailed: cannot append to "), out.stdout
    assert "nothing from this append was recorded" in out.stdout
    acked = [tuple(map(int, line.split())) for line in acks.read_text().splitlines()]
    assert len(acked) > 50
    records = list(read_records(str(directory)))
    # every acknowledged event is there, in order, and nothing half-written is left behind
    assert [(r.seq, r.event.index) for r in records] == acked
    assert check(str(directory)).ok
    # without the limit the same journal takes the next append
    with Journal(str(directory)) as journal:
        rec = journal.append("r", ev.Heartbeat())
    assert rec.seq == len(acked) + 1 and rec.run_seq == len(acked) + 1
    assert check(str(directory)).ok
