"""``check``: verify every record of a journal; ``repair``: cut a torn tail and merge spills."""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import asdict, dataclass, field

from . import chain, hashchain
from . import format as fmt
from . import events as ev
from .errors import CorruptRecord, InvalidId, JournalNotFound
from .naming import validate_run_id
from .events import JOURNAL_RUN, TailRepaired
from .reader import decode_record
from .rules import History
from .writer import PENDING_DIR, Journal


@dataclass
class Problem:
    segment: str
    offset: int
    kind: str  # torn-tail | corrupt | bad-header | sequence-gap | duplicate-sequence | run-sequence-gap | unknown-event | unreachable-segment | invalid-id | history | chain-broken | pin-mismatch | bad-archive | damaged-spill | foreign-spill | refused-spill
    detail: str


@dataclass
class Report:
    records: int = 0
    runs: int = 0
    segments: int = 0
    bytes: int = 0
    pending: int = 0
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    #: regions set aside by ``verify --quarantine``: not problems, but history that is gone
    quarantined: list[str] = field(default_factory=list)
    #: the hash chain over every record (``journal.hashchain``), hex, and the sequence it is at:
    #: pin it, and ``check(pins={seq: hash})`` later tells whether anything up to there changed
    chain_head: str = ""
    chain_seq: int = 0
    #: the first sequence whose segment stores the chain (format 3), None if none does (a
    #: journal written before the chain: ``runjournal upgrade`` starts storing it)
    chain_stored_from: int | None = None
    #: archived segments read back from ``archive/``, and those pruned (their records deleted)
    archived: int = 0
    pruned: int = 0
    #: live segments also archived: a move a killed ``archive`` left (the next one finishes it)
    archive_unfinished: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        d = {"ok": self.ok}
        d.update(asdict(self))
        return d


class ChainCheck:
    """The hash chain as ``check`` reads it: computed over every record, compared with the links
    chained segments store. At a mismatch the stored value is taken, so that one edit is one
    problem; after a region set aside, the next link is taken as it is (what was lost is gone)."""

    def __init__(self, report: Report, pins: dict[int, bytes]):
        self.report = report
        self.value: bytes | None = hashchain.GENESIS
        self.seq = 0
        self.pins = dict(pins)

    def records(self, payloads: list, seq: int) -> None:
        """Records of an unchained segment (or a batch that lacks its link): computed only."""
        for payload in payloads:
            self._step(payload, seq)
            seq += 1

    def _step(self, payload, seq: int) -> None:
        if self.value is not None:
            self.value = hashchain.step(self.value, payload)
        self.seq = seq
        want = self.pins.pop(seq, None)
        if want is not None and self.value != want:
            self.report.problems.append(
                Problem("", 0, "pin-mismatch", f"the chain at sequence {seq} is {_hex(self.value)}, not the pinned {want.hex()}: records up to {seq} changed")
            )

    def link(self, segment: str, offset: int, stored: bytes, where: str) -> None:
        """A link with no records of its own: where a segment begins."""
        if len(stored) != hashchain.SIZE:
            self.broken(segment, offset, f"chain link of {len(stored)} bytes {where}, expected {hashchain.SIZE}")
        elif self.value is not None and stored != self.value:
            self.broken(segment, offset, f"the chain stored {where} does not match the records before it")
        self.value = stored[-hashchain.SIZE :] if len(stored) >= hashchain.SIZE else None

    def batch(self, segment: str, batch: list, stored: bytes, seq: int) -> None:
        """A batch of a chained segment and its link."""
        if len(stored) != hashchain.link_size(len(batch)):
            self.broken(segment, batch[0][0], f"chain link of {len(stored)} bytes for a batch of {len(batch)} record(s), expected {hashchain.link_size(len(batch))}")
            self.records([p for _, p in batch], seq)
            self.value = None
            return
        if self.value is None:  # after a region set aside: the chain goes on from what is stored
            self.records([p for _, p in batch], seq)
            self.value = hashchain.head_of(stored)
            return
        chain = self.value
        for i, (off, payload) in enumerate(batch):
            chain = hashchain.step(chain, payload)
            kept = stored[i * hashchain.PREFIX : (i + 1) * hashchain.PREFIX] if i < len(batch) - 1 else hashchain.head_of(stored)
            if chain[: len(kept)] != kept:
                self.broken(
                    segment,
                    off,
                    f"sequence {seq + i}: the record's bytes do not match the hash chain (changed after it was written, its CRC recomputed)",
                )
                self.records([p for _, p in batch[: i + 1]], seq)  # pins up to here are judged on the bytes as they are
                self.value = hashchain.head_of(stored)
                self.seq = seq + len(batch) - 1
                return
        self.records([p for _, p in batch], seq)

    def broken(self, segment: str, offset: int, detail: str) -> None:
        self.report.problems.append(Problem(segment, offset, "chain-broken", detail))

    def finish(self) -> None:
        self.report.chain_head, self.report.chain_seq = _hex(self.value), self.seq
        for seq, want in sorted(self.pins.items()):
            self.report.problems.append(
                Problem("", 0, "pin-mismatch", f"the journal ends at sequence {self.seq}, before the pinned sequence {seq} ({want.hex()}): records were cut off")
            )


def _hex(value: bytes | None) -> str:
    return value.hex() if value is not None else ""


def check(directory: str, pins: dict[int, bytes] | None = None) -> Report:
    """Read every record: framing, checksum, decode, global and per-run sequence continuity,
    the hash chain; with ``pins`` ({sequence: chain value}), that the chain is still that there."""
    if not os.path.isdir(directory):
        raise JournalNotFound(f"no journal at {directory}")
    report = Report()
    links = ChainCheck(report, pins or {})
    run_seqs: dict[str, int] = {}
    history = History()
    unsure: set = set()  # runs that may have lost records in a region set aside (None: runs not seen yet)
    segments = chain.segments(directory)
    report.segments = len(segments)
    archived: set[str] = set()
    expected_seq = _check_archive(directory, archived, report, run_seqs, history, unsure, links)
    for i, (base, name) in enumerate(segments):
        if name in archived and base < expected_seq:  # archived, its live copy not removed yet: read once, from the archive
            report.archive_unfinished.append(name)
            continue
        if base != expected_seq:
            detail = fmt.missing_start(base) if i == 0 and base > 1 else f"starts at sequence {base}, expected {expected_seq}"
            report.problems.append(Problem(name, 0, "unreachable-segment", detail))
            expected_seq = base
            links.value = None  # records are missing: the chain is judged again from the next link
        last = i == len(segments) - 1
        expected_seq = _check_segment(directory, name, base, last, report, run_seqs, history, unsure, links)
    links.finish()
    report.runs = len([r for r in run_seqs if r != JOURNAL_RUN])
    try:
        names = os.listdir(os.path.join(directory, PENDING_DIR))
    except FileNotFoundError:
        names = []
    report.pending = len([n for n in names if n.endswith((".rjp", ".merging"))])
    for n in sorted(names):
        if n.endswith(".damaged"):
            report.problems.append(
                Problem(f"{PENDING_DIR}/{n}", 0, "damaged-spill", "a spilled batch failed its checksum and was set aside; its events are not in the journal")
            )
        elif n.endswith(".foreign"):
            report.problems.append(
                Problem(f"{PENDING_DIR}/{n}", 0, "foreign-spill", "a pending file owned by another account than the journal's was set aside, never merged")
            )
        elif n.endswith(".refused"):
            report.problems.append(
                Problem(f"{PENDING_DIR}/{n}", 0, "refused-spill", "a spilled batch would have broken a rule of a run's history and was set aside, never merged")
            )
    return report


def _check_archive(directory: str, archived: set[str], report: Report, run_seqs: dict[str, int], history: History, unsure: set, links: ChainCheck) -> int:
    """Check the archived segments (``journal.archive``) as the journal's first ones: each read
    back from its compressed copy, its chain at both ends compared with the manifest's. Pruned
    ones are passed over, the chain taken again from the manifest after them. Adds each listed
    segment's name to ``archived``; returns the sequence the live journal must begin at."""
    from . import archive

    try:
        found = archive.manifest(directory)
    except CorruptRecord as e:
        report.problems.append(Problem(e.segment, 0, "bad-archive", e.detail))
        return 1
    expected = 1
    for entry in found.segments:
        archived.add(entry.segment)
        if entry.pruned:
            report.pruned += 1
            unsure.update(entry.runs)  # journal-level records go with a pruned segment: theirs may skip
            links.value = bytes.fromhex(entry.chain_out) if len(entry.chain_out) == 64 else None
            links.seq = entry.last
            expected = entry.last + 1
            continue
        if links.value is not None and links.value.hex() != entry.chain_in:
            report.problems.append(Problem(entry.segment, 0, "chain-broken", "the archive's manifest gives another chain where this segment begins"))
        try:
            fd = archive.open_entry(directory, entry)  # the entry in hand: the manifest is not read again
        except CorruptRecord as e:
            report.problems.append(Problem(f"{archive.ARCHIVE_DIR}/{entry.file}", 0, "bad-archive", e.detail))
            links.value = bytes.fromhex(entry.chain_out) if len(entry.chain_out) == 64 else None
            expected = entry.last + 1
            continue
        report.archived += 1
        try:
            expected = _check_segment(directory, entry.segment, entry.base, False, report, run_seqs, history, unsure, links, fd=fd)
        finally:
            os.close(fd)
        if links.value is not None and links.value.hex() != entry.chain_out:
            report.problems.append(Problem(entry.segment, 0, "chain-broken", "the archive's manifest gives another chain where this segment ends"))
    return expected


def _check_segment(
    directory: str,
    name: str,
    base: int,
    last: bool,
    report: Report,
    run_seqs: dict[str, int],
    history: History,
    unsure: set,
    links: ChainCheck,
    fd: int | None = None,
) -> int:
    """Check one segment (read through ``fd``, an archived one's bytes, if given); return the
    sequence the next segment must start at."""
    seq = base
    try:
        if fd is None:
            fd, size = fmt.open_segment(directory, name)
        else:
            fd, size = os.dup(fd), os.fstat(fd).st_size
    except CorruptRecord as e:  # a directory or a FIFO named like a segment
        report.problems.append(Problem(name, 0, "bad-header", e.detail))
        return seq
    report.bytes += size
    try:
        try:
            header = fmt.decode_header(os.pread(fd, fmt.HEADER_LEN, 0), name)
        except CorruptRecord as e:
            report.problems.append(Problem(name, 0, "bad-header", e.detail))
            return seq
        if header.base_seq != base:
            report.problems.append(Problem(name, 0, "bad-header", f"header base {header.base_seq} does not match the name"))
        scanner = fmt.SegmentScanner(fd, name, fmt.HEADER_LEN)
        chained = header.chained
        if chained:
            scanner.links = []
            if report.chain_stored_from is None:
                report.chain_stored_from = base
        started = False
        try:
            for batch in scanner.batches():
                if chained:
                    stored = None
                    for off, payload, n in scanner.links:
                        if n:
                            stored = payload
                        else:
                            links.link(name, off, payload, "where the segment begins" if not started else f"at byte {off}")
                        started = True
                    scanner.links.clear()
                    if not started and batch.__class__ is not fmt.Hole:
                        links.broken(name, batch[0][0], "chained segment does not begin with a chain link")
                    started = True
                if batch.__class__ is fmt.Hole:
                    links.value = None
                    try:
                        fmt.hole_fits(batch, seq, name)
                    except CorruptRecord as e:
                        report.problems.append(Problem(name, e.offset, "corrupt", e.detail))
                    lost = batch.next - batch.first
                    report.quarantined.append(
                        f"{name} bytes {batch.offset} to {batch.offset + batch.size}: "
                        + (f"sequences {batch.first} to {batch.next - 1} lost" if lost else "no sequence known lost")
                    )
                    seq = batch.next
                    # a run that had records in the region may skip sequences forward at its
                    # next record, and its history may miss steps: neither is reported
                    unsure.clear()
                    unsure.update(run_seqs)
                    unsure.add(None)
                    history.forget()
                first = seq
                for off, payload in batch:
                    try:
                        rec = decode_record(payload, name, off)
                    except CorruptRecord as e:
                        kind = "unknown-event" if e.detail.startswith("unknown event type") else "corrupt"
                        report.problems.append(Problem(name, off, kind, e.detail))
                        seq += 1
                        continue
                    seq = check_record(rec, seq, name, off, report, run_seqs, history, unsure)
                if batch.__class__ is fmt.Hole:
                    continue
                if not chained:
                    links.records([p for _, p in batch], first)
                elif stored is None:
                    links.broken(name, batch[0][0], "batch without a chain link in a chained segment")
                    links.records([p for _, p in batch], first)
                else:
                    links.batch(name, batch, stored, first)
            if chained:
                for off, payload, n in scanner.links:  # a segment with no records: its starting link
                    links.link(name, off, payload, "where the segment begins" if not started else f"at byte {off}")
                    started = True
        except CorruptRecord as e:
            report.problems.append(Problem(name, e.offset, "corrupt", e.detail))
            return seq
        end = scanner.end
        if end.state == "tail":
            if not last:
                report.problems.append(Problem(name, end.offset, "corrupt", f"{end.detail} in a segment that is not the last"))
            elif _tail_is_torn(directory, fd, end.offset):
                report.problems.append(Problem(name, end.offset, "torn-tail", f"{end.detail} (left by a crashed writer; `verify --repair` cuts it)"))
        elif end.state == "open" and not last:
            report.problems.append(Problem(name, end.offset, "corrupt", "segment is not sealed but another follows it"))
    finally:
        os.close(fd)
    return seq


def check_record(
    rec, seq: int, segment: str, offset: int, report: Report, run_seqs: dict[str, int], history: History, unsure: set
) -> int:
    """Check one decoded record that should carry ``seq`` (ids, global and run sequences, the
    rules of a run's history), adding what is wrong to ``report``; the sequence expected next.
    Every store's ``check`` goes through here (``segment`` and ``offset`` say where it is)."""
    report.records += 1
    _check_ids(rec, segment, offset, report, run_seqs)
    if rec.seq != seq:
        kind = "sequence-gap" if rec.seq > seq else "duplicate-sequence"
        report.problems.append(Problem(segment, offset, kind, f"sequence {rec.seq} where {seq} was expected"))
    prev = run_seqs.get(rec.run_id, 0)
    excused = False
    if unsure and (rec.run_id in unsure or (rec.run_id not in run_seqs and None in unsure)):
        # its first record after a region set aside: a gap forward may be records lost there
        unsure.discard(rec.run_id)
        excused = rec.run_seq > prev + 1
    if rec.run_seq != prev + 1 and not excused:
        report.problems.append(Problem(segment, offset, "run-sequence-gap", f"run {rec.run_id!r} sequence {rec.run_seq} follows {prev}"))
    run_seqs[rec.run_id] = rec.run_seq
    why = history.violation(rec)
    if why:
        report.problems.append(Problem(segment, offset, "history", f"sequence {rec.seq}: {why}"))
    return rec.seq + 1


def _check_ids(rec, segment: str, offset: int, report: Report, seen: dict[str, int]) -> None:
    """Ids become projection paths: one that the command line would refuse is reported."""
    ids = [rec.run_id] if rec.run_id != JOURNAL_RUN and rec.run_id not in seen else []
    if isinstance(rec.event, ev.ChildRunLinked):
        ids.append(rec.event.child_run_id)
    for run_id in ids:
        try:
            validate_run_id(run_id)
        except InvalidId as e:
            report.problems.append(Problem(segment, offset, "invalid-id", f"{e}; projections skip it"))


#: what ``repair(quarantine=True)`` sets aside
QUARANTINABLE = ("corrupt", "sequence-gap", "unreachable-segment", "bad-header")

#: how long ``check`` waits for a live writer to finish the batch it finds at the end
TAIL_WAIT = 2.0


def _tail_is_torn(directory: str, fd: int, offset: int) -> bool:
    """An unfinished batch is torn unless a live writer is writing it: look again once no
    writer holds the lock. Only reads: the lock file is opened read-only (a shared flock needs
    no more) and never created; a journal without one has no writer, and where it cannot be
    opened (another account's journal), the batch gets the same time to be finished."""
    try:
        lfd = os.open(os.path.join(directory, "lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return _still_unfinished(fd, offset)
    except OSError:
        lfd = None
    deadline = time.monotonic() + TAIL_WAIT
    try:
        while True:
            if lfd is not None:
                try:
                    fcntl.flock(lfd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    try:
                        return _still_unfinished(fd, offset)
                    finally:
                        fcntl.flock(lfd, fcntl.LOCK_UN)
                except BlockingIOError:
                    pass
            elif not _still_unfinished(fd, offset):
                return False
            if time.monotonic() >= deadline:
                return True  # a holder stuck this long is not finishing this batch either
            time.sleep(0.01)
    finally:
        if lfd is not None:
            os.close(lfd)


def _still_unfinished(fd: int, offset: int) -> bool:
    scanner = fmt.SegmentScanner(fd, "", offset)
    for _ in scanner.batches():
        pass
    return scanner.end.state == "tail"


def repair(directory: str, root: str | None = None, quarantine: bool = False) -> Report:
    """Cut a torn tail (keeping a copy) and merge pending spills; report what remains. With
    ``quarantine``, damaged regions are set aside too (``journal.quarantine``).
    ``root``: as for ``Journal``, the directory below which no link is followed."""
    before = check(directory)
    if quarantine and (any(p.kind in QUARANTINABLE for p in before.problems) or before.quarantined):
        # (holes already there: one a quarantine cut short may lack its record, made now)
        with Journal(directory, root=root) as journal:
            regions = journal.quarantine()
            repairs = journal.repaired
        after = check(directory)
        after.repaired = [
            f"set aside {r.bytes_set_aside} bytes of {r.segment} at byte {r.offset}: "
            f"{r.next_seq - r.first_lost_seq} record(s) lost" + (f", a copy kept in {r.copy}" if r.copy else "") for r in regions
        ] + [f"cut {r.bytes_cut} bytes from {r.segment} at byte {r.offset} (copy kept in {r.copy})" for r in repairs]
        return after
    fixable = [p for p in before.problems if p.kind == "torn-tail"]
    if len(fixable) != len(before.problems):
        before.repaired = []
        return before  # corruption in the middle is never cut; the report says where it is
    if not fixable and not before.pending:
        return before
    with Journal(directory, root=root) as journal:
        repairs: list[TailRepaired] = journal.recover()
    after = check(directory)
    after.repaired = [f"cut {r.bytes_cut} bytes from {r.segment} at byte {r.offset} (copy kept in {r.copy})" for r in repairs]
    if before.pending:
        after.repaired.append(f"merged {before.pending} pending file(s)")
    return after
