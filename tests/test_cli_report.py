"""`runjournal report`: each task's evidence as text, JSON and Markdown, and `--update` of a
PRD overview's "Run Manifest Link" / "Metrics / State Snapshots" lines."""

from __future__ import annotations

import json

from helpers import assert_one_error_line
from helpers.histories import SECOND, T0, RunScript, make_run_id, populate
from helpers.invoke import invoke  # noqa: F401 - fixture
from runjournal.journal import check

PRUNE = "0801-dead-code-pruning"
DOCS = "0802-docs-refresh"
OK1, FAIL, OK2, DOC1 = make_run_id(1), make_run_id(2, T0 + 60 * SECOND), make_run_id(3, T0 + 120 * SECOND), make_run_id(4)


def journals(root) -> None:
    """Task 0801: a success, a failure (stage 2, with stderr), a later success; task 0802: one success."""
    ok1 = RunScript(OK1, task=PRUNE, stages=2).stage(1).stage(2).complete()
    fail = RunScript(FAIL, task=PRUNE, stages=2, start_ts=T0 + 60 * SECOND).stage(1)
    fail.start_stage(2).fail_stage(2, exit_code=3, stderr="".join(f"line {n}\n" for n in range(1, 13))).fail("stage-2 failed")
    ok2 = RunScript(OK2, task=PRUNE, stages=1, start_ts=T0 + 120 * SECOND).stage(1).complete()
    populate(root, ok1.items + fail.items + ok2.items, task=PRUNE)
    populate(root, RunScript(DOC1, task=DOCS, stages=1).stage(1).complete().items, task=DOCS)


def test_json_reports_every_task(tmp_path, invoke):
    journals(tmp_path)
    code, out, err = invoke("report", "--format", "json")
    assert (code, err) == (0, "")
    docs = json.loads(out)["tasks"]
    assert [d["task_id"] for d in docs] == [PRUNE, DOCS]
    prune = docs[0]
    runs = tmp_path / ".runs" / PRUNE
    assert prune["runs"] == 3
    assert prune["by_status"] == {"queued": 0, "in_progress": 0, "succeeded": 2, "failed": 1, "cancelled": 0, "stale": 0}
    assert prune["success_rate"] == 0.6667
    assert prune["duration_seconds"] == {"p50": 1.901, "p95": 3.1}
    assert prune["latest_run"]["run_id"] == OK2 and prune["latest_success"]["run_id"] == OK2
    assert prune["manifest"] == str(runs / "cli" / OK2 / "manifest.json")
    assert prune["metrics"] == str(runs / "metrics.json")
    assert prune["state"] == str(tmp_path / "out" / PRUNE / "state.json")
    assert prune["projected"] is False
    assert prune["last_failure"] == {
        "run_id": FAIL,
        "started_at": "2025-12-01T09:38:11.576Z",
        "status_detail": "failed: stage-2 failed",
        "stage_index": 2,
        "stage_id": "stage-2",
        "exit_code": 3,
        "stderr_excerpt": "".join(f"line {n}\n" for n in range(3, 13)).rstrip("\n"),
        "error_file": str(runs / "cli" / FAIL / "errors" / "02-stage-2.json"),
        "manifest": str(runs / "cli" / FAIL / "manifest.json"),
    }
    assert docs[1]["last_failure"] is None and docs[1]["success_rate"] == 1.0


def test_text_for_one_task(tmp_path, invoke):
    journals(tmp_path)
    invoke("project")
    code, out, err = invoke("report", "--task", PRUNE)
    assert (code, err) == (0, "")
    runs = tmp_path / ".runs" / PRUNE
    head = check(str(runs / "journal"))
    assert out == "\n".join(
        [
            f"task {PRUNE}",
            f"  latest run:      {OK2}  succeeded  2025-12-01T09:39:11.576Z  1.6 s",
            f"  latest success:  {OK2}  succeeded  2025-12-01T09:39:11.576Z  1.6 s",
            f"  manifest:        {runs / 'cli' / OK2 / 'manifest.json'}",
            f"  metrics.json:    {runs / 'metrics.json'}",
            f"  state.json:      {tmp_path / 'out' / PRUNE / 'state.json'}",
            "  runs:            3 run(s): succeeded 2, failed 1",
            "  success rate:    66.7%",
            "  duration:        p50 1.901 s, p95 3.1 s",
            f"  chain head:      {head.chain_head} at sequence {head.chain_seq}",
            f"  last failure:    {FAIL}, stage 2 stage-2 (exit 3): failed: stage-2 failed",
            *(f"    | line {n}" for n in range(3, 13)),
            "",
        ]
    )


def test_markdown_paths_are_relative_to_the_root(tmp_path, invoke):
    journals(tmp_path)
    code, out, err = invoke("report", "--format", "markdown", "-t", DOCS)
    assert (code, err) == (0, "")
    manifest = f".runs/{DOCS}/cli/{DOC1}/manifest.json"
    assert out.splitlines()[:4] == [
        f"## Task `{DOCS}`",
        "",
        f"- Run Manifest Link: [`{manifest}`]({manifest}) (run `{DOC1}`, succeeded)",
        f"- Metrics / State Snapshots: [`.runs/{DOCS}/metrics.json`](.runs/{DOCS}/metrics.json), [`out/{DOCS}/state.json`](out/{DOCS}/state.json)",
    ]
    assert "- Last failure: -" in out
    code, out, _ = invoke("report", "--format", "markdown", "-t", PRUNE)
    assert "  ```\n  line 3\n" in out and out.endswith("  line 12\n  ```\n")


def test_an_unknown_task_is_exit_2(tmp_path, invoke):
    journals(tmp_path)
    code, out, err = invoke("report", "--task", PRUNE, "--task", "0999-nope")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "no journal for task 0999-nope at")


PRD = """# PRD overview\r
\r
Intro text mentioning - Run Manifest Link: outside any section.\r
\r
## Task 0801 — Dead code pruning\r
\r
- Owner: someone\r
- Run Manifest Link: _(pending — capture first diagnostics run under `.runs/0801-dead-code-pruning/cli/<run-id>/manifest.json`)._\r
- Metrics / State Snapshots: _(pending — populate `.runs/0801-dead-code-pruning/metrics.json` and `out/0801-dead-code-pruning/state.json`)._\r
\r
## Task 0802 – Docs refresh (`0802-docs-refresh`)
- Run Manifest Link: [old](elsewhere/manifest.json)
- Metrics / State Snapshots: stale text

### Notes
  - Run Manifest Link: indented, left alone

## Task 0803 — Not run yet
- Run Manifest Link: _(pending)_
- Metrics / State Snapshots: _(pending)_"""


def prd_lines(task: str, run_id: str, up: str = "../") -> tuple[str, str]:
    manifest = f"{up}.runs/{task}/cli/{run_id}/manifest.json"
    return (
        f"- Run Manifest Link: [`{manifest}`]({manifest}) (run `{run_id}`, succeeded)",
        f"- Metrics / State Snapshots: [`{up}.runs/{task}/metrics.json`]({up}.runs/{task}/metrics.json), [`{up}out/{task}/state.json`]({up}out/{task}/state.json)",
    )


def expected_prd() -> str:
    lines = PRD.split("\n")
    prune, docs = prd_lines(PRUNE, OK2), prd_lines(DOCS, DOC1)
    lines[7], lines[8] = prune[0] + "\r", prune[1] + "\r"
    lines[11], lines[12] = docs
    return "\n".join(lines)


def test_update_prints_a_diff_and_writes_nothing(tmp_path, invoke):
    journals(tmp_path)
    (tmp_path / "docs").mkdir()
    prd = tmp_path / "docs" / "PRD.md"
    prd.write_bytes(PRD.encode())
    code, out, err = invoke("report", "--update", prd)
    assert code == 0
    assert err == f"warning: {prd}: sections left alone, no journal for their task: 0803-not-run-yet\n"
    assert prd.read_bytes() == PRD.encode()
    diff = out.split("\n")
    assert diff[:2] == [f"--- a/{prd}", f"+++ b/{prd}"]
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    prune, docs = prd_lines(PRUNE, OK2), prd_lines(DOCS, DOC1)
    assert [line.rstrip("\r") for line in added] == ["+" + prune[0], "+" + prune[1], "+" + docs[0], "+" + docs[1]]
    assert [line.rstrip("\r") for line in removed] == ["-" + PRD.split("\n")[i].rstrip("\r") for i in (7, 8, 11, 12)]


def test_update_write_changes_exactly_those_lines_then_is_a_no_op(tmp_path, invoke):
    journals(tmp_path)
    (tmp_path / "docs").mkdir()
    prd = tmp_path / "docs" / "PRD.md"
    prd.write_bytes(PRD.encode())
    code, out, _ = invoke("report", "--update", prd, "--write")
    assert (code, out) == (0, f"{prd}: 4 line(s) rewritten\n")
    assert prd.read_bytes() == expected_prd().encode()  # CRLF kept, no newline added at the end
    code, out, _ = invoke("report", "--update", prd)
    assert (code, out) == (0, "")
    code, out, _ = invoke("report", "--update", prd, "--write")
    assert (code, out) == (0, f"{prd}: up to date\n")
    assert prd.read_bytes() == expected_prd().encode()


def test_update_only_the_chosen_tasks(tmp_path, invoke):
    journals(tmp_path)
    prd = tmp_path / "PRD.md"
    prd.write_bytes(PRD.encode())
    code, _, err = invoke("report", "--update", prd, "--write", "--task", DOCS)
    assert code == 0 and f"no journal for their task: {PRUNE}, 0803-not-run-yet" in err
    text = prd.read_bytes().decode()
    assert "_(pending — capture first diagnostics run" in text
    assert prd_lines(DOCS, DOC1, up="")[0] in text


def test_write_needs_update(tmp_path, invoke):
    journals(tmp_path)
    code, out, err = invoke("report", "--write")
    assert (code, out) == (2, "")
    assert_one_error_line(err, "--write goes with --update FILE.md")
