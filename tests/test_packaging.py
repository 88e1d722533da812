"""What pyproject.toml declares is what CI tests: its floors are the pins of .ci/floors.txt."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared_floors() -> dict[str, str]:
    """name -> floor of every requirement in pyproject.toml's dependency lists (the project's
    runtime and test dependencies; the build backend is pip's business)."""
    text = (ROOT / "pyproject.toml").read_text()
    lists = re.findall(r"(?:dependencies|test) = \[([^\]]*)\]", text)
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)"', " ".join(lists)))


def _pinned() -> dict[str, str]:
    lines = (ROOT / ".ci" / "floors.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def test_every_declared_floor_is_pinned_for_ci_and_nothing_else():
    declared = _declared_floors()
    assert {"msgspec", "portalocker", "watchdog", "click", "hypothesis", "pytest", "jsonschema"} <= set(declared)
    assert _pinned() == declared


def test_every_requirement_has_a_floor():
    text = (ROOT / "pyproject.toml").read_text()
    lists = re.findall(r"(?:dependencies|test) = \[([^\]]*)\]", text)
    requirements = re.findall(r'"([^"]+)"', " ".join(lists))
    assert requirements and all(">=" in r for r in requirements), requirements


def test_ci_runs_the_readme_test_command_on_newest_and_on_floors():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    test_command = ".venv/bin/python -m pytest -q"
    assert f"```sh\n{test_command}\n```" in readme
    assert f"\n{test_command}\n" in ci
    assert "-c .ci/floors.txt" in ci
