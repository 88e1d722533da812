"""Run the CLI in this process (fast) for tests that need no real signals or concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest

from runjournal.cli.main import main

from . import _LOCATION_VARS


@pytest.fixture
def invoke(tmp_path: Path, capsys, monkeypatch):
    """``invoke(*args, root=tmp_path)`` -> ``(exit_code, stdout, stderr)`` via ``cli.main.main``."""
    for name in _LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, root: Path | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main(["--root", str(root or tmp_path), *map(str, args)])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run
