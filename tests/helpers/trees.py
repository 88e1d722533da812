"""Projection trees as {relative path: bytes}, for byte-for-byte comparisons; fingerprints of
whole trees, to show that a command wrote nothing."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

#: directories that are not projection output: the journal itself and the projector's checkpoint
NOT_PROJECTIONS = {"journal", ".projection"}


def projection_tree(root: Path | str) -> dict[str, bytes]:
    """Every projection file under ``root`` (runs and out dirs), by path relative to ``root``.

    Safe to call while a projector writes (for polling until a tree converges).
    """
    root = str(root)
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in NOT_PROJECTIONS)
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    files[os.path.relpath(path, root)] = f.read()
            except FileNotFoundError:
                continue  # renamed away while a projector is writing: the next look sees its successor
    return files


def copy_journal(src_root: Path, dst_root: Path, task: str = "default") -> Path:
    """Copy one task's journal to another root (without its projections); return the new journal dir."""
    src = Path(src_root) / ".runs" / task / "journal"
    dst = Path(dst_root) / ".runs" / task / "journal"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lock"))
    return dst


def diff(a: dict[str, bytes], b: dict[str, bytes]) -> str:
    """A short description of how two trees differ ('' if they are equal)."""
    lines = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            lines.append(f"only in second: {path}")
        elif path not in b:
            lines.append(f"only in first: {path}")
        elif a[path] != b[path]:
            lines.append(f"differs: {path}\n--- first\n{a[path][:2000]!r}\n--- second\n{b[path][:2000]!r}")
    return "\n".join(lines)


def fingerprint(top: Path | str) -> dict[str, tuple]:
    """Everything a write could change below ``top`` (``top`` included): each entry's type,
    permissions, owner, size, inode, modification and change times, and what it holds (a
    file's bytes, a link's target), by path relative to ``top``. Links are never followed.

    A directory's times change when an entry is made or removed in it, so even a temporary
    file created and removed again shows; reading (atime) does not count.
    """
    top = str(top)
    found = {".": _entry(top)}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, top)] = _entry(path)
    return found


def _entry(path: str) -> tuple:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        holds: bytes | str | None = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            holds = f.read()
    else:
        holds = None
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, holds)


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What differs between two fingerprints, one line per path ([] if nothing)."""
    lines = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            lines.append(f"created: {path}")
        elif path not in after:
            lines.append(f"removed: {path}")
        elif before[path] != after[path]:
            lines.append(f"changed: {path}")
    return lines
