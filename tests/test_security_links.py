"""Nothing the tool writes lands outside its root through a symlink planted below it.

The runs and out directories the user names may be links (the user's choice); below them a
link where runjournal expects its own directory is an error naming it, and nothing is written
through it. A hypothesis test plants links in every directory the tool creates.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import clean_env
from helpers.histories import RunScript, make_run_id, populate
from hypothesis import given, settings
from hypothesis import strategies as st

RUN = make_run_id(1)
#: every directory below the root that the tool creates (relative to the root)
CREATED = [
    ".runs/default/cli",
    f".runs/default/cli/{RUN}",
    f".runs/default/cli/{RUN}/commands",
    ".runs/default/metrics",
    ".runs/default/.projection",
    ".runs/default/.tokens",
    "out/default",
    "out",
]


def digest(top: Path) -> str:
    h = hashlib.sha256()
    for directory, dirs, files in os.walk(top):
        dirs.sort()
        h.update(directory.encode())
        for name in sorted(files):
            h.update(name.encode() + Path(directory, name).read_bytes())
    return h.hexdigest()


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), *args], capture_output=True, text=True, env=clean_env(), cwd=root, timeout=120)


@settings(max_examples=settings().max_examples // 5 or 1, deadline=None)
@given(planted=st.lists(st.sampled_from(CREATED), min_size=1, max_size=3, unique=True), inside=st.booleans())
def test_planted_links_in_any_created_directory_never_lead_a_write_outside(planted: list[str], inside: bool):
    base = Path(tempfile.mkdtemp(prefix="runjournal-links-"))
    try:
        root, outside = base / "root", base / "outside"
        outside.mkdir()
        (outside / "precious").write_text("keep me")
        populate(root, RunScript(RUN, stages=1).stage(1).fail().items)
        for rel in planted:
            link = root / rel
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            target = (root / "elsewhere-inside") if inside else outside
            target.mkdir(exist_ok=True)
            link.symlink_to(target, target_is_directory=True)
        before = digest(outside)
        for args in (("project",), ("project", "--rebuild"), ("verify", "--repair"), ("exec", "--", "true")):
            done = cli(root, *args)
            lines = done.stderr.splitlines()
            assert done.returncode in (0, 1), done.stderr
            assert done.returncode == 0 or (lines and lines[-1].startswith("error: ")), done.stderr
            assert "Traceback" not in done.stderr
        assert digest(outside) == before, f"something was written outside the root through {planted}"
    finally:
        shutil.rmtree(base)


def test_a_planted_run_directory_link_is_an_error_naming_it(tmp_path: Path):
    root = tmp_path / "root"
    populate(root, RunScript(RUN, stages=1).stage(1).complete().items)
    (tmp_path / "outside").mkdir()
    (root / ".runs" / "default" / "cli").mkdir(parents=True)
    (root / ".runs" / "default" / "cli" / RUN).symlink_to(tmp_path / "outside")
    done = cli(root, "project")
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"{root}/.runs/default/cli/{RUN} is a symbolic link or not a directory; runjournal writes nothing through it")
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_task_directory_that_is_a_link_is_not_a_task(tmp_path: Path):
    root = tmp_path / "root"
    populate(tmp_path / "real", RunScript(RUN).items)
    (root / ".runs").mkdir(parents=True)
    (root / ".runs" / "default").symlink_to(tmp_path / "real" / ".runs" / "default")
    assert cli(root, "runs").stdout == "no runs\n"
    done = cli(root, "exec", "--", "true")
    assert done.returncode == 1
    assert done.stderr == f"error: cannot open journal {root}/.runs/default/journal for writing: {root}/.runs/default is a symbolic link or not a directory; runjournal writes nothing through it\n"
