"""The docs cover what the code offers: every CLI command documented, every linked page present."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runjournal.cli.main import cli
from runjournal.journal import Journal
from runjournal.journal import events as ev

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _documented_commands() -> set[str]:
    """Commands named in a heading or a synopsis line of docs/cli.md."""
    text = (DOCS / "cli.md").read_text()
    found = set()
    for line in text.splitlines():
        found.update(re.findall(r"^#+ .*?`runjournal (\w+)", line))
        found.update(re.findall(r"^#+ .*?`(\w+)`", line))
        found.update(re.findall(r"^runjournal (\w+)", line))
    return found


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_in_cli_md(name):
    assert name in _documented_commands(), f"command {name!r} has no heading or synopsis in docs/cli.md"


@pytest.mark.parametrize("page", ["README.md", "docs/guide.md"])
def test_linked_docs_exist(page):
    text = (ROOT / page).read_text()
    base = (ROOT / page).parent
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text)
    assert links, f"{page} links no docs page"
    missing = [link for link in links if not (base / link).resolve().is_file()]
    assert not missing, f"{page} links pages that do not exist: {missing}"


def _fenced_block_after(page: str, marker: str) -> str:
    text = (DOCS / page).read_text()
    assert marker in text, f"{page} no longer says {marker!r}"
    return text.split(marker, 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]


def test_the_constants_journal_format_md_quotes_are_the_codes():
    """The block in docs/journal-format.md: its command, run, prints exactly what it shows."""
    block = _fenced_block_after("journal-format.md", "The constants quoted below, printed from the code:")
    first, *rest = block.splitlines()
    assert first == '$ .venv/bin/python -c "', block
    end = rest.index('"')
    code, shown = "\n".join(rest[:end]), rest[end + 1 :]
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == shown


def test_the_damaged_spill_name_journal_format_md_gives_is_the_one_written(tmp_path: Path):
    text = (DOCS / "journal-format.md").read_text()
    named = set(re.findall(r"(<clock>-<pid>-<counter>[.\w]*\.damaged)", text))
    assert len(named) == 1, f"the page names a damaged spill in more than one way: {named}"
    pattern = re.escape(named.pop()).replace("<clock>", r"\d{20}").replace("<pid>", r"\d+").replace("<counter>", r"\d{6}")
    journal = tmp_path / "journal"
    with Journal(str(journal)) as j:
        j.append("a", ev.Heartbeat())
    (journal / "pending").mkdir(exist_ok=True)
    (journal / "pending" / "01795726964628116759-17522-000001.rjp").write_bytes(b"RJPENDG1 not a spilled batch")
    with Journal(str(journal)) as j:
        j.flush()  # merges what is pending: this file fails its checksum and is set aside
    assert [n for n in os.listdir(journal / "pending") if re.fullmatch(pattern, n)] == ["01795726964628116759-17522-000001.rjp.damaged"]
