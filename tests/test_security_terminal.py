"""Nothing a stage prints, or a journal holds, reaches the terminal as a control sequence.

The journal and the command logs keep the bytes exactly (evidence); what runjournal prints for
people goes through one sanitizer, ``journal.text.for_terminal``.
"""

from __future__ import annotations

import json

import pytest
from helpers.runner_support import cli, cmd, pipeline, task_dir, write_config
from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal.text import for_terminal

HOSTILE = "\x1b[2J\x1b]0;TITLE\x07\x1b[1;32mgreen\x1b[0m\rover\x9b31mc1\x1bP1$r\x1b\\\x1bc\x07\x7f!"


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain text, é and 漢字", "plain text, é and 漢字"),
        ("keep\ttabs\nand newlines", "keep\ttabs\nand newlines"),
        ("\x1b[2Jcleared", "cleared"),
        ("\x1b[1;32mgreen\x1b[0m", "green"),
        ("\x1b]0;TITLE\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bPdevice control\x1b\\after", "after"),
        ("\x9b31mC1 CSI", "C1 CSI"),
        ("\x9d0;title\x9cafter", "after"),
        ("half\rover", "halfover"),
        ("bell\x07 del\x7f nul\x00", "bell del nul"),
        ("lone escape at the end\x1b", "lone escape at the end"),
        ("\x1b]0;never terminated", ""),
        (HOSTILE, "greenoverc1!"),
        ("task a\u202eb", "task a<U+202E>b"),  # would show as "task ab" read right to left
        ("\u2066isolate\u2069 \u200fmark", "<U+2066>isolate<U+2069> <U+200F>mark"),
        ("عربي עברית", "عربي עברית"),  # right-to-left letters themselves stay as they are
    ],
)
def test_escape_sequences_and_controls_are_dropped_and_reordering_controls_named(text: str, shown: str):
    assert for_terminal(text) == shown


@given(st.text())
def test_what_is_left_holds_no_control_and_sanitizing_again_changes_nothing(text: str):
    shown = for_terminal(text)
    assert not any((ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069" for c in shown)
    assert for_terminal(shown) == shown


def test_a_stage_printing_escapes_reaches_no_terminal_but_its_log_keeps_the_bytes(tmp_path):
    script = tmp_path / "evil.py"
    script.write_text(f"import sys; sys.stdout.write({HOSTILE!r} + '\\n'); sys.stderr.write({HOSTILE!r}); sys.exit(3)\n")
    write_config(tmp_path, pipeline("p", cmd("evil", f"python3 {script}")))
    started = cli(tmp_path, "start", "p", "--format", "json")
    run_id = json.loads(started.stdout)["run_id"]
    texts = [started.stderr]
    for args in (("start", "p"), ("tail",), ("replay", run_id), ("status", run_id), ("runs",), ("replay", run_id, "--speed", "1000")):
        done = cli(tmp_path, *args)
        texts += [done.stdout, done.stderr]
    for text in texts:
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\x9b" not in text, text
    assert any("green" in t for t in texts)
    log = next((task_dir(tmp_path) / "cli" / run_id / "commands").glob("*.log")).read_bytes()
    assert HOSTILE.encode() in log  # the evidence is exact
    journal_json = cli(tmp_path, "tail", "--format", "json").stdout  # JSON: every C0 control escaped
    assert "\x1b" not in journal_json and "\\u001b" in journal_json
    manifest = cli(tmp_path, "show", run_id).stdout
    assert "\x1b" not in manifest and "\x9b" not in manifest
    assert json.loads(manifest)["commands"][0]["summary"].startswith("green")  # the summary, sanitized
