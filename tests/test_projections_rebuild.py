"""`project --rebuild` folds the whole journal first, then renders over the live files.

A corrupt journal leaves the projections exactly as they were, even once the fold has rendered
files that differ from them; a rebuild SIGKILLed while it folds leaves them as they were too,
and one killed while it writes leaves each file old or new and a marker, after which the next
projector rebuilds before it trusts a file. Over any tree (stale files, changed ones, missing
ones, links, FIFOs) the result is the tree a rebuild into an empty directory gives, and a file
that already holds the right bytes is not written again.
"""

from __future__ import annotations

import errno
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

from runjournal.projections import Projector, RebuildFailed

#: while it exists, a rebuild is writing the live files (projections/rebuild.py)
MARKER = ".projection/rebuilding"

TASK_FILES = ("metrics.json", ".projection/checkpoint")


def live_files(root: Path, task: str = "default") -> dict[str, tuple]:
    """Every projection file and directory of the task, with its inode, times and bytes: the
    same answer means nothing was written, moved or removed."""
    task_dir = root / ".runs" / task
    found = {}
    for top in (task_dir / "cli", task_dir / "metrics", root / "out" / task):
        if top.exists():
            found.update({f"{top.relative_to(root)}/{k}": v for k, v in fingerprint(top).items()})
    for name in TASK_FILES:
        if (task_dir / name).exists():
            found.update({f"{task}/{name}": v for v in fingerprint(task_dir / name).values()})
    return found


def projector(root: Path) -> Projector:
    return Projector(str(root / ".runs"), str(root / "out"), "default", sync=False)


def from_scratch(root: Path, scratch: Path) -> dict[str, bytes]:
    """The projections a rebuild of ``root``'s journal gives in an empty directory."""
    copy_journal(root, scratch)
    projector(scratch).rebuild()
    return projection_tree(scratch)


def directories(root: Path) -> set[str]:
    """Every directory below the projection trees (the tree compares files only)."""
    found = set()
    for top in (root / ".runs" / "default" / "cli", root / ".runs" / "default" / "metrics", root / "out"):
        for directory, _, _ in os.walk(top):
            found.add(os.path.relpath(directory, root))
    return found


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(root), *args], capture_output=True, text=True, env=clean_env(), cwd=root, timeout=120
    )


def flip_a_byte(journal_dir: Path, where: float = 0.5) -> tuple[str, int]:
    """Damage one record ``where`` of the way into the newest segment, with records after it;
    return where `verify` reports it."""
    segment = max(p for p in journal_dir.iterdir() if p.name.startswith("seg-"))
    data = bytearray(segment.read_bytes())
    data[int(len(data) * where)] ^= 0x40
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
    segment, offset = flip_a_byte(journal_dir)

    done = cli(tmp_path, "project", "--rebuild")
    assert (done.returncode, done.stdout) == (1, "")
    assert_one_error_line(
        done.stderr,
        f"error: task default: rebuild stopped at a corrupt record in {segment} at byte {offset} (",
        "; the projection files were left as they were (`runjournal verify --task default` reports every problem of the journal)",
    )
    assert live_files(tmp_path) == before  # not a byte, inode or time changed
    assert projection_tree(tmp_path) == tree
    assert sorted(os.listdir(tmp_path / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]  # no marker, no spool


def test_json_format_fails_the_same_way(tmp_path):
    journal_dir = Path(populate(tmp_path, RunScript(make_run_id(1)).stage(1).stage(2).items))
    assert cli(tmp_path, "project").returncode == 0
    before = live_files(tmp_path)
    segment, offset = flip_a_byte(journal_dir)
    done = cli(tmp_path, "project", "--rebuild", "--format", "json")
    assert (done.returncode, done.stdout) == (1, "")
    assert_one_error_line(done.stderr, f"a corrupt record in {segment} at byte {offset}", "left as they were")
    assert live_files(tmp_path) == before


def big_history(root: Path, runs: int, records: int) -> None:
    """``runs`` runs of one stage, started a tenth of a second apart, that printed about
    ``records`` chunks between them, a millisecond apart, in one commit order (40 runs of 3,000
    chunks all overlap: each is still running at the fold's first flush)."""
    scripts = []
    for n in range(runs):
        run = RunScript(make_run_id(n), start_ts=T0 + n * SECOND // 10, stages=1).start_stage(1)
        for _ in range(records // runs):
            run.output(1, b"a line of output\n", gap=0.001)
        scripts.append(run.finish_stage(1).complete())
    populate(root, sorted((it for s in scripts for it in s.items), key=lambda it: it.ts))


def test_a_corrupt_record_after_the_fold_rendered_changed_files_leaves_them_as_they_were(tmp_path, monkeypatch):
    from runjournal.projections import rebuild

    # past the fold's first flush (FLUSH_EVERY records): files rendered then differ from the
    # live ones (those runs have ended since) and are spooled, never written
    big_history(tmp_path, 40, 120_000)
    assert cli(tmp_path, "project").returncode == 0
    before = live_files(tmp_path)
    segment, offset = flip_a_byte(tmp_path / ".runs" / "default" / "journal", 0.95)
    spooled = []
    hold = rebuild.Spool.hold
    monkeypatch.setattr(rebuild.Spool, "hold", lambda self, rendered, changed: (spooled.extend(changed), hold(self, rendered, changed))[1])

    with pytest.raises(RebuildFailed, match=rf"rebuild stopped at a corrupt record in {segment} at byte {offset} .*left as they were"):
        projector(tmp_path).rebuild()
    assert any(path.endswith("manifest.json") for path, _ in spooled), "the fold failed before it rendered a changed file"
    assert live_files(tmp_path) == before
    assert sorted(os.listdir(tmp_path / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]


def spool_size(pid: int) -> int:
    """How many bytes the rebuild process ``pid`` has in its spool (an unlinked file), 0 if none."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if ".rebuild-spool." in os.readlink(f"/proc/{pid}/fd/{fd}"):
                return os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except FileNotFoundError:
            continue
    return 0


def stopped_when(proc: subprocess.Popen, reached, what: str) -> None:
    """Wait until ``reached()``, then SIGSTOP the process; fail if it ended first."""
    wait_until(lambda: reached() or proc.poll() is not None, what)
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None, f"the rebuild ended before {what}"


def killed(proc: subprocess.Popen) -> None:
    """SIGKILL the process, stopped or not (nothing if it has ended), and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE)


def test_a_rebuild_killed_while_it_folds_or_while_it_writes_is_made_right_by_the_next_project(tmp_path):
    root = tmp_path / "root"
    big_history(root, 1000, 300_000)
    assert cli(root, "project").returncode == 0
    late = RunScript(make_run_id(99_999), start_ts=T0 + 3600 * SECOND, stages=2).stage(1).stage(2, exit_code=3).fail()
    populate(root, late.items)  # appended since: the next `project` must catch it up
    shutil.rmtree(root / ".runs" / "default" / "cli")  # every run's files differ: the rebuild has much to write
    before, old = live_files(root), projection_tree(root)
    marker = root / ".runs" / "default" / MARKER
    rebuild = [sys.executable, "-m", "runjournal", "--root", str(root), "project", "--rebuild"]

    # killed while it folds: its spool holds files, the marker is not written
    proc = subprocess.Popen(rebuild, env=clean_env(), cwd=root)
    try:
        stopped_when(proc, lambda: spool_size(proc.pid) > 0, "its fold spooled files")
        assert not marker.exists(), "the fold had ended"
    finally:
        killed(proc)
    assert live_files(root) == before  # the live files are untouched
    assert sorted(os.listdir(root / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]  # the spool went with it

    # killed while it writes: each file old or new, and the marker
    first = root / ".runs" / "default" / "cli" / make_run_id(0) / "manifest.json"
    proc = subprocess.Popen(rebuild, env=clean_env(), cwd=root)
    try:
        stopped_when(proc, lambda: marker.exists() and first.exists(), "it wrote its marker and its first files")
    finally:
        killed(proc)
    assert marker.exists()
    new = from_scratch(root, tmp_path / "scratch")
    half = {path: data for path, data in projection_tree(root).items() if not path.endswith(".tmp")}  # a temp file is never read
    assert half != new, "the rebuild was killed after its writes"
    assert all(half.get(path) in (old.get(path), new.get(path)) for path in set(half) | set(old) | set(new)), diff(half, new)

    done = cli(root, "project")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("task default: "), done.stdout
    assert sorted(os.listdir(root / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]
    got = projection_tree(root)
    assert got == new, diff(got, new)
    assert json.loads((root / ".runs" / "default" / "cli" / late.run_id / "manifest.json").read_bytes())["status"] == "failed"


@pytest.fixture
def projected(tmp_path) -> Path:
    """A projected task, then changed by hand as a rebuild finds trees: a run appended since;
    stale files (a run the journal does not have, an error file and a log no stage has, a temp
    file of a killed writer, a stray directory); changed files; missing ones."""
    root = tmp_path / "base"
    items, _ = every_point_of_life()
    populate(root, items)
    silent = RunScript(make_run_id(60), start_ts=T0 + 98 * SECOND, stages=1).start_stage(1).finish_stage(1)  # an empty log
    populate(root, silent.complete().items)
    assert projector(root).catch_up() is not None
    populate(root, RunScript(make_run_id(50), start_ts=T0 + 99 * SECOND, stages=1).stage(1).complete().items)
    task = root / ".runs" / "default"
    runs = task / "cli"
    shutil.copytree(runs / make_run_id(2), runs / make_run_id(77))  # a run this journal never had
    (runs / make_run_id(1) / "errors").mkdir()
    (runs / make_run_id(1) / "errors" / "02-stage-2.json").write_text("{}\n")
    (runs / make_run_id(1) / "commands" / "09-gone.log").write_text("old\n")
    (runs / make_run_id(1) / ".manifest.json.0123456789abcdef.tmp").write_text("half")
    (runs / "left-over").mkdir()
    manifest = runs / make_run_id(3) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"cancelled"', b'"succeeded"'))
    [log] = (runs / make_run_id(2) / "commands").glob("01-*.log")
    log.write_bytes(log.read_bytes()[:-1])
    (task / "metrics.json").unlink()
    shutil.rmtree(runs / make_run_id(4) / "commands")
    return root


@pytest.mark.parametrize("sync", [False, True])
def test_a_rebuild_over_stale_changed_and_missing_files_gives_the_tree_from_scratch(projected, tmp_path, sync):
    result = Projector(str(projected / ".runs"), str(projected / "out"), "default", sync=sync).rebuild()
    expected = from_scratch(projected, tmp_path / "scratch")
    got = projection_tree(projected)
    assert got == expected, diff(got, expected)
    assert directories(projected) == directories(tmp_path / "scratch")  # no stray or emptied directory left
    assert sorted(os.listdir(projected / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]
    # written: run 50's 5 files, run 3's manifest, run 2's log, metrics.json, run 4's log, the
    # task files the new run changes; removed: run 77's files, the stray ones
    assert result.files > 10


def test_a_file_that_holds_the_right_bytes_is_not_written_again(tmp_path):
    items, _ = every_point_of_life()
    populate(tmp_path, items)
    assert cli(tmp_path, "project").returncode == 0
    runs = tmp_path / ".runs" / "default" / "cli"
    manifest = runs / make_run_id(1) / "manifest.json"
    [log] = (runs / make_run_id(2) / "commands").glob("01-*.log")
    manifest.write_bytes(manifest.read_bytes().replace(b'"succeeded"', b'"failed"', 1))
    log.unlink()
    before = {path: (st.st_ino, st.st_mtime_ns) for path, st in stats(tmp_path).items()}

    assert projector(tmp_path).rebuild().files == 2
    after = {path: (st.st_ino, st.st_mtime_ns) for path, st in stats(tmp_path).items()}
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    assert changed == {str(manifest.relative_to(tmp_path)), str(log.relative_to(tmp_path))}

    # over a tree that is right already: nothing is written, made or removed, not even a directory's time
    trees = live_files(tmp_path)
    assert projector(tmp_path).rebuild().files == 0
    assert {k: v for k, v in live_files(tmp_path).items() if "checkpoint" not in k} == {k: v for k, v in trees.items() if "checkpoint" not in k}


def stats(root: Path) -> dict[str, os.stat_result]:
    """Each projection file's stat, by path relative to ``root``."""
    return {path: os.stat(root / path) for path in projection_tree(root)}


def test_links_and_fifos_in_the_tree_are_replaced_as_names_never_followed(projected, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (outside / "commands").mkdir()
    (outside / "commands" / "01-stage-1.log").write_text("keep me too")
    before = fingerprint(outside)
    runs = projected / ".runs" / "default" / "cli"
    shutil.rmtree(runs / make_run_id(1) / "commands")
    (runs / make_run_id(1) / "commands").symlink_to(outside / "commands", target_is_directory=True)  # a directory's place
    (runs / make_run_id(2) / "manifest.json").unlink()
    (runs / make_run_id(2) / "manifest.json").symlink_to(outside / "precious")  # a file's place
    shutil.rmtree(runs / make_run_id(3))
    (runs / make_run_id(3)).symlink_to(outside, target_is_directory=True)  # a run's place
    (runs / make_run_id(5) / ".heartbeat").unlink()
    os.mkfifo(runs / make_run_id(5) / ".heartbeat")  # never opened to wait for a writer
    [empty] = (runs / make_run_id(60) / "commands").glob("*.log")
    empty.unlink()
    os.mkfifo(empty)  # reads as empty too, as the log's bytes are
    metrics = projected / ".runs" / "default" / "metrics"
    shutil.rmtree(metrics)
    metrics.symlink_to(outside, target_is_directory=True)  # a top directory's place

    done = cli(projected, "project", "--rebuild")
    assert done.returncode == 0, done.stderr
    assert fingerprint(outside) == before  # nothing written, moved or removed through a link
    for path in (runs / make_run_id(1) / "commands", runs / make_run_id(3), metrics, runs / make_run_id(2) / "manifest.json", runs / make_run_id(5) / ".heartbeat", empty):
        assert not path.is_symlink() and (path.is_dir() or path.is_file()), path
    got = projection_tree(projected)
    expected = from_scratch(projected, tmp_path / "expected")
    assert got == expected, diff(got, expected)


class Crash(BaseException):
    """Stands for SIGKILL at one step of the writes: nothing after it happens."""


#: what writing the live files does to the filesystem, step by step (each a point where it can be killed)
STEPS = ("replace", "unlink", "rmdir")


def writing_steps(monkeypatch, crash_at: int | None = None) -> list[str]:
    """Patch the rebuild's writing (``Projector._write_spooled``) to note each change it makes to
    the filesystem and, with ``crash_at``, raise Crash instead of making the ``crash_at``-th.
    Returns the notes."""
    from runjournal.projections.projector import Projector as Patched

    write = Patched._write_spooled
    real = {name: getattr(os, name) for name in STEPS}
    notes: list[str] = []

    def before(what: str) -> None:
        notes.append(what)
        if len(notes) == crash_at:
            raise Crash(f"killed before {what}")

    def noting(self, spool):
        with monkeypatch.context() as m:
            for name in STEPS:
                m.setattr(os, name, lambda *a, _name=name, **k: (before(f"{_name} {a[-1] if _name == 'replace' else a[0]}"), real[_name](*a, **k))[1])
            return write(self, spool)

    monkeypatch.setattr(Patched, "_write_spooled", noting)
    return notes


def test_a_crash_at_any_step_of_the_writes_leaves_old_or_new_files_and_the_next_projector_rebuilds(projected, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        trial = tmp_path / "trial"
        shutil.copytree(projected, trial, symlinks=True)
        notes = writing_steps(m)
        projector(trial).rebuild()
    assert notes[-2:] == ["replace checkpoint", "unlink rebuilding"], notes
    # every step of the sweep and the first writes, a middle one, and the last ones
    first_write = next(i for i, note in enumerate(notes, 1) if note.startswith("replace"))
    points = sorted({*range(1, first_write + 2), (first_write + len(notes)) // 2, len(notes) - 1, len(notes)})
    old = projection_tree(projected)
    checkpoint = (projected / ".runs" / "default" / ".projection" / "checkpoint").read_bytes()
    for step in points:
        root = tmp_path / f"crash-{step}"
        shutil.copytree(projected, root, symlinks=True)
        with monkeypatch.context() as m:
            writing_steps(m, crash_at=step)
            with pytest.raises(Crash):
                projector(root).rebuild()
        new = from_scratch(root, tmp_path / f"expected-{step}")
        half = {path: data for path, data in projection_tree(root).items() if not path.endswith(".tmp")}  # a temp file is never read
        assert all(half.get(path) in (old.get(path), new.get(path)) for path in set(half) | set(new)), f"killed before {notes[step - 1]}"
        assert (root / ".runs" / "default" / MARKER).exists(), notes[step - 1]
        # the checkpoint is written last: until then the old one is there
        written = (root / ".runs" / "default" / ".projection" / "checkpoint").read_bytes() != checkpoint
        assert written == (notes[step - 1] == "unlink rebuilding"), notes[step - 1]
        # the next projector, a process of its own, rebuilds before anything else (and
        # records the queued run stale: what a rebuild of the journal then gives)
        done = cli(root, "project")
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(root / ".runs" / "default" / ".projection")) == ["checkpoint", "lock"]
        got, expected = projection_tree(root), from_scratch(root, tmp_path / f"again-{step}")
        assert got == expected, f"killed before {notes[step - 1]}:\n{diff(got, expected)}"


def test_a_rebuild_that_cannot_write_says_so_and_the_next_catch_up_rebuilds(projected, tmp_path, monkeypatch):
    from runjournal.projections import projector as module

    write_files = module.write_files

    def full(files, sync=True, below=None):
        if files:
            raise OSError(errno.ENOSPC, "No space left on device", files[0][0])

    monkeypatch.setattr(module, "write_files", full)
    with pytest.raises(RebuildFailed, match=r"rebuild stopped while writing the projection files \(No space left on device: .*; some are new, some old"):
        projector(projected).rebuild()
    assert (projected / ".runs" / "default" / MARKER).exists()
    monkeypatch.setattr(module, "write_files", write_files)
    result = projector(projected).catch_up()
    assert result is not None and result.applied > 0  # the journal again, from its first record
    got, expected = projection_tree(projected), from_scratch(projected, tmp_path / "expected")
    assert got == expected, diff(got, expected)
    assert not (projected / ".runs" / "default" / MARKER).exists()


def test_what_an_earlier_layout_left_mid_rebuild_is_rebuilt_and_removed(projected, tmp_path):
    """Its commit marker ``swap``, its staging directory and staged state.json."""
    state_dir = projected / ".runs" / "default" / ".projection"
    (state_dir / "swap").write_text('{"dirs": {}}')
    (state_dir / "rebuild" / "cli" / make_run_id(1)).mkdir(parents=True)
    (state_dir / "rebuild" / "cli" / make_run_id(1) / "manifest.json").write_text("{}")
    (projected / "out" / "default" / ".state.json.rebuild").write_text("{}")
    assert projector(projected).catch_up() is not None
    assert sorted(os.listdir(state_dir)) == ["checkpoint", "lock"]
    got, expected = projection_tree(projected), from_scratch(projected, tmp_path / "expected")
    assert got == expected, diff(got, expected)
