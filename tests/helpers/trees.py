"""Projection trees as {relative path: bytes}, for byte-for-byte comparisons."""

from __future__ import annotations

import os
import shutil
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
