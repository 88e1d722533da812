"""Commands that only read write nothing: not a projection file, not a lock, not an event."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.histories import RunScript, make_run_id, populate

from runjournal.projections import Projector


def tree(root: Path) -> dict[str, tuple]:
    """Every file and directory under ``root`` with what a write would change."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return found


@pytest.fixture
def busy_root(tmp_path: Path) -> tuple[Path, str, str]:
    """A root with a finished run, projected, then a run appended since that went silent."""
    done = RunScript(make_run_id(1), stages=1).stage(1).complete()
    populate(tmp_path, done.items)
    Projector(str(tmp_path / ".runs"), str(tmp_path / "out"), "default").catch_up()
    silent = RunScript(make_run_id(2), stages=2).stage(1)
    populate(tmp_path, silent.items)
    return tmp_path, done.run_id, silent.run_id


READS = [
    ("runs",),
    ("runs", "--format", "json", "--status", "stale"),
    ("show", "{silent}"),
    ("status", "{silent}"),
    ("status", "{done}", "--format", "json"),
    ("replay", "{silent}"),
    ("replay", "{done}", "--at", "2"),
    ("tail",),
    ("tail", "--run", "{done}"),
    ("export",),
    ("verify",),
    ("tail", "--format", "json"),
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_a_read_command_changes_nothing_on_disk(busy_root, run_cli, args):
    root, done, silent = busy_root
    before = tree(root)
    code, out, err = run_cli(*(a.format(done=done, silent=silent) for a in args))
    assert code in (0, 1), err  # 1: the silent run's status (stale)
    assert err == ""
    assert out
    assert tree(root) == before


def test_status_shows_the_silent_run_stale_and_project_records_it(busy_root, run_cli):
    root, _, silent = busy_root
    code, out, _ = run_cli("status", silent)
    assert code == 1 and "(stale)" in out
    code, out, _ = run_cli("project")
    assert code == 0 and "1 run(s) marked stale" in out
    assert run_cli("status", silent)[0] == 1
