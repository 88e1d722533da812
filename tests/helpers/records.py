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


def linked_batch(path, payloads: list[bytes]) -> bytes:
    """A batch to append by hand at the end of the segment at ``path``, framed as its writer
    would frame it: in a chained segment, closed by a link that carries the chain on (what a
    forger who recomputes checksums and links writes), so that only what a test forged is wrong."""
    from runjournal.journal import format as fmt, hashchain

    data = Path(path).read_bytes()
    if not fmt.decode_header(data[: fmt.HEADER_LEN], str(path)).chained:
        return fmt.encode_batch(list(payloads))
    link, _ = hashchain.link_payload(data[-hashchain.SIZE :], list(payloads))
    return fmt.encode_linked_batch(list(payloads), link)
