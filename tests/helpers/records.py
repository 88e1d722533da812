"""Reading a journal back in tests: the checks every concurrency test makes on what it finds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from runjournal.journal import read_records
from runjournal.journal.events import JOURNAL_RUN, Record, TailRepaired


def records_by_run(directory: Path) -> dict[str, list[Record]]:
    """The journal's records by run, checked: the global sequence gapless, each run's sequence
    1, 2, 3 ..., and nothing outside a run but the journal's own repair records."""
    records = list(read_records(str(directory)))
    assert [r.seq for r in records] == list(range(1, len(records) + 1)), "the global sequence has a gap"
    runs = defaultdict(list)
    for r in records:
        runs[r.run_id].append(r)
    assert all(isinstance(r.event, TailRepaired) for r in runs.pop(JOURNAL_RUN, []))
    for run_id, recs in runs.items():
        assert [r.run_seq for r in recs] == list(range(1, len(recs) + 1)), run_id
    return runs
