"""What pyproject.toml declares is what CI tests: its floors are the pins of .ci/floors.txt."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared_floors() -> dict[str, str]:
    """name -> floor of every requirement in pyproject.toml's dependency lists (the project's
    runtime and test dependencies; the build backend is pip's business)."""
    text = (ROOT / "pyproject.toml").read_text()
    lists = re.findall(r"^(?:dependencies|test|postgres) = \[(.*?)\]$", text, re.M | re.S)
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?>=([0-9][0-9.]*)"', " ".join(lists)))


def _pinned() -> dict[str, str]:
    lines = (ROOT / ".ci" / "floors.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def test_every_declared_floor_is_pinned_for_ci_and_nothing_else():
    declared = _declared_floors()
    assert {"msgspec", "portalocker", "watchdog", "click", "hypothesis", "pytest", "jsonschema"} <= set(declared)
    assert _pinned() == declared


def test_every_requirement_has_a_floor():
    text = (ROOT / "pyproject.toml").read_text()
    lists = re.findall(r"^(?:dependencies|test|postgres) = \[(.*?)\]$", text, re.M | re.S)
    requirements = re.findall(r'"([^"]+)"', " ".join(lists))
    assert requirements and all(">=" in r for r in requirements), requirements


def test_ci_runs_the_readme_test_command_on_newest_and_on_floors():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    test_command = ".venv/bin/python -m pytest -q"
    assert f"```sh\n{test_command}\n```" in readme
    assert f"\n{test_command}\n" in ci
    assert "-c .ci/floors.txt" in ci


def test_the_wheel_claims_one_top_level_name(tmp_path: Path):
    """Installed, the project is `runjournal` alone: no generic `cli`, `journal`, `runner` or
    `projections` lands in site-packages to shadow (or be shadowed by) a user's own."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("runjournal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"runjournal", wheel.name.split("-py")[0] + ".dist-info"}
    for layer in ("journal", "projections", "runner", "cli"):
        assert f"runjournal/{layer}/__init__.py" in names
    assert "runjournal/__main__.py" in names
