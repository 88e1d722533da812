"""Files runjournal creates are never written through a planted symlink.

Temp files have names no one can guess and are created exclusively without following links;
an atomic replace renames over a link instead of writing through it; the resume token's
directory is opened without following a link and never chmodded through one.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from helpers import assert_one_error_line
from helpers.runner_support import cli

from runjournal.journal import fsutil


def test_temp_names_are_unpredictable_and_a_planted_link_is_never_followed(tmp_path: Path, monkeypatch):
    outside = tmp_path / "outside"
    outside.write_text("precious")
    work = tmp_path / "work"
    work.mkdir()
    draws = iter([b"\x00" * 8, b"\x11" * 8])
    monkeypatch.setattr(fsutil.os, "urandom", lambda n: next(draws))
    (work / f".manifest.json.{'00' * 8}.tmp").symlink_to(outside)  # an attacker's guess, made real
    fd, tmp = fsutil.create_temp(str(work), "manifest.json")
    os.write(fd, b"new")
    os.close(fd)
    assert tmp == str(work / f".manifest.json.{'11' * 8}.tmp")  # the taken name was passed over
    assert outside.read_text() == "precious"
    assert stat.S_ISREG(os.lstat(tmp).st_mode)


def test_two_temp_names_never_repeat():
    names = {fsutil.create_temp("/tmp", "x")[1] for _ in range(50)}
    for name in names:
        os.unlink(name)
    assert len(names) == 50
    assert all(re.fullmatch(r"/tmp/\.x\.[0-9a-f]{16}\.tmp", n) for n in names)


def test_an_atomic_write_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.write_text("precious")
    (tmp_path / "state.json").symlink_to(outside)
    fsutil.atomic_write(str(tmp_path / "state.json"), b"{}")
    assert outside.read_text() == "precious"
    assert not (tmp_path / "state.json").is_symlink() and (tmp_path / "state.json").read_bytes() == b"{}"


def test_a_planted_tokens_link_is_refused_and_its_target_is_left_alone(tmp_path: Path):
    target = tmp_path / "etc"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    task = tmp_path / ".runs" / "default"
    task.mkdir(parents=True)
    (task / ".tokens").symlink_to(target)
    done = cli(tmp_path, "exec", "--", "true")
    assert done.returncode == 1
    line = assert_one_error_line(done.stderr, "cannot save the resume token", ".tokens is a symbolic link or not a directory")
    assert line.endswith("runjournal writes nothing through it; nothing was run")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755  # not chmodded through the link
    assert list(target.iterdir()) == []
