"""Nothing the tool writes lands outside its root through a symlink planted below it.

The runs and out directories the user names may be links (the user's choice); below them a
link where runjournal expects its own directory is an error naming it, and nothing is written
through it. Hypothesis tests plant links in every directory the tool creates, then run
project, project --rebuild, verify --repair and exec; or import, watch (one pass) and resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import clean_env, wait_until
from helpers.daemon import Daemon
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


def planted_links(directories: list[str]) -> st.SearchStrategy[list[str]]:
    """One to three of ``directories`` (relative to the root), to be made links before anything runs."""
    return st.lists(st.sampled_from(directories), min_size=1, max_size=3, unique=True)


def plant(root: Path, planted: list[str], target: Path) -> None:
    """Make each directory of ``planted`` that does not exist yet a link to ``target``."""
    target.mkdir(exist_ok=True)
    for rel in planted:
        link = root / rel
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)


def assert_worked_or_one_error(done: subprocess.CompletedProcess, codes: tuple[int, ...] = (0, 1)) -> None:
    """The command worked, or failed saying why in its last line (warnings may come before)."""
    lines = done.stderr.splitlines()
    assert done.returncode in codes, done.stderr
    assert done.returncode == 0 or (lines and lines[-1].startswith("error: ")), done.stderr
    assert "Traceback" not in done.stderr


@settings(max_examples=settings().max_examples // 5 or 1, deadline=None)
@given(planted=planted_links(CREATED), inside=st.booleans())
def test_planted_links_in_any_created_directory_never_lead_a_write_outside(planted: list[str], inside: bool):
    with planted_tree(planted, inside) as (root, outside):
        before = digest(outside)
        for args in (("project",), ("project", "--rebuild"), ("verify", "--repair"), ("exec", "--", "true")):
            assert_worked_or_one_error(cli(root, *args))
            assert digest(outside) == before, f"{' '.join(args)} wrote outside the root through {planted}"


@contextlib.contextmanager
def planted_tree(planted: list[str], inside: bool) -> Iterator[tuple[Path, Path]]:
    """(root, outside): a root holding a failed run, with links planted at ``planted`` that
    point into the root or outside it; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="runjournal-links-"))
    try:
        root, outside = base / "root", base / "outside"
        outside.mkdir()
        (outside / "precious").write_text("keep me")
        populate(root, RunScript(RUN, stages=1).stage(1).fail().items)
        plant(root, planted, (root / "elsewhere-inside") if inside else outside)
        yield root, outside
    finally:
        shutil.rmtree(base)


@dataclass(frozen=True)
class FailedElsewhere:
    """A run that failed in another root, exported; resumed, it succeeds (what its stage
    tests for exists by then). Its token is in a file only the owner can read."""

    run_id: str
    export: Path
    token_file: Path


@pytest.fixture(scope="module")
def failed_elsewhere(tmp_path_factory) -> FailedElsewhere:
    base = tmp_path_factory.mktemp("elsewhere")
    source, flag = base / "source", base / "flag"
    source.mkdir()
    done = cli(source, "exec", "--format", "json", "--", "sh", "-c", f"test -e {shlex.quote(str(flag))}")
    assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    flag.touch()
    export = base / "failed.jsonl"
    done = cli(source, "export", "--run", run_id, "-o", str(export))
    assert done.returncode == 0, done.stderr
    return FailedElsewhere(run_id, export, source / ".runs" / "default" / ".tokens" / run_id)


#: besides CREATED, the directories of the imported run ("{resumed}": its id)
RESUMED_CREATED = [".runs/default/cli/{resumed}", ".runs/default/cli/{resumed}/commands", ".runs/default/cli/{resumed}/errors"]


def watch_once(root: Path) -> None:
    """`watch` until its first catch-up is done (a catch_up line) or has failed (a warning,
    once it fails again a tick later), then SIGTERM: it stops cleanly, exit 0. A watch that
    cannot start at all exits 1 with one error line."""
    daemon = Daemon(root, "--format", "json")
    try:

        def first_pass_done() -> bool:
            while not daemon.lines.empty():
                line = daemon.lines.get_nowait()
                if line is not None:
                    daemon.seen.append(line)
            caught_up = any('"event":"catch_up"' in line for line in daemon.seen)
            return caught_up or "warning: " in daemon.stderr() or daemon.proc.poll() is not None

        wait_until(first_pass_done, "watch's first catch-up, its warning or its end")
        code = daemon.proc.poll()
        if code is None:
            code = daemon.stop()
        done = subprocess.CompletedProcess(daemon.proc.args, code, "\n".join(daemon.seen), daemon.stderr())
    finally:
        daemon.close()
    assert_worked_or_one_error(done)
    assert all(line.startswith("warning: ") for line in done.stderr.splitlines()[: -1 if code else None]), done.stderr


@settings(max_examples=settings().max_examples // 10 or 1, deadline=None)
@given(planted=planted_links(CREATED + RESUMED_CREATED), inside=st.booleans())
def test_planted_links_never_lead_import_watch_or_resume_outside(failed_elsewhere: FailedElsewhere, planted: list[str], inside: bool):
    """import (of an export made earlier), one pass of watch, and resume of a failed run."""
    planted = [rel.format(resumed=failed_elsewhere.run_id) for rel in planted]
    with planted_tree(planted, inside) as (root, outside):
        before = digest(outside)
        done = cli(root, "import", str(failed_elsewhere.export))
        assert (done.returncode, done.stderr) == (0, ""), done.stderr  # the journal's own directories hold no link
        assert digest(outside) == before, f"import wrote outside the root through {planted}"
        watch_once(root)
        assert digest(outside) == before, f"watch wrote outside the root through {planted}"
        assert_worked_or_one_error(cli(root, "resume", failed_elsewhere.run_id, "--token", f"@{failed_elsewhere.token_file}"), codes=(0, 1))
        assert digest(outside) == before, f"resume wrote outside the root through {planted}"


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


def test_resume_through_a_planted_projection_link_names_the_link(failed_elsewhere: FailedElsewhere, tmp_path: Path):
    """The resume works from the journal (the projection files are a warning), or fails
    (exit 1) naming the link; never "no start event" while the journal has the run."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    assert cli(root, "import", str(failed_elsewhere.export)).returncode == 0
    plant(root, [".runs/default/.projection"], outside)
    done = cli(root, "resume", failed_elsewhere.run_id, "--token", f"@{failed_elsewhere.token_file}")
    assert list(outside.iterdir()) == []
    assert done.returncode == 0 or (done.returncode, done.stderr.splitlines()[-1]) == (
        1,
        f"error: {root}/.runs/default/.projection is a symbolic link or not a directory; runjournal writes nothing through it",
    ), done.stderr


@pytest.mark.parametrize("args", [("exec", "--", "true"), ("import", "{export}")], ids=["exec", "import"])
def test_a_derived_runs_dir_that_is_a_link_is_not_written_through(failed_elsewhere: FailedElsewhere, tmp_path: Path, args: tuple[str, ...]):
    """Only the directories the user names (--root, --runs-dir, --out-dir) are followed through a
    link (docs/guarantees.md, Security); <root>/.runs is below the root: the journal, the token
    file and the projections refuse it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / ".runs").symlink_to(outside, target_is_directory=True)
    done = cli(root, *(a.format(export=failed_elsewhere.export) for a in args))
    assert "Traceback" not in done.stderr
    assert list(outside.iterdir()) == [], done.stderr
