"""The docs cover what the code offers: every CLI command documented, every linked page present."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.main import cli

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
