"""Commands on the journal itself: verify, tail, export, import."""

from __future__ import annotations

import sys

import click

from runjournal.journal import JournalError, open_store, validate_task_id
from runjournal.journal.transfer import ExportRecord, export_lines, import_records, parse_export, to_json_line

from .context import format_option, output_option, pass_settings, run_option, streaming_format_option, task_option
from .complete import complete_task
from .lookup import journal_task, no_journal, require_journal, run_task
from .output import echo, emit_json, interruptible, reader_gone, write_output
from .render import record_line


@click.command()
@task_option
@click.option("--repair", "do_repair", is_flag=True, help="Cut a torn tail (a copy is kept) and merge pending spills.")
@click.option(
    "--quarantine",
    is_flag=True,
    help="Also set damaged regions aside (their records are lost; a copy is kept in journal/quarantine/), so that appends can go on. Implies --repair.",
)
@click.option(
    "--pin",
    "pins",
    multiple=True,
    metavar="SEQ=HASH",
    callback=lambda ctx, param, value: _pins(value),
    help="A chain head noted earlier (verify prints it): fail unless the hash chain at SEQ is still HASH. Repeatable.",
)
@format_option
@pass_settings
def verify(settings, task, do_repair, quarantine, pins, fmt):
    """Check every record of a task journal: framing, checksum, decode, sequences, hash chain.

    Exits 0 when the journal is clean, 1 otherwise. Regions set aside earlier are listed
    ("quarantined:"); they are not problems. The last line gives the hash chain's head: note
    it, and a later `verify --pin SEQ=HASH` tells whether any record up to SEQ changed since.

    Example: runjournal verify --task nightly --pin 1842=9f3c…e1
    """
    task = journal_task(settings, task)
    store = settings.store
    directory = store.where(task)
    report = store.repair(task, quarantine=quarantine) if do_repair or quarantine else store.check(task, pins)
    if pins and (do_repair or quarantine):
        pinned = store.check(task, pins)
        report.problems.extend(p for p in pinned.problems if p.kind == "pin-mismatch")
    if fmt == "json":
        emit_json(report.to_dict())
    else:
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        echo(
            f"{directory}: {state}: {report.records} records, {report.runs} runs, "
            f"{report.segments} segments, {report.bytes} bytes" + (f", {report.pending} pending spill(s)" if report.pending else "")
        )
        for line in report.repaired:
            echo(f"repaired: {line}")
        for line in report.quarantined:
            echo(f"quarantined: {line}")
        for p in report.problems:
            where = f" in {p.segment} at byte {p.offset}" if p.segment else ""
            echo(f"problem: {p.kind}{where}: {p.detail}")
        echo(chain_line(report))
    return 0 if report.ok else 1


def chain_line(report) -> str:
    """Where the hash chain stands, for people: its head to pin, and whether segments store it."""
    if not report.chain_head:
        return "chain: none (this store keeps no hash chain)" if not report.segments else "chain: unknown after a region set aside, until the next stored link"
    if report.chain_stored_from is None:
        stored = "computed, not stored: `runjournal upgrade` makes the journal store it"
    elif report.chain_stored_from <= 1:
        stored = "stored from the first record"
    else:
        stored = f"stored from sequence {report.chain_stored_from}; records before it are covered by the link there"
    return f"chain: head {report.chain_head} at sequence {report.chain_seq} ({stored})"


def _pins(values: tuple[str, ...]) -> dict[int, bytes]:
    pins = {}
    for value in values:
        seq, sep, digest = value.partition("=")
        try:
            if not sep or not seq.isdigit() or len(digest) != 64:
                raise ValueError
            pins[int(seq)] = bytes.fromhex(digest)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not SEQ=HASH (a sequence and the 64 hex digits `verify` printed)") from None
    return pins


@click.command()
@task_option
@format_option
@pass_settings
def upgrade(settings, task, fmt):
    """Make a journal written before the hash chain store it from now on.

    The journal is verified first (exit 1 if it has problems: nothing is changed). Then the
    chain is computed over every record, the current segment is sealed and the next one
    begins with that value, so every later batch carries its link. No record is rewritten.
    Runs from an older runjournal can no longer append to the journal afterwards.

    Example: runjournal upgrade --task nightly
    """
    task = journal_task(settings, task)
    store = settings.store
    before = store.check(task)
    if not before.ok:
        echo(f"not upgraded: task {task} has {len(before.problems)} problem(s); see `runjournal verify --task {task}`", err=True)
        return 1
    done = store.upgrade(task)
    if fmt == "json":
        emit_json({"task_id": task, "upgraded": done is not None, "segment": done[0] if done else None, "chain": done[1].hex() if done else None})
    elif done is None:
        echo(f"task {task} already stores the hash chain")
    else:
        echo(f"task {task}: the hash chain is stored from {done[0]} on; the chain there is {done[1].hex()}")
    return 0


@click.command()
@task_option
@run_option
@click.option("--follow", "-f", "follow_", is_flag=True, help="Keep printing events as they are appended (Ctrl-C stops: exit 130).")
@click.option("--since", type=click.IntRange(min=1), default=1, show_default=True, metavar="SEQ", help="Start at this global sequence.")
@streaming_format_option("a JSON array; with -f")
@pass_settings
def tail(settings, task, run_id, follow_, since, fmt):
    """Print journal events; with -f, keep printing them as they are appended.

    With --run, the run is looked for in every task unless --task (or $RUNJOURNAL_TASK)
    names one. With --format json: a JSON array, or JSON Lines (one object per event) with -f.

    Example: runjournal tail --task nightly -f
    """
    if run_id is not None:
        task = run_task(settings, run_id, task)
    elif not follow_:
        task = journal_task(settings, task)
    else:  # -f waits for a journal that is not there yet (a runner about to start), and says so
        task = settings.task(task)
        if not settings.store.exists(task):
            echo(f"waiting: {no_journal(settings, task)}", err=True)
    store = settings.store
    records = store.follow(task, since) if follow_ else store.records(task, since)
    wanted = (r for r in records if run_id is None or r.run_id == run_id)
    printed = [0]
    what = f"run {run_id} in task {task}" if run_id else f"task {task}"
    try:
        with interruptible(lambda: f"stopped following {what} after {printed[0]} event(s)"):
            return _print_records(wanted, fmt, follow_, printed)
    except BrokenPipeError:
        return reader_gone()


def _print_records(wanted, fmt: str, follow_: bool, printed: list[int]) -> int:
    out = sys.stdout.buffer
    if fmt == "json" and not follow_:
        out.write(b"[")
        for i, rec in enumerate(wanted):
            out.write((b",\n" if i else b"\n") + to_json_line(rec).rstrip(b"\n"))
        out.write(b"\n]\n")
        return 0
    for rec in wanted:
        printed[0] += 1  # before the line shows: a reader that acts on it (Ctrl-C) finds it counted
        if fmt == "json":
            out.write(to_json_line(rec))
        else:
            out.write(record_line(rec).encode() + b"\n")
        if follow_:
            out.flush()
    return 0


@click.command()
@task_option
@run_option
@output_option
@format_option
@pass_settings
def export(settings, task, run_id, output, fmt):
    """Write journal events as JSON Lines (one event a line), to move runs between machines.

    With --format json: one JSON array of the same objects. `import` reads either. With --run,
    the run is looked for in every task unless --task (or $RUNJOURNAL_TASK) names one.

    Example: runjournal export --task nightly --run 2025-12-01T09-37-11-576Z-1a60ebea -o run.jsonl
    """
    task = journal_task(settings, task) if run_id is None else run_task(settings, run_id, task)
    counted = [0]

    def lines():
        for line in export_lines(settings.store, task, run_id):
            counted[0] += 1
            yield line

    chunks = _as_array(lines()) if fmt == "json" else lines()
    try:
        write_output(output, chunks)
    except BrokenPipeError:
        return reader_gone()
    if output != "-":
        echo(f"exported {counted[0]} events to {output}", err=True)
    return 0


@click.command("copy")
@click.option("--to", "destination", required=True, metavar="STORE", help="The store to copy to: a runs directory or a postgresql:// URL.")
@click.option("--task", "-t", "tasks", multiple=True, metavar="TASK", shell_complete=complete_task, help="A task to copy (repeatable; default: every task).")
@pass_settings
def copy_(settings, destination, tasks):
    """Copy task journals to another store, every record as it is: global and run sequences,
    times, repairs. The destination's task must be empty or hold the start of the same journal
    (an interrupted copy goes on). Both are then read again and compared, and the copy is
    verified. To move a journal: copy it, then name the destination with --store.

    Example: runjournal copy --to 'postgresql://ci@db.internal/runs' --task nightly
    """
    source = settings.store
    names = [validate_task_id(t) for t in tasks] or source.tasks()
    target = open_store(destination)
    try:
        for task in names:
            require_journal(settings, task)
            before, after = _copy_task(source, target, task)
            echo(f"task {task}: copied {after - before} record(s) to {target.where(task)} ({before} were there); "
                 f"sequences 1 to {after} compared equal; verified")
    finally:
        target.close()
    return 0


def _copy_task(source, target, task: str) -> tuple[int, int]:
    """Copy what ``target`` lacks of ``task``; (its last sequence before, after)."""
    target.prepare(task)  # a task with no record yet is copied as one (and verified as one)
    before = target.last_seq(task)
    if before:
        _same(source, target, task, before)
    chunk: list = []
    for rec in source.records(task, before + 1):
        chunk.append(rec)
        if len(chunk) >= 10_000:
            target.append_records(task, chunk)
            chunk = []
    if chunk:
        target.append_records(task, chunk)
    target.flush(task)
    after = target.last_seq(task)
    _same(source, target, task, after)
    report = target.check(task)
    if not report.ok:
        first = report.problems[0]
        raise JournalError(f"the copy of task {task} does not verify: {first.kind}: {first.detail}")
    return before, after


def _same(source, target, task: str, through: int) -> None:
    """The two journals hold the same records up to sequence ``through``; JournalError if not."""
    theirs = target.records(task)
    for mine in source.records(task):
        if mine.seq > through:
            break
        other = next(theirs, None)
        if other != mine:
            raise JournalError(
                f"task {task} in {target.url} holds other records than {source.url} (first at sequence {mine.seq}): "
                "not the same journal; nothing more was copied"
            )


def _as_array(lines):
    """JSON Lines as one JSON array document, streamed."""
    yield b"["
    for i, line in enumerate(lines):
        yield (b",\n" if i else b"\n") + line.rstrip(b"\n")
    yield b"\n]\n"


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@task_option
@format_option
@pass_settings
def import_(settings, file, task, fmt):
    """Append the events of an export (JSON Lines, or a JSON array) to a task journal; importing twice adds nothing.

    The whole file is checked first: a malformed line is reported with its line number
    (an array's item with its number) and nothing is imported. Lines that carry the source's
    hash chain are checked against it, so the copy is proven to be the records the source's
    chain head covers; the last such head is printed, to compare with the source's `verify`.

    Example: runjournal import run.jsonl --task nightly
    """
    task = settings.task(task)
    stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    with stream:
        records: list[ExportRecord] = parse_export(stream, file)
    added = import_records(settings.store, task, records)
    head = records.chain_head
    if fmt == "json":
        emit_json(
            {
                "task_id": task,
                "events": len(records),
                "imported": added,
                "skipped": len(records) - added,
                "chain": {"seq": head[0], "head": head[1], "unchained": records.unchained} if head else None,
            }
        )
    else:
        echo(f"imported {added} of {len(records)} events into task {task} ({len(records) - added} already present)")
        if head:
            unchained = f"; {records.unchained} line(s) carried no chain" if records.unchained else ""
            echo(f"chain: every record matches the source's hash chain, up to sequence {head[0]}: {head[1]}{unchained}")
        else:
            echo("chain: the export carries no hash chain (its store keeps none): the copy is not proven against one")
    return 0
