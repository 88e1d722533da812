"""`runjournal report --html DIR`: a static page per task, checked as files and in a real browser.

The journal holds real runs (real runner processes, real shell stages): a success, a failure
whose stage id and stderr carry markup, an allowFailure stage skipped, a cancelled run, a run
whose runner was SIGKILLed (stale); a second task holds a scripted run with a heartbeat gap.
The browser tests drive Debian's chromium (helpers/browser.py); they skip where it is absent,
and fail instead under $CI.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

import pytest
from helpers import assert_one_error_line, wait_until
from helpers.browser import Browser
from helpers.histories import RunScript, make_run_id, populate
from helpers.runner_support import (
    FAST,
    cli,
    cmd,
    crashed_run,
    finish,
    output,
    pipeline,
    spawn,
    write_config,
)

REPO = Path(__file__).resolve().parents[1]
HOSTILE = '<script>alert("x")</script> & "quoted"'
HOSTILE_ID = 'build"<b>'
GAP_TASK = "history"
GAP_RUN = make_run_id(9)
STAGE = "sleep 300 & echo $! $$ > pids.tmp; mv pids.tmp pids; wait"


def _start(root: Path, name: str) -> str:
    p = cli(root, "start", name)
    return p.stdout.split()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """The journal's runs and the report written from it: {"root", "dir", "runs": {kind: run id}}."""
    root = tmp_path_factory.mktemp("report-html")
    runs = {"stale": crashed_run(root, limits=FAST)}  # writes its own config; stage 2 left running
    write_config(
        root,
        pipeline("ok", cmd("prepare", "echo ready"), cmd("check", "echo checked")),
        pipeline(
            "bad",
            cmd("lint", "echo 3 warnings; echo style >&2; exit 3", allowFailure=True),
            cmd(HOSTILE_ID, f"printf '%s\\n' {shlex.quote(HOSTILE)} >&2; exit 2", title=HOSTILE),
            cmd("never", "true"),
        ),
        pipeline("slow", cmd("work", STAGE), cmd("after", "true")),
        limits=FAST,
    )
    runs["ok"], runs["bad"] = _start(root, "ok"), _start(root, "bad")
    proc = spawn(root, "start", "slow")
    wait_until(lambda: (root / "pids").exists(), "the slow stage to start")
    runs["cancelled"] = output(root)[0].split()[1]
    assert cli(root, "cancel", runs["cancelled"]).returncode == 0
    assert finish(proc) == 130
    wait_until(lambda: "stale" in cli(root, "status", runs["stale"]).stdout, "the killed run to show stale")
    gap = RunScript(GAP_RUN, task=GAP_TASK, stages=2).start_stage(1).heartbeat(5).heartbeat(45).finish_stage(1).stage(2).complete()
    populate(root, gap.items, task=GAP_TASK)
    p = cli(root, "report", "--html", "report")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    return {"root": root, "dir": root / "report", "runs": runs, "stdout": p.stdout}


def page(site: dict, task: str = "default") -> str:
    return (site["dir"] / f"task-{task}.html").read_text()


# -- the files ---------------------------------------------------------------------------


def test_a_page_per_task_and_an_index(site):
    assert sorted(os.listdir(site["dir"])) == ["index.html", "task-default.html", f"task-{GAP_TASK}.html"]
    assert site["stdout"].splitlines() == [f"wrote report/task-{t}.html" for t in ("default", GAP_TASK)] + ["wrote report/index.html"]
    index = (site["dir"] / "index.html").read_text()
    assert 'href="task-default.html"' in index and f'href="task-{GAP_TASK}.html"' in index


def test_nothing_is_loaded_from_anywhere(site):
    for name in os.listdir(site["dir"]):
        text = (site["dir"] / name).read_text()
        assert not re.search(r"https?://|//[a-z]", text, re.IGNORECASE), name
        assert "default-src 'none'" in text
        assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc=", text), name


def test_journal_text_is_escaped(site):
    text = page(site)
    assert "<b>" not in text and HOSTILE not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quoted&quot;" in text  # the stderr excerpt
    assert 'data-stage="build&quot;&lt;b&gt;"' in text
    assert text.count("<script>") == 1  # the page's own sorter, and nothing else


def test_links_are_relative_to_the_files_under_the_runs_root(site):
    text, bad = page(site), site["runs"]["bad"]
    assert f'href="../.runs/default/cli/{bad}/manifest.json"' in text
    assert f'href="../.runs/default/cli/{bad}/errors/02-build-b.json"' in text
    assert f'href="../.runs/default/cli/{bad}/commands/01-lint.log"' in text


def test_heartbeat_gaps_are_drawn_and_listed(site):
    text = page(site, GAP_TASK)
    assert text.count("<title>heartbeat gap: no heartbeat for 45 s (limit 30 s)</title>") == 1  # the band on the timeline
    assert "No heartbeat gap" not in text
    assert 'silent since (stale' in page(site)  # the stale run's silence, in the other task


def test_pages_are_replaced_never_written_through_a_link(site, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("mine")
    (out / "index.html").symlink_to(victim)
    p = cli(site["root"], "report", "--html", out, "--task", GAP_TASK)
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == "mine"
    assert stat.S_ISREG(os.lstat(out / "index.html").st_mode)


def test_bad_input_is_exit_2(site, tmp_path):
    p = cli(site["root"], "report", "--html", tmp_path / "x", "--task", "nope")
    assert (p.returncode, p.stdout) == (2, "")
    assert_one_error_line(p.stderr, "no journal for task nope at")
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    p = cli(site["root"], "report", "--html", tmp_path / "file")
    assert p.returncode == 2
    assert_one_error_line(p.stderr, str(tmp_path / "file"))  # named, in whatever words the option parser says it


# -- in the browser ----------------------------------------------------------------------


def _artifacts() -> Path:
    where = Path(os.environ.get("RUNJOURNAL_TEST_ARTIFACTS") or REPO / ".artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_page_in_a_browser(site):
    with Browser() as b:
        b.open((site["dir"] / "task-default.html").as_uri())
        b.settle()
        shot = _artifacts() / "report-timeline.png"
        b.screenshot(shot)
        print(f"screenshot: {shot}")
        bars = b.evaluate("Array.from(document.querySelectorAll('svg.timeline rect.bar')).map(r => [r.dataset.status, r.dataset.stage, r.querySelector('title').textContent])")
        # one bar per stage the journal recorded a start or end of: ok 2, bad 2 (+1 never run), cancelled 1, stale 2
        assert len(bars) == 7
        statuses = {s for s, _, _ in bars}
        assert statuses == {"succeeded", "failed", "skipped", "cancelled", "stale"}
        [failed] = [t for s, _, t in bars if s == "failed"]
        assert failed.startswith(f"{HOSTILE_ID} — failed (exit 2)")
        assert b.evaluate("Array.from(document.querySelectorAll('text.what.s-failed')).map(t => t.textContent)") == [f"✕ {HOSTILE_ID} — failed (exit 2)"]

        # each status looks different: fill, outline or dashes (not colour alone for the non-plain ones)
        looks = b.evaluate(
            "Object.fromEntries(['succeeded','failed','skipped','cancelled','stale'].map(s => {"
            " const c = getComputedStyle(document.querySelector(`svg.timeline rect.bar[data-status=${s}]`));"
            " return [s, [c.fill, c.stroke, c.strokeDasharray, c.strokeWidth]]; }))"
        )
        assert len({tuple(v) for v in looks.values()}) == 5, looks
        for s in ("skipped", "cancelled", "stale"):
            assert looks[s][0].startswith("url("), looks  # a pattern, not a colour
        assert looks["failed"][3] != looks["succeeded"][3]  # a heavier outline

        # sorting: by duration, then the other way
        def order():
            return b.evaluate("Array.from(document.querySelectorAll('table.runs tbody tr')).map(r => r.dataset.run)")

        def durations():
            return b.evaluate("Array.from(document.querySelectorAll('table.runs tbody tr')).map(r => r.cells[4].dataset.sort)")

        before = order()
        b.evaluate("document.querySelectorAll('table.runs th')[4].click()")
        up = durations()
        assert [float(v) for v in up if v] == sorted(float(v) for v in up if v) and up[0] == ""  # the stale run has none: first
        b.evaluate("document.querySelectorAll('table.runs th')[4].click()")
        assert durations() == up[::-1]
        b.evaluate("document.querySelectorAll('table.runs th')[0].click()")
        assert order() == sorted(before)

        b.evaluate("document.querySelectorAll('table.runs th')[3].click(); document.querySelectorAll('table.runs th')[3].click()")
        assert order() == before  # newest first, as written
        assert b.errors == []


def test_the_browser_reports_a_blocked_load(tmp_path):
    """The check above would see a page that tries to load something: the policy blocks it and
    the browser says so as an error."""
    probe = tmp_path / "probe.html"
    probe.write_text(f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="default-src \'none\'"><img src="{(tmp_path / "x.png").as_uri()}">')
    with Browser() as b:
        b.open(probe.as_uri())
        b.settle()
        assert any("Content Security Policy" in e for e in b.errors), b.errors
