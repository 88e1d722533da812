"""Another local account can neither block nor forge a journal: lock files it cannot open,
directories it cannot write, and spills it drops are never merged."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import clean_env
from test_journal_faults import other_user

from runjournal.journal import Journal, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal import spill
from runjournal.journal.spill import PENDING_DIR

RUN = "2025-12-01T09-37-11-576Z-0000beef"
NOBODY = 65534

TRY_LOCK = """
import fcntl, sys
try:
    f = open(sys.argv[1], "rb")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print("refused", e.errno)
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_under_umask_000_nothing_created_is_group_or_world_writable_and_locks_are_private(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(root), "exec", "--", "true"],
        env=clean_env(), capture_output=True, text=True, timeout=60, umask=0,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = [p for p in root.rglob("*") if p.is_dir()]
    assert created and all(mode(p) & 0o022 == 0 for p in created), {str(p): oct(mode(p)) for p in created}
    for lock in (root / ".runs" / "default" / "journal" / "lock", root / ".runs" / "default" / ".projection" / "lock"):
        assert mode(lock) == 0o600, lock
    assert mode(root / ".runs" / "default" / ".tokens") == 0o700


def test_a_lock_left_open_by_an_older_version_is_tightened(tmp_path: Path):
    d = tmp_path / "journal"
    with Journal(str(d)) as j:
        j.append(RUN, ev.Heartbeat())
    os.chmod(d / "lock", 0o644)
    with Journal(str(d)) as j:
        j.append(RUN, ev.Heartbeat())
    assert mode(d / "lock") == 0o600


def test_another_account_cannot_take_the_journal_lock():
    way = other_user()
    if isinstance(way, str):
        pytest.skip(way)
    prefix, kwargs = way
    shared = Path(tempfile.mkdtemp(prefix="runjournal-shared-"))  # pytest's tmp_path is 0700: others see nothing there
    try:
        os.chmod(shared, 0o755)
        d = shared / "journal"
        with Journal(str(d)) as j:
            j.append(RUN, ev.Heartbeat())
        peek = subprocess.run([*prefix, sys.executable, "-c", "import sys; print(len(open(sys.argv[1], 'rb').read(8)))", str(d / fmt.segment_name(1))],
                              capture_output=True, text=True, env=clean_env(), cwd="/", timeout=60, **kwargs)  # fmt: skip
        assert peek.stdout == "8\n", peek.stderr  # the other account can read the journal ...
        done = subprocess.run([*prefix, sys.executable, "-c", TRY_LOCK, str(d / "lock")], capture_output=True, text=True, env=clean_env(), cwd="/", timeout=60, **kwargs)
        assert done.stdout.split() == ["refused", str(errno.EACCES)], done.stdout + done.stderr  # ... but not open its lock
    finally:
        shutil.rmtree(shared)


def test_a_spill_owned_by_another_account_is_set_aside_never_merged(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("making a file owned by another account needs root")
    d = tmp_path / "journal"
    with Journal(str(d), durability="none") as j:
        j.append(RUN, ev.Heartbeat())
    forged = d / spill.write(str(d), "01795726964628116759-17522-000001.rjp", spill.encode([(RUN, ev.RunCompleted(summary="forged"), 1)]))
    os.chown(forged, NOBODY, NOBODY)
    with Journal(str(d)) as j:
        j.flush()  # merges what is pending
    assert os.listdir(d / PENDING_DIR) == ["01795726964628116759-17522-000001.rjp.foreign"]
    assert [type(r.event) for r in read_records(str(d))] == [ev.Heartbeat]
    assert [p.kind for p in check(str(d)).problems] == ["foreign-spill"]


def test_a_shared_group_journal_takes_every_members_appends_and_no_one_elses():
    # the recipe of docs/guarantees.md: a root directory of the group, setgid and group-writable
    way = other_user()
    if isinstance(way, str):
        pytest.skip(way)
    if os.geteuid() != 0:
        pytest.skip("setting up a directory shared with another account's group needs root")
    prefix, kwargs = way
    base = Path(tempfile.mkdtemp(prefix="runjournal-group-"))
    try:
        os.chmod(base, 0o755)
        root = base / "root"
        root.mkdir()
        os.chown(root, 0, NOBODY)
        os.chmod(root, 0o2775)

        def exec_as(*who: str, **how) -> subprocess.CompletedProcess:
            argv = [*who, sys.executable, "-m", "runjournal", "--root", str(root), "exec", "--", "true"]
            return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), cwd="/", timeout=60, umask=0o022, **how)

        assert exec_as().returncode == 0
        task = root / ".runs" / "default"
        d = task / "journal"
        for directory in (task, d, task / "cli", task / ".projection", root / "out" / "default"):
            assert (mode(directory), os.stat(directory).st_gid) == (0o2775, NOBODY), directory
        assert mode(d / "lock") == mode(task / ".projection" / "lock") == 0o660
        assert mode(d / fmt.segment_name(1)) == 0o664
        assert mode(task / ".tokens") == 0o2770
        assert all(mode(t) == 0o600 for t in (task / ".tokens").iterdir())  # a token stays its owner's

        member = exec_as(*prefix, **kwargs)  # another account of the group writes the same journal
        assert member.returncode == 0, member.stderr
        runs = {r.run_id for r in read_records(str(d)) if isinstance(r.event, ev.RunStarted)}
        assert len(runs) == 2

        theirs = d / spill.write(str(d), "01795726964628116759-17522-000001.rjp", spill.encode([(RUN, ev.RunCompleted(summary="member"), 1)]))
        os.chown(theirs, NOBODY, NOBODY)
        forged = d / spill.write(str(d), "01795726964628116759-17522-000002.rjp", spill.encode([(RUN, ev.RunCompleted(summary="forged"), 2)]))
        os.chown(forged, 12345, 12345)  # neither the journal's owner nor its group
        with Journal(str(d)) as j:
            j.flush()
        assert os.listdir(d / PENDING_DIR) == ["01795726964628116759-17522-000002.rjp.foreign"]
        assert [r.event.summary for r in read_records(str(d)) if r.run_id == RUN] == ["member"]
        assert [p.kind for p in check(str(d)).problems] == ["foreign-spill"]
    finally:
        shutil.rmtree(base)
