"""`project --rebuild` builds beside the live files and swaps them in only once it is whole.

A corrupt journal leaves the projections exactly as they were; a rebuild SIGKILLed while it
builds leaves them as they were too, and the next `project` removes its staging; a crash at
any step of the swap is finished by the next projector.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, assert_one_error_line, clean_env, wait_until
from helpers.histories import SECOND, T0, RunScript, every_point_of_life, make_run_id, populate
from helpers.trees import copy_journal, diff, fingerprint, projection_tree

from runjournal.projections import Projector

#: where a rebuild stages its files, and the marker of a committed swap (projections/swap.py)
STAGING, MARKER = ".projection/rebuild", ".projection/swap"

TASK_FILES = ("metrics.json", ".projection/checkpoint")


def live_files(root: Path, task: str = "default") -> dict[str, tuple]:
    """Every projection file and directory of the task, with its inode, times and bytes: the
    same answer means nothing was written, moved or removed."""
    task_dir = root / ".runs" / task
    found = {}
    for top in (task_dir / "cli", task_dir / "metrics", root / "out" / task):
        found.update({f"{top.relative_to(root)}/{k}": v for k, v in fingerprint(top).items() if k != "."})
    for name in TASK_FILES:
        found.update({f"{task}/{name}": v for v in fingerprint(task_dir / name).values()})
    return found


def expected_tree(root: Path, scratch: Path) -> dict[str, bytes]:
    """The projections a rebuild of ``root``'s journal gives, on a copy of the journal."""
    copy_journal(root, scratch)
    done = cli(scratch, "project", "--rebuild")
    assert done.returncode == 0, done.stderr
    return projection_tree(scratch)


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(root), *args], capture_output=True, text=True, env=clean_env(), cwd=root, timeout=120
    )


def flip_a_byte_in_the_middle(journal_dir: Path) -> tuple[str, int]:
    """Damage one record in the middle of the journal; return where `verify` reports it."""
    [segment] = [p for p in journal_dir.iterdir() if p.name.startswith("seg-")]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x40
    segment.write_bytes(bytes(data))
    done = cli(journal_dir.parents[2], "verify", "--format", "json")
    assert done.returncode == 1, done.stdout
    problem = json.loads(done.stdout)["problems"][0]
    return problem["segment"], problem["offset"]


def test_a_corrupt_journal_leaves_the_projections_exactly_as_they_were(tmp_path):
    items, _ = every_point_of_life()
    journal_dir = Path(populate(tmp_path, items))
    assert cli(tmp_path, "project").returncode == 0
    before, tree = live_files(tmp_path), projection_tree(tmp_path)
    assert any(path.endswith("manifest.json") for path in tree) and "out/default/state.json" in tree
    segment, offset = flip_a_byte_in_the_middle(journal_dir)

    done = cli(tmp_path, "project", "--rebuild")
    assert (done.returncode, done.stdout) == (1, "")
    assert_one_error_line(
        done.stderr,
        f"error: task default: rebuild stopped at a corrupt record in {segment} at byte {offset} (",
        "; the projection files were left as they were (`runjournal verify --task default` reports every problem of the journal)",
    )
    assert live_files(tmp_path) == before  # not a byte, inode or time changed
    assert projection_tree(tmp_path) == tree
    assert sorted(os.listdir(tmp_path / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]  # no staging left


def test_json_format_fails_the_same_way(tmp_path):
    journal_dir = Path(populate(tmp_path, RunScript(make_run_id(1)).stage(1).stage(2).items))
    assert cli(tmp_path, "project").returncode == 0
    before = live_files(tmp_path)
    segment, offset = flip_a_byte_in_the_middle(journal_dir)
    done = cli(tmp_path, "project", "--rebuild", "--format", "json")
    assert (done.returncode, done.stdout) == (1, "")
    assert_one_error_line(done.stderr, f"a corrupt record in {segment} at byte {offset}", "left as they were")
    assert live_files(tmp_path) == before


def big_history(root: Path, records: int) -> None:
    """Forty runs of one stage that printed ``records`` chunks between them, interleaved."""
    scripts = []
    for n in range(40):
        run = RunScript(make_run_id(n), start_ts=T0 + n * SECOND, stages=1).start_stage(1)
        for _ in range(records // 40):
            run.output(1, b"a line of output\n", gap=0.001)
        scripts.append(run.finish_stage(1).complete())
    populate(root, sorted((it for s in scripts for it in s.items), key=lambda it: it.ts))


def test_a_rebuild_killed_while_it_builds_leaves_the_files_and_the_next_project_is_right(tmp_path):
    root = tmp_path / "root"
    # more records than a rebuild folds before its first write (FLUSH_EVERY): the staged files
    # appear a third of the way in, where the rebuild is killed
    big_history(root, 300_000)
    assert cli(root, "project").returncode == 0
    late = RunScript(make_run_id(99), start_ts=T0 + 3600 * SECOND, stages=2).stage(1).stage(2, exit_code=3).fail()
    populate(root, late.items)  # appended since: the next `project` must catch it up
    before = live_files(root)

    staged = root / ".runs" / "default" / STAGING / "cli"
    proc = subprocess.Popen([sys.executable, "-m", "runjournal", "--root", str(root), "project", "--rebuild"], env=clean_env(), cwd=root)
    try:
        wait_until(lambda: staged.exists() or proc.poll() is not None, "the rebuild to write its first staged files")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL, "the rebuild ended before it could be killed mid-way"
    assert staged.exists() and not (root / ".runs" / "default" / MARKER).exists()  # killed while building
    assert live_files(root) == before  # the live files are untouched

    done = cli(root, "project")
    assert done.returncode == 0, done.stderr
    assert not (staged.parent).exists()  # the unfinished rebuild's staging is gone
    got = projection_tree(root)
    assert got == expected_tree(root, tmp_path / "scratch"), diff(got, expected_tree(root, tmp_path / "scratch2"))
    assert json.loads((root / ".runs" / "default" / "cli" / late.run_id / "manifest.json").read_bytes())["status"] == "failed"


class Crash(BaseException):
    """Stands for SIGKILL at one step of the swap: nothing after it happens."""


#: what the swap does to the filesystem, step by step (each a point where it can be killed)
STEPS = ("rename", "replace", "unlink", "rmdir")


@pytest.fixture
def projected(tmp_path) -> Path:
    """A projected task, with a run appended since, a run's files deleted by hand and a stray
    directory in cli/: a rebuild changes all three."""
    root = tmp_path / "base"
    items, _ = every_point_of_life()
    populate(root, items)
    assert Projector(str(root / ".runs"), str(root / "out"), "default", sync=False).catch_up() is not None
    populate(root, RunScript(make_run_id(50), start_ts=T0 + 99 * SECOND, stages=1).stage(1).complete().items)
    shutil.rmtree(root / ".runs" / "default" / "cli" / make_run_id(1))
    (root / ".runs" / "default" / "cli" / "left-over").mkdir()
    return root


def swap_steps(monkeypatch, crash_at: int | None = None) -> list[str]:
    """Patch ``swap.finish`` to note each change it makes to the filesystem, and, with
    ``crash_at``, raise Crash instead of making the ``crash_at``-th. Returns the notes."""
    from runjournal.projections import swap

    finish, exchange = swap.finish, swap.exchange
    real = {name: getattr(os, name) for name in STEPS}
    notes: list[str] = []

    def before(what: str) -> None:
        notes.append(what)
        if len(notes) == crash_at:
            raise Crash(f"killed before {what}")

    def noting(place, below, sync):
        with monkeypatch.context() as m:
            for name in STEPS:
                m.setattr(os, name, lambda *a, _name=name, **k: (before(f"{_name} {a[0]}"), real[_name](*a, **k))[1])
            m.setattr(swap, "exchange", lambda *a: (before(f"exchange {a[0]}"), exchange(*a))[1])
            finish(place, below, sync)

    monkeypatch.setattr(swap, "finish", noting)
    return notes


def rebuilt_in_process(root: Path, scratch: Path) -> dict[str, bytes]:
    copy_journal(root, scratch)
    Projector(str(scratch / ".runs"), str(scratch / "out"), "default", sync=False).rebuild()
    return projection_tree(scratch)


def test_a_crash_at_any_step_of_the_swap_is_finished_by_the_next_projector(projected, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        trial = tmp_path / "trial"
        shutil.copytree(projected, trial, symlinks=True)
        notes = swap_steps(m)
        Projector(str(trial / ".runs"), str(trial / "out"), "default", sync=False).rebuild()
    # every step up to the marker's removal, then the first and a middle one of removing the old trees
    marker_gone = notes.index("unlink swap")
    points = [*range(1, marker_gone + 3), (marker_gone + 2 + len(notes)) // 2]
    assert notes[:3] == ["exchange cli", "exchange metrics", "replace metrics.json"], notes
    for step in points:
        root = tmp_path / f"crash-{step}"
        shutil.copytree(projected, root, symlinks=True)
        with monkeypatch.context() as m:
            swap_steps(m, crash_at=step)
            with pytest.raises(Crash):
                Projector(str(root / ".runs"), str(root / "out"), "default", sync=False).rebuild()
        state_dir = root / ".runs" / "default" / ".projection"
        assert (root / ".runs" / "default" / MARKER).exists() == (step <= marker_gone + 1), notes[step - 1]
        # the next projector, a process of its own, finishes the swap before anything else
        # (and records the queued run stale: what a rebuild of the journal then gives)
        done = cli(root, "project")
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(state_dir)) == ["checkpoint", "lock"]
        got, expected = projection_tree(root), rebuilt_in_process(root, tmp_path / f"expected-{step}")
        assert got == expected, f"killed before {notes[step - 1]}:\n{diff(got, expected)}"


def test_a_link_planted_in_place_of_cli_is_swapped_out_as_a_name_never_followed(projected, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    cli_dir = projected / ".runs" / "default" / "cli"
    shutil.rmtree(cli_dir)
    cli_dir.symlink_to(outside, target_is_directory=True)
    done = cli(projected, "project", "--rebuild")
    assert done.returncode == 0, done.stderr
    assert not cli_dir.is_symlink() and cli_dir.is_dir()
    assert [p.name for p in outside.iterdir()] == ["precious"] and (outside / "precious").read_text() == "keep me"
    assert projection_tree(projected) == expected_tree(projected, tmp_path / "expected")


def test_without_renameat2_the_live_directory_is_moved_aside_first(projected, tmp_path, monkeypatch):
    from runjournal.projections import swap

    monkeypatch.setattr(swap, "_renameat2", None)
    Projector(str(projected / ".runs"), str(projected / "out"), "default", sync=False).rebuild()
    assert projection_tree(projected) == expected_tree(projected, tmp_path / "expected")
    assert sorted(os.listdir(projected / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]
