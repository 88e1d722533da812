"""Small filesystem helpers shared by the journal and the projection writer."""

from __future__ import annotations

import errno
import os


def fsync_dir(path: str) -> None:
    """Make a directory entry (a create, rename or unlink in ``path``) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str) -> None:
    """Create ``path`` and any missing parents, syncing each parent that gained an entry."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(d))


def preallocate(path: str, size: int) -> None:
    """Create ``path`` if missing and give its first ``size`` bytes real disk blocks.

    For a file written through an mmap: storing into a page that has no block yet on a full
    disk kills the process with SIGBUS, where this raises OSError (ENOSPC) instead.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename, dir fsync."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)  # on a full disk, a half-written temp file would hold on to space
        except OSError:
            pass
        raise OSError(e.errno, e.strerror, path) from None  # name the file, not the temp (or nothing)
    if sync:
        fsync_dir(directory)
