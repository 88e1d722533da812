"""docs/api.md: every example runs as written, in order, in one scratch directory, and prints
exactly the output shown under it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import clean_env

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def examples() -> list[tuple[str, str]]:
    """(code, expected output) of every python block followed by a text block."""
    found = re.findall(r"```python\n(.*?)```\n\n```text\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(found) >= 5, "docs/api.md lost its examples"
    return found


def test_every_example_of_the_api_page_prints_what_it_shows(tmp_path: Path):
    for n, (code, shown) in enumerate(examples(), 1):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=clean_env(), timeout=60)
        assert done.returncode == 0, f"example {n} failed:\n{code}\n{done.stderr}"
        assert done.stdout == shown, f"example {n} printed something else:\n{code}"
