"""`report --html DIR`: each task's report as a static page a reviewer opens from file://.

One page per task (``task-<task>.html``) and ``index.html`` listing them, each self-contained:
inline CSS, inline SVG drawn here, a few lines of inline JavaScript to sort the runs table, and
a Content-Security-Policy that forbids every load, so a page cannot fetch anything. Every text
from the journal (ids, titles, stderr) is hostile: it reaches the page only through ``h`` (HTML
escaping, quotes too), never into the script; links are relative paths of files the projections
name (``Paths``, built from validated ids), each component URL-quoted.

Reads like the rest of ``report``: the state comes from ``lookup.viewed``; heartbeat gaps come
from the fold's own rule (``_gaps``). Writes only into DIR, each file atomically, by name in a
descriptor of DIR (a link planted under a page's name is replaced, never followed).
"""

from __future__ import annotations

import html
import os
import urllib.parse

from runjournal.journal import events as ev
from runjournal.journal import iso_utc
from runjournal.journal.fsutil import atomic_write, makedirs
from runjournal.projections import Projector
from runjournal.projections import render as prender
from runjournal.projections.state import Command, Run, TaskState

from .lookup import journal_tasks, viewed
from .report_cmds import _failure, _rate, _secs, task_report

#: how many runs get a timeline (the newest); the table lists every run
TIMELINES = 20
#: how many runs the durations chart shows (the newest)
CHART_RUNS = 200
#: the statuses a stage or run is drawn in, with a glyph so none depends on colour alone
GLYPHS = {"succeeded": "✓", "failed": "✕", "skipped": "↷", "cancelled": "⊘", "stale": "◌", "running": "▶", "in_progress": "▶", "queued": "·", "pending": "·"}
#: the events that move a run's heartbeat time (``_gaps`` folds only these)
_LIFE = (ev.RunStarted, ev.Heartbeat, ev.RunResumed, ev.RunStale)
SECOND = 1_000_000_000


def h(text) -> str:
    """Text for the page: HTML-escaped, quotes too (safe in an element and in a quoted attribute)."""
    return html.escape(str(text), quote=True)


# -- what a page shows -----------------------------------------------------------------


def _gaps(settings, task: str) -> dict[str, list[tuple[int, int]]]:
    """Per run, the silences between heartbeats that the fold counts as gaps (``Run.heartbeat_gaps``:
    longer than the run's stale limit). Found by folding the journal's signs of life into a
    fresh ``TaskState`` and noting each heartbeat that made the count grow: the fold's rule,
    not a second one."""
    fold, found = TaskState(task_id=task), {}
    for rec in settings.store.records(task):
        if not isinstance(rec.event, _LIFE):
            continue
        run = fold.runs.get(rec.run_id)
        before, last = (run.heartbeat_gaps, run.heartbeat_ts) if run else (0, None)
        fold.apply(rec)
        if run is not None and run.heartbeat_gaps > before:
            found.setdefault(rec.run_id, []).append((last, rec.ts))
    return found


def _status(run: Run) -> str:
    return "stale" if run.stale_since_ts is not None else run.status


def _end(run: Run) -> int:
    """Where a run's time axis ends: its end, else its last event; a stale run's silence shown
    at least to its stale limit."""
    end = run.completed_ts or run.last_event_ts or run.started_ts
    if run.stale_since_ts is not None:
        end = max(end, run.stale_since_ts + run.hb_stale * SECOND)
    return max(end, run.started_ts + SECOND // 10)


def _stage_label(c: Command, status: str) -> str:
    """``build — failed (exit 2)``: the stage and what became of it."""
    exit_ = f" (exit {c.exit_code})" if c.exit_code is not None and status != "succeeded" else ""
    return f"{c.id} — {status}{exit_}"


class Linker:
    """Relative hrefs from the report directory to the files the projections name."""

    def __init__(self, directory: str):
        self.base = os.path.abspath(directory)

    def __call__(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), self.base).replace(os.sep, "/")
        return h("/".join(urllib.parse.quote(part, safe="") for part in rel.split("/")))


# -- the pieces of a page ------------------------------------------------------------


def _run_meta(run: Run) -> list[str]:
    took = [] if run.duration_ns is None else [_secs(prender.seconds(run.duration_ns))]
    return [run.pipeline_title, iso_utc(run.started_ts), *took, prender.status_detail(run)]


def _badge(status: str) -> str:
    return f'<span class="badge s-{h(status)}">{GLYPHS.get(status, "")} {h(status)}</span>'


def _summary(doc: dict) -> str:
    latest = doc["latest_run"]
    d = doc["duration_seconds"]
    cells = [
        ("Latest run", f'{_badge("stale" if latest["stale"] else latest["status"])}<div class="sub">{h(latest["started_at"])}</div>' if latest else "-"),
        ("Success rate", f'<span class="big">{h(_rate(doc))}</span><div class="sub">succeeded / ended</div>'),
        ("Duration p50 / p95", f'<span class="big">{h(_secs(d["p50"]))}</span> / {h(_secs(d["p95"]))}<div class="sub">nearest rank, ended runs</div>'),
        ("Runs", f'<span class="big">{doc["runs"]}</span><div class="sub">{h(", ".join(f"{s} {n}" for s, n in doc["by_status"].items() if n) or "none")}</div>'),
    ]
    return '<section class="cards">' + "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in cells) + "</section>"


def _legend() -> str:
    items = "".join(
        f'<span class="lg"><svg width="28" height="14" aria-hidden="true"><rect class="bar s-{s}" x="1" y="1" width="26" height="12" rx="2"/></svg>{GLYPHS[s]} {s}</span>'
        for s in ("succeeded", "failed", "skipped", "cancelled", "stale", "running")
    )
    gap = '<span class="lg"><svg width="28" height="14" aria-hidden="true"><rect class="gap" x="1" y="1" width="26" height="12"/></svg>heartbeat gap / silence</span>'
    return f'<div class="legend" role="list">{items}{gap}</div>'


def _links(run: Run, paths, link: Linker) -> str:
    out = [f'<a href="{link(paths.manifest(run.run_id))}">manifest</a>']
    for c in run.commands:
        if c.has_log:
            out.append(f'<a href="{link(paths.log(run.run_id, c))}" title="{h(c.id)} log">log {c.index}</a>')
        if c.error is not None:
            out.append(f'<a class="err" href="{link(paths.error(run.run_id, c))}" title="{h(c.id)} error">error {c.index}</a>')
    return " ".join(out)


def _runs_table(runs: list[Run], paths, link: Linker) -> str:
    heads = [("Run", "text"), ("Pipeline", "text"), ("Status", "text"), ("Started (UTC)", "text"), ("Duration", "number"), ("Stages", "number"), ("Files", None)]
    head = "".join(f'<th data-type="{t}" scope="col"><button type="button">{name}</button></th>' if t else f'<th scope="col">{name}</th>' for name, t in heads)
    rows = []
    for r in runs:
        passed = sum(c.status == "succeeded" for c in r.commands)
        dur = prender.seconds(r.duration_ns)
        cells = [
            (r.run_id, f'<code>{h(r.run_id)}</code>'),
            (r.pipeline_id, h(r.pipeline_id)),
            (_status(r), _badge(_status(r))),
            (str(r.started_ts), h(iso_utc(r.started_ts))),
            ("" if dur is None else str(dur), h(_secs(dur))),
            (str(passed), f"{passed}/{len(r.commands)}"),
            ("", _links(r, paths, link)),
        ]
        rows.append(f'<tr data-run="{h(r.run_id)}">' + "".join(f'<td data-sort="{h(k)}">{v}</td>' for k, v in cells) + "</tr>")
    return f'<table class="sortable runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _ticks(span_ns: int) -> list[float]:
    """Nice seconds for a time axis of ``span_ns``: at most about six ticks."""
    span = span_ns / SECOND
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if span / step <= 6:
            break
    return [n * step for n in range(int(span / step) + 1)]


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


ROW, TOP, LABEL_W, BAR_W, WIDTH = 24, 26, 190, 560, 1000


def _timeline(run: Run, gaps: list[tuple[int, int]]) -> str:
    """A run's stages as bars on its time axis, its heartbeat gaps as hatched bands."""
    start, end = run.started_ts, _end(run)
    span = end - start
    x = lambda ts: LABEL_W + BAR_W * max(0, min(ts - start, span)) / span
    stages = run.commands
    height = TOP + ROW * max(1, len(stages)) + 8
    out = [f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{h("timeline of run " + run.run_id)}">']
    for t in _ticks(span):
        tx = x(start + int(t * SECOND))
        out.append(f'<line class="tick" x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{height - 6}"/><text class="axis" x="{tx:.1f}" y="{TOP - 10}" text-anchor="middle">{_clock(t)}</text>')
    bands = [(a, b, f"heartbeat gap: no heartbeat for {_secs((b - a) / SECOND)} (limit {run.hb_stale} s)") for a, b in gaps]
    if run.stale_since_ts is not None:
        bands.append((run.stale_since_ts, end, f"stale: no heartbeat since {prender.iso(run.stale_since_ts)} (limit {run.hb_stale} s)"))
    for a, b, what in bands:
        out.append(f'<rect class="gap" x="{x(a):.1f}" y="{TOP - 4}" width="{max(2.0, x(b) - x(a)):.1f}" height="{height - TOP}"><title>{h(what)}</title></rect>')
    for row, c in enumerate(stages):
        y = TOP + row * ROW
        name = c.id if len(c.id) <= 24 else c.id[:23] + "…"
        out.append(f'<text class="stage" x="{LABEL_W - 10}" y="{y + 15}" text-anchor="end">{c.index}. {h(name)}</text>')
        if c.started_ts is None and c.completed_ts is None:
            out.append(f'<text class="note" x="{LABEL_W + 4}" y="{y + 15}">not run</text>')
            continue
        a = c.started_ts if c.started_ts is not None else c.completed_ts
        b = c.completed_ts if c.completed_ts is not None else end
        status = "stale" if run.stale_since_ts is not None and c.status in ("running", "stale") else c.status
        label = _stage_label(c, status)
        tip = f"{label}: {_secs(prender.seconds(c.duration_ns))}, started {prender.iso(a)}"
        out.append(
            f'<g class="stagebar"><rect class="bar s-{h(status)}" data-status="{h(status)}" data-stage="{h(c.id)}" '
            f'x="{x(a):.1f}" y="{y + 3}" width="{max(3.0, x(b) - x(a)):.1f}" height="{ROW - 8}" rx="3"><title>{h(tip)}</title></rect>'
        )
        side = f"{GLYPHS.get(status, '')} {label}" if status != "succeeded" else f"{_secs(prender.seconds(c.duration_ns))}"
        out.append(f'<text class="what s-{h(status)}" x="{LABEL_W + BAR_W + 12}" y="{y + 15}">{h(side)}</text></g>')
    out.append("</svg>")
    return "".join(out)



def _durations(runs: list[Run], p50: float | None) -> str:
    """Each ended run's duration, oldest first: a bar each, a failed run's marked ✕."""
    shown = runs[-CHART_RUNS:]
    height, left, top, plot = 190, 60, 14, 140
    most = max((r.duration_ns or 0 for r in shown), default=0) or SECOND
    step = (WIDTH - left - 10) / max(1, len(shown))
    y = lambda ns: top + plot - plot * ns / most
    out = [f'<svg class="durations" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="run durations, oldest first">']
    for frac in (0, 0.5, 1):
        ty = y(most * frac)
        out.append(f'<line class="tick" x1="{left}" y1="{ty:.1f}" x2="{WIDTH - 10}" y2="{ty:.1f}"/><text class="axis" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{h(_secs(round(most * frac / SECOND, 3)))}</text>')
    for n, r in enumerate(shown):
        status, width = _status(r), min(36.0, max(2.0, step * 0.7))
        bx = left + (n + 0.5) * step - width / 2
        tip = f"{r.run_id}: {status}, {_secs(prender.seconds(r.duration_ns))}"
        if r.duration_ns is None:  # not ended: a hollow marker on the axis
            out.append(f'<rect class="pt s-{h(status)}" data-status="{h(status)}" x="{bx:.1f}" y="{top + plot - 6}" width="{width:.1f}" height="6"><title>{h(tip)}</title></rect>')
            continue
        by = y(r.duration_ns)
        out.append(f'<rect class="pt s-{h(status)}" data-status="{h(status)}" x="{bx:.1f}" y="{by:.1f}" width="{width:.1f}" height="{top + plot - by:.1f}"><title>{h(tip)}</title></rect>')
        if status in ("failed", "cancelled"):
            out.append(f'<text class="mark s-{status}" x="{bx + width / 2:.1f}" y="{by - 4:.1f}" text-anchor="middle">{GLYPHS[status]}</text>')
    if p50 is not None:
        py = y(p50 * SECOND)
        out.append(f'<line class="p50" x1="{left}" y1="{py:.1f}" x2="{WIDTH - 10}" y2="{py:.1f}"/><text class="axis" x="{WIDTH - 12}" y="{py - 4:.1f}" text-anchor="end">p50 {h(_secs(p50))}</text>')
    out.append(f'<text class="axis" x="{left}" y="{height - 8}">oldest</text><text class="axis" x="{WIDTH - 10}" y="{height - 8}" text-anchor="end">newest</text></svg>')
    return "".join(out)


def _failures(projector: Projector, runs: list[Run], link: Linker) -> str:
    """Each failed run's first failed stage, exit code and the end of its stderr."""
    items = []
    for r in reversed(runs):
        if r.status != "failed":
            continue
        f = _failure(projector, r)
        stage = f"stage {f['stage_index']} {f['stage_id']}" + (f" (exit {f['exit_code']})" if f["exit_code"] is not None else "") if f["stage_id"] else "no stage failed"
        excerpt = f'<pre class="stderr">{h(f["stderr_excerpt"])}</pre>' if f["stderr_excerpt"] else '<p class="note">no stderr recorded</p>'
        files = f'<a href="{link(f["manifest"])}">manifest</a>' + (f' · <a class="err" href="{link(f["error_file"])}">error file</a>' if f["error_file"] else "")
        items.append(
            f'<article class="failure" data-run="{h(r.run_id)}"><h3>{GLYPHS["failed"]} <code>{h(r.run_id)}</code> — {h(stage)}</h3>'
            f'<p>{h(f["status_detail"])} · started {h(f["started_at"])} · {files}</p>{excerpt}</article>'
        )
    return "".join(items) or '<p class="note">No run failed.</p>'


def _gap_list(runs: list[Run], gaps: dict[str, list[tuple[int, int]]]) -> str:
    rows = []
    for r in reversed(runs):
        for a, b in gaps.get(r.run_id, ()):
            rows.append((r, a, b, "gap between heartbeats"))
        if r.stale_since_ts is not None:
            rows.append((r, r.stale_since_ts, None, "silent since (stale: runner presumed dead)"))
    if not rows:
        return '<p class="note">No heartbeat gap longer than a run\'s stale limit.</p>'
    body = "".join(
        f"<tr><td><code>{h(r.run_id)}</code></td><td>{h(prender.iso(a))}</td><td>{h(_secs((b - a) / SECOND) if b else '-')}</td><td>{r.hb_stale} s</td><td>{h(what)}</td></tr>"
        for r, a, b, what in rows
    )
    return f'<table class="gaps"><thead><tr><th>Run</th><th>From</th><th>Silent for</th><th>Stale limit</th><th>What</th></tr></thead><tbody>{body}</tbody></table>'


# -- pages -----------------------------------------------------------------------------


CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--ok:#2f8f5b;--fail:#cf222e;--skip:#8c959f;--cancel:#bc6c00;--stale:#8250df;--run:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 36px 64px}
h1{font-size:26px;margin:0 0 2px}h2{font-size:19px;margin:36px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0 0 4px}
code,pre{font:13px/1.45 ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,monospace}
a{color:var(--run);text-decoration:none}a:hover{text-decoration:underline}a.err{color:var(--fail)}
.meta,.note,.sub{color:var(--muted)}.sub{font-size:13px}.note{font-size:14px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;margin:18px 0 8px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;background:var(--soft)}
.card .k{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.big{font-size:24px;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;font-weight:600;border:1.5px solid;white-space:nowrap}
.badge.s-succeeded{color:var(--ok)}.badge.s-failed{color:#fff;background:var(--fail);border-color:var(--fail)}
.badge.s-skipped{color:var(--muted);border-style:dashed}.badge.s-cancelled{color:var(--cancel);border-style:double;border-width:3px}
.badge.s-stale{color:var(--stale);border-style:dotted}.badge.s-in_progress,.badge.s-queued{color:var(--run)}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:10px 0;font-size:13px;color:var(--muted)}
.lg{display:inline-flex;align-items:center;gap:6px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
th button{all:unset;cursor:pointer}th button::after{content:" ↕";color:var(--skip)}
th[aria-sort=ascending] button::after{content:" ▲";color:var(--ink)}th[aria-sort=descending] button::after{content:" ▼";color:var(--ink)}
tbody tr:hover{background:#fbfcfd}td a{margin-right:6px;white-space:nowrap}
.runs td:first-child code{font-size:12.5px}
.run{margin:22px 0 6px}.run h3{font-weight:600}.run h3 code{font-size:13px}.run h3 .meta{display:block;font-weight:400;font-size:13px;margin-top:2px}
.runs td:nth-child(4){white-space:nowrap}
svg text{font:12px system-ui,"DejaVu Sans",sans-serif;fill:var(--ink)}
svg .axis{fill:var(--muted);font-size:11px}svg .note{fill:var(--muted);font-style:italic}
.tick{stroke:#eaeef2}.p50{stroke:var(--muted);stroke-dasharray:4 3}
.bar,.pt{stroke-width:1.5}
.s-succeeded.bar,.s-succeeded.pt{fill:var(--ok);stroke:var(--ok)}
.s-failed.bar,.s-failed.pt{fill:var(--fail);stroke:#82071e;stroke-width:2.5}
.s-skipped.bar,.s-skipped.pt{fill:url(#hatch-skipped);stroke:var(--skip);stroke-dasharray:4 2}
.s-cancelled.bar,.s-cancelled.pt{fill:url(#hatch-cancelled);stroke:var(--cancel);stroke-width:2}
.s-stale.bar,.s-stale.pt{fill:url(#dots-stale);stroke:var(--stale);stroke-dasharray:2 2;stroke-width:2}
.s-running.bar,.s-in_progress.pt,.s-queued.pt{fill:var(--run);stroke:var(--run)}
.gap{fill:url(#hatch-gap);stroke:var(--stale);stroke-opacity:.4}
text.what.s-failed,text.mark.s-failed{fill:var(--fail);font-weight:600}text.what.s-cancelled,text.mark.s-cancelled{fill:var(--cancel)}
text.what.s-stale{fill:var(--stale)}text.what.s-skipped{fill:var(--muted)}text.what.s-succeeded{fill:var(--muted)}
pre.stderr{background:#1f2328;color:#e6edf3;padding:10px 14px;border-radius:6px;overflow:auto;max-height:260px;margin:6px 0 0}
.failure{margin:14px 0 20px}
footer{margin-top:40px;font-size:13px;color:var(--muted)}
@media (max-width:900px){.cards{grid-template-columns:repeat(2,1fr)}main{padding:18px}}
"""

#: the patterns the status classes fill with (one hidden SVG per page, shared by every chart)
DEFS = """<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<pattern id="hatch-skipped" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eaeef2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8c959f" stroke-width="2"/></pattern>
<pattern id="hatch-cancelled" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#fff1dc"/><path d="M0 0L6 6M6 0L0 6" stroke="#bc6c00" stroke-width="1.2"/></pattern>
<pattern id="dots-stale" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="#f1eafe"/><circle cx="2.5" cy="2.5" r="1.2" fill="#8250df"/></pattern>
<pattern id="hatch-gap" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="8" height="8" fill="#f5f0ff" fill-opacity=".7"/><line x1="0" y1="0" x2="0" y2="8" stroke="#c8b5f5" stroke-width="3"/></pattern>
</defs></svg>"""

#: sorts a table.sortable by the clicked column's data-sort values; reads nothing else of the page
SCRIPT = """<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    if (!th.dataset.type) return;  // a column of links: not sorted
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var numeric = th.dataset.type === "number", body = table.tBodies[0];
      var key = function (row) {
        var v = row.cells[i].dataset.sort;
        return numeric ? (v === "" ? -Infinity : parseFloat(v)) : v;
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c = x < y ? -1 : x > y ? 1 : 0;
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>"""


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)}</title><style>{CSS}</style></head><body>{DEFS}<main>{body}</main>{SCRIPT}</body></html>\n"
    ).encode("utf-8", "surrogateescape")


def page_name(task: str) -> str:
    return f"task-{task}.html"


def task_page(projector: Projector, state: TaskState, doc: dict, gaps: dict[str, list[tuple[int, int]]], link: Linker) -> bytes:
    """The task's page; ``doc``: its ``task_report``."""
    runs = sorted(state.runs.values(), key=lambda r: (r.started_ts, r.run_id))
    newest = runs[::-1][:TIMELINES]
    older = f'<p class="note">The {len(runs) - TIMELINES} older run(s) are in the table above.</p>' if len(runs) > TIMELINES else ""
    timelines = "".join(
        f'<section class="run" data-run="{h(r.run_id)}"><h3>{_badge(_status(r))} <code>{h(r.run_id)}</code> '
        f'<span class="meta">{h(" · ".join(_run_meta(r)))}</span></h3>'
        f"{_timeline(r, gaps.get(r.run_id, []))}</section>"
        for r in newest
    )
    projected = "" if doc["projected"] else '<p class="note">The manifest, log and error files linked here are written by <code>runjournal project</code>; it has not run for this task yet.</p>'
    body = (
        f'<p class="meta"><a href="index.html">All tasks</a></p><h1>Task <code>{h(doc["task_id"])}</code></h1>'
        f'<p class="meta">Report of the journal as of {h(prender.iso_or_none(state.last_ts or None) or "-")} · '
        f'<a href="{link(doc["metrics"])}">metrics.json</a> · <a href="{link(doc["state"])}">state.json</a></p>'
        f"{projected}{_summary(doc)}{_legend()}"
        f'<h2>Runs</h2><p class="note">Click a column header to sort.</p>{_runs_table(runs[::-1], projector.paths, link)}'
        f'<h2>Durations</h2>{_durations([r for r in runs if r.parent_run_id is None] or runs, doc["duration_seconds"]["p50"])}'
        f'<h2>Timelines</h2><p class="note">The newest {len(newest)} run(s), newest first: each stage a bar from its start to its end.</p>{timelines}{older}'
        f"<h2>Heartbeat gaps</h2>{_gap_list(runs, gaps)}"
        f"<h2>Failures</h2>{_failures(projector, runs, link)}"
        "<footer>Written by <code>runjournal report --html</code>; every figure comes from the journal.</footer>"
    )
    return _page(f"runjournal report: {doc['task_id']}", body)


def index_page(docs: list[dict]) -> bytes:
    rows = "".join(
        f'<tr><td><a href="{h(urllib.parse.quote(page_name(d["task_id"]), safe=""))}"><code>{h(d["task_id"])}</code></a></td>'
        f'<td data-sort="{d["runs"]}">{d["runs"]}</td>'
        f'<td>{_badge("stale" if d["latest_run"]["stale"] else d["latest_run"]["status"]) if d["latest_run"] else "-"}</td>'
        f'<td data-sort="{d["success_rate"] if d["success_rate"] is not None else ""}">{h(_rate(d))}</td>'
        f'<td>{h(_secs(d["duration_seconds"]["p50"]))} / {h(_secs(d["duration_seconds"]["p95"]))}</td></tr>'
        for d in docs
    )
    body = (
        "<h1>runjournal report</h1>"
        f'<p class="meta">{len(docs)} task(s) with a journal.</p>'
        f'<table class="tasks"><thead><tr><th>Task</th><th>Runs</th><th>Latest run</th><th>Success rate</th><th>Duration p50 / p95</th></tr></thead><tbody>{rows}</tbody></table>'
    )
    return _page("runjournal report", body)


# -- writing -----------------------------------------------------------------------------


def write_html(settings, tasks: tuple[str, ...], directory: str) -> list[str]:
    """Write the pages of the chosen tasks (default: every task with a journal) and index.html
    into ``directory`` (made if missing); the paths written."""
    chosen = journal_tasks(settings, tasks)
    link = Linker(directory)
    pages, docs = [], []
    for task in chosen:
        projector, state = viewed(settings, task)
        docs.append(task_report(projector, state))
        pages.append((page_name(task), task_page(projector, state, docs[-1], _gaps(settings, task), link)))
    pages.append(("index.html", index_page(docs)))
    makedirs(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, data in pages:
            atomic_write(os.path.join(directory, name), data, dir_fd=fd)
    finally:
        os.close(fd)
    return [os.path.join(directory, name) for name, _ in pages]
