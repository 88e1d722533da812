"""`report`: per task, the evidence a reviewer asks for (the latest runs, their manifests, the
metrics and state files, counts, durations, the last failure), and ``--update`` to write that
evidence into a PRD's ``## Task NNNN — …`` sections.

Read-only like ``runs``: every figure comes from the journal (``lookup.viewed``), never from the
projection files, whose paths it names (``project`` writes them).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable

import click

from runjournal.journal import iso_utc
from runjournal.projections import Projector
from runjournal.projections import render as prender
from runjournal.projections.state import Run, TaskState

from .complete import complete_task
from .context import pass_settings
from .lookup import journal_tasks, viewed
from .output import echo, emit_json, write_output
from .projection_cmds import STATUSES, run_row

#: how much of a failure's stderr a report shows: its last lines, at most this many characters
EXCERPT_LINES = 10
EXCERPT_CHARS = 1000
#: the PRD lines ``--update`` rewrites, by their start
MANIFEST_LINE = "- Run Manifest Link:"
SNAPSHOTS_LINE = "- Metrics / State Snapshots:"
#: a section ``--update`` fills: ``## Task 0801 — Dead code pruning`` (an em dash, en dash or hyphens)
SECTION = re.compile(r"##[ \t]+Task[ \t]+(\d+)[ \t]*(?:[—–]|-{1,2})[ \t]*(.*?)[ \t]*")
#: a heading that ends a section: level 1 or 2
SECTION_END = re.compile(r"#{1,2}(?:[ \t]|$)")
#: a task named by a path in a section's manifest line (``.runs/<task>/cli/...``)
RUNS_PATH = re.compile(r"\.runs/([A-Za-z0-9._-]+)/")


# -- the report of one task ------------------------------------------------------------


def _latest(runs: list[Run]) -> Run | None:
    return max(runs, key=lambda r: (r.started_ts, r.run_id), default=None)


def _excerpt(text: str) -> str:
    """The end of ``text``: its last ``EXCERPT_LINES`` lines, at most ``EXCERPT_CHARS`` characters."""
    tail = "\n".join(text.rstrip("\n").split("\n")[-EXCERPT_LINES:])
    return tail if len(tail) <= EXCERPT_CHARS else "…" + tail[-EXCERPT_CHARS:]


def _failure(projector: Projector, run: Run | None) -> dict | None:
    """The last failed run: its first failed stage, exit code and the end of its stderr."""
    if run is None:
        return None
    stage = next((c for c in run.commands if c.status == "failed"), None)
    error = stage.error if stage is not None else None
    return {
        "run_id": run.run_id,
        "started_at": iso_utc(run.started_ts),
        "status_detail": prender.status_detail(run),
        "stage_index": stage.index if stage else None,
        "stage_id": stage.id if stage else None,
        "exit_code": stage.exit_code if stage else None,
        "stderr_excerpt": _excerpt(error.stderr) if error is not None and error.stderr else None,
        "error_file": projector.paths.error(run.run_id, stage) if error is not None else None,
        "manifest": projector.paths.manifest(run.run_id),
    }


def task_report(projector: Projector, state: TaskState) -> dict:
    """One task's report (the ``--format json`` document of it); paths are absolute."""
    runs = list(state.runs.values())
    by_status = {s: sum(r.status == s for r in runs) for s in STATUSES}
    by_status["stale"] = sum(r.stale_since_ts is not None for r in runs)
    finished = by_status["succeeded"] + by_status["failed"] + by_status["cancelled"]
    durations = sorted(prender.seconds(r.duration_ns) for r in runs if r.duration_ns is not None)
    latest, success = _latest(runs), _latest([r for r in runs if r.status == "succeeded"])
    paths = projector.paths
    return {
        "task_id": projector.task,
        "runs": len(runs),
        "by_status": by_status,
        "success_rate": round(by_status["succeeded"] / finished, 4) if finished else None,
        "duration_seconds": {"p50": prender.percentile(durations, 50), "p95": prender.percentile(durations, 95)},
        "latest_run": run_row(projector, latest) if latest else None,
        "latest_success": run_row(projector, success) if success else None,
        # the manifest a PRD links: the latest success's, else the latest run's
        "manifest": paths.manifest((success or latest).run_id) if latest else None,
        "metrics": paths.metrics(),
        "state": paths.state(),
        "projected": os.path.isfile(paths.metrics()),
        "last_failure": _failure(projector, _latest([r for r in runs if r.status == "failed"])),
    }


def chain_of(settings, task: str) -> dict:
    """The journal's hash chain as ``verify`` reads it: the head a reviewer pins, and whether
    the whole journal checked (``verify`` says what is wrong where it did not)."""
    check = settings.store.check(task)
    return {"head": check.chain_head or None, "seq": check.chain_seq, "stored_from": check.chain_stored_from, "verified": check.ok}


def reports(settings, tasks: tuple[str, ...]) -> list[dict]:
    return [dict(task_report(*viewed(settings, t)), chain=chain_of(settings, t)) for t in journal_tasks(settings, tasks)]


# -- text, markdown --------------------------------------------------------------------


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".") + " s"


def _counts(doc: dict) -> str:
    shown = [f"{s} {n}" for s, n in doc["by_status"].items() if n]
    return f"{doc['runs']} run(s)" + (f": {', '.join(shown)}" if shown else "")


def _rate(doc: dict) -> str:
    rate = doc["success_rate"]
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _run_text(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['run_id']}  {row['status']}  {row['started_at']}  {_secs(row['duration_seconds'])}"


def print_text(doc: dict) -> None:
    echo(f"task {doc['task_id']}")
    echo(f"  latest run:      {_run_text(doc['latest_run'])}")
    echo(f"  latest success:  {_run_text(doc['latest_success'])}")
    echo(f"  manifest:        {doc['manifest'] or '-'}")
    echo(f"  metrics.json:    {doc['metrics']}")
    echo(f"  state.json:      {doc['state']}")
    if not doc["projected"]:
        echo("  (the files are not written yet: `runjournal project` writes them)")
    echo(f"  runs:            {_counts(doc)}")
    echo(f"  success rate:    {_rate(doc)}")
    d = doc["duration_seconds"]
    echo(f"  duration:        p50 {_secs(d['p50'])}, p95 {_secs(d['p95'])}")
    echo(f"  chain head:      {_chain(doc)}")
    f = doc["last_failure"]
    if f is None:
        echo("  last failure:    -")
        return
    echo(f"  last failure:    {f['run_id']}, {_stage(f)}: {f['status_detail']}")
    for text in (f["stderr_excerpt"] or "").split("\n") if f["stderr_excerpt"] else ():
        echo(f"    | {text}")


def _chain(doc: dict, code: bool = False) -> str:
    chain = doc.get("chain")
    if not chain or not chain["head"]:
        return "-"
    head = f"`{chain['head']}`" if code else chain["head"]
    verified = "" if chain["verified"] else " (verify reports problems: `runjournal verify`)"
    return f"{head} at sequence {chain['seq']}{verified}"


def _stage(failure: dict) -> str:
    if failure["stage_id"] is None:
        return "no stage failed"
    exit_ = f" (exit {failure['exit_code']})" if failure["exit_code"] is not None else ""
    return f"stage {failure['stage_index']} {failure['stage_id']}{exit_}"


def _link(path: str) -> str:
    """A Markdown link to ``path`` that shows the path."""
    target = f"<{path}>" if " " in path else path
    return f"[`{path}`]({target})"


def prd_lines(doc: dict, rel: Callable[[str], str]) -> tuple[str, str]:
    """The PRD's two evidence lines of a task, paths made relative by ``rel``."""
    if doc["manifest"] is None:
        manifest = f"{MANIFEST_LINE} _(no run recorded yet)_"
    else:
        row = doc["latest_success"] or doc["latest_run"]
        manifest = f"{MANIFEST_LINE} {_link(rel(doc['manifest']))} (run `{row['run_id']}`, {row['status']})"
    snapshots = f"{SNAPSHOTS_LINE} {_link(rel(doc['metrics']))}, {_link(rel(doc['state']))}"
    return manifest, snapshots


def _fenced(text: str) -> list[str]:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"  {fence}", *(f"  {line}" for line in text.split("\n")), f"  {fence}"]


def markdown(doc: dict, rel: Callable[[str], str]) -> list[str]:
    d, f = doc["duration_seconds"], doc["last_failure"]
    latest, success = doc["latest_run"], doc["latest_success"]
    lines = [
        f"## Task `{doc['task_id']}`",
        "",
        *prd_lines(doc, rel),
        "- Latest run: " + (f"`{latest['run_id']}`, {latest['status']}, {latest['started_at']}, {_secs(latest['duration_seconds'])}" if latest else "-"),
        "- Latest successful run: " + (f"`{success['run_id']}`, {success['started_at']}, {_secs(success['duration_seconds'])}" if success else "-"),
        f"- Runs: {_counts(doc)}; success rate {_rate(doc)}",
        f"- Duration: p50 {_secs(d['p50'])}, p95 {_secs(d['p95'])}",
        "- Last failure: " + (f"`{f['run_id']}`, {_stage(f)}: {f['status_detail']}" if f else "-"),
        f"- Journal chain head: {_chain(doc, code=True)}",
    ]
    if f and f["stderr_excerpt"]:
        lines += ["", *_fenced(f["stderr_excerpt"])]
    return lines + [""]


# -- --update --------------------------------------------------------------------------


def section_task(heading: str, lines: list[str], known: set[str]) -> tuple[str | None, str]:
    """The task of a ``## Task NNNN — Title`` section: a known task id written in the heading,
    else NNNN-<slug of Title>, else a known task named by a ``.runs/<task>/`` path in the
    section's manifest line. Returns (the known task or None, the id the heading gives)."""
    match = SECTION.fullmatch(heading)
    number, title = match.group(1), match.group(2)
    for word in re.findall(r"[A-Za-z0-9._-]+", heading):
        if word in known:
            return word, word
    derived = f"{number}-{heading_slug(title)}"
    if derived in known:
        return derived, derived
    for line in lines:
        if line.startswith(MANIFEST_LINE):
            for named in RUNS_PATH.findall(line):
                if named in known:
                    return named, derived
    return None, derived


def heading_slug(title: str) -> str:
    """A heading's title as the task slug: lowercase, every run of characters other than a-z
    and 0-9 one dash, no dash at either end (``Dead code pruning`` -> ``dead-code-pruning``)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def update(text: bytes, docs: dict[str, dict], rel: Callable[[str], str]) -> tuple[bytes, list[str]]:
    """``text`` (a Markdown file) with the two evidence lines of each known task's section
    rewritten; every other byte, and each line's ending, as it was. Returns the new text and
    the ids of the sections whose task is not known."""
    lines = text.splitlines(keepends=True)
    decoded = [line.decode("utf-8", "surrogateescape") for line in lines]
    bare = [line.rstrip("\r\n") for line in decoded]
    unknown = []
    i = 0
    while i < len(bare):
        if not SECTION.fullmatch(bare[i]):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(bare)) if SECTION_END.match(bare[j])), len(bare))
        task, named = section_task(bare[i], bare[i + 1 : end], set(docs))
        if task is None:
            unknown.append(named)
        else:
            manifest, snapshots = prd_lines(docs[task], rel)
            for j in range(i + 1, end):
                new = manifest if bare[j].startswith(MANIFEST_LINE) else snapshots if bare[j].startswith(SNAPSHOTS_LINE) else None
                if new is not None:
                    ending = decoded[j][len(bare[j]) :]
                    lines[j] = (new + ending).encode("utf-8", "surrogateescape")
        i = end
    return b"".join(lines), unknown


def unified_diff(old: bytes, new: bytes, name: str) -> bytes:
    """A unified diff (difflib) of two texts, marking a last line without a newline as diff does."""
    out = []
    for line in difflib.diff_bytes(difflib.unified_diff, old.splitlines(True), new.splitlines(True), f"a/{name}".encode(), f"b/{name}".encode()):
        out.append(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n")
    return b"".join(out)


def _relative_to(directory: str) -> Callable[[str], str]:
    def rel(path: str) -> str:
        try:
            return os.path.relpath(path, directory).replace(os.sep, "/")
        except ValueError:  # another drive: no relative path
            return path

    return rel


def run_update(settings, tasks: tuple[str, ...], path: str, write: bool) -> int:
    docs = {d["task_id"]: d for d in reports(settings, tasks)}
    with open(path, "rb") as f:
        old = f.read()
    new, unknown = update(old, docs, _relative_to(os.path.dirname(os.path.abspath(path))))
    if unknown:
        echo(f"warning: {path}: sections left alone, no journal for their task: {', '.join(unknown)}", err=True)
    if not write:
        sys.stdout.buffer.write(unified_diff(old, new, path))
        sys.stdout.flush()
        return 0
    changed = sum(a != b for a, b in zip(old.splitlines(), new.splitlines()))
    if new != old:
        write_output(path, [new])
    echo(f"{path}: {changed} line(s) rewritten" if changed else f"{path}: up to date")
    return 0


# -- the command -----------------------------------------------------------------------


@click.command()
@click.option("--task", "-t", "tasks", multiple=True, metavar="T", shell_complete=complete_task, help="Only this task (repeatable; default: every task with a journal).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True, help="text for people, json for scripts: one JSON document on stdout; markdown for a PRD or a review.")
@click.option("--update", "update_path", metavar="FILE.md", type=click.Path(exists=True, dir_okay=False), help="Rewrite the evidence lines of FILE.md's '## Task NNNN — …' sections; prints a diff unless --write.")
@click.option("--write", is_flag=True, help="With --update: write FILE.md (atomically) instead of printing the diff.")
@click.option("--html", "html_dir", metavar="DIR", type=click.Path(file_okay=False), help="Write a static HTML page per task (runs table, timelines, durations, failures) and index.html into DIR.")
@pass_settings
def report(settings, tasks, fmt, update_path, write, html_dir):
    """Report each task's runs: the latest run and the latest success, their manifest, the
    metrics and state files, counts by status, success rate, duration p50/p95 and the last
    failure with its stage and stderr.

    --update FILE.md fills the "- Run Manifest Link:" and "- Metrics / State Snapshots:"
    lines of each "## Task NNNN — Title" section whose task (NNNN-title-slug, or a task id
    written in the heading) has a journal; every other byte stays. Without --write it
    prints a unified diff and writes nothing.

    --html DIR writes one self-contained page per task and an index.html into DIR (made if
    missing), to open from file://; it loads nothing from the network.

    Example: runjournal report --update docs/PRD.md --write
    """
    if write and update_path is None:
        raise click.UsageError("--write goes with --update FILE.md")
    if html_dir is not None:
        if update_path is not None:
            raise click.UsageError("--html and --update are two reports: give one")
        from .report_html import write_html

        for path in write_html(settings, tasks, html_dir):
            echo(f"wrote {path}")
        return 0
    if update_path is not None:
        return run_update(settings, tasks, update_path, write)
    docs = reports(settings, tasks)
    if fmt == "json":
        emit_json({"tasks": docs})
    elif not docs:
        echo(f"no task journals under {settings.runs_dir}")
    elif fmt == "markdown":
        rel = _relative_to(settings.root)
        echo("\n".join(line for doc in docs for line in markdown(doc, rel)).rstrip("\n"))
    else:
        for n, doc in enumerate(docs):
            if n:
                echo()
            print_text(doc)
    return 0
