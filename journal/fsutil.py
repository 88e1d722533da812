"""Small filesystem helpers shared by the journal and the projection writer."""

from __future__ import annotations

import errno
import os


#: every directory runjournal creates: never group- or world-writable, whatever the umask
DIR_MODE = 0o755


def fsync_dir(path: str) -> None:
    """Make a directory entry (a create, rename or unlink in ``path``) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path: str) -> None:
    """``os.makedirs`` with every directory it makes at DIR_MODE (os.makedirs gives its
    intermediate directories the umask's mode); not synced: for projection files."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        makedirs(os.path.dirname(path))
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass


def makedirs_durable(path: str) -> None:
    """Create ``path`` and any missing parents, syncing each parent that gained an entry."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(d))


def open_own_dir(path: str, mode: int | None = None) -> int:
    """A descriptor on a directory runjournal made, opened without following a symlink; with
    ``mode``, created if missing and set to it (through the descriptor, never a link's target).
    A symlink or anything else found there is an OSError saying so: nothing is written through it."""
    if mode is not None:
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(e.errno, f"{path} is a symbolic link or not a directory; runjournal writes nothing through it") from None
        raise
    if mode is not None:
        try:
            os.fchmod(fd, mode)
        except OSError:
            os.close(fd)
            raise
    return fd


def open_private(path: str) -> int:
    """A lock file, created 0600 without following a symlink: another account cannot open it,
    so it cannot take the lock (flock needs only a descriptor). One of ours made looser by an
    older version is tightened; one of another owner is used as it is (their journal)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def preallocate(path: str, size: int) -> None:
    """Create ``path`` if missing and give its first ``size`` bytes real disk blocks.

    For a file written through an mmap: storing into a page that has no block yet on a full
    disk kills the process with SIGBUS, where this raises OSError (ENOSPC) instead.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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


#: how every temporary file is created: a new file or nothing (never an existing one, never
#: through a symlink planted under its name), not inherited by stage processes
TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_temp(directory: str, name: str, flags: int = os.O_WRONLY, mode: int = 0o644) -> tuple[int, str]:
    """A new temporary file for ``name`` in ``directory``, under a name no one can guess
    (``.<name>.<16 random hex>.tmp``): its descriptor and path. Every temp file runjournal
    writes is made here."""
    while True:
        tmp = os.path.join(directory, f".{name}.{os.urandom(8).hex()}.tmp")
        try:
            return os.open(tmp, flags | TEMP_FLAGS, mode), tmp
        except FileExistsError:
            continue  # 64 random bits taken already: draw again


def atomic_write(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename, dir fsync."""
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        fd, tmp = create_temp(directory, os.path.basename(path), mode=mode)
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            try:
                os.unlink(tmp)  # on a full disk, a half-written temp file would hold on to space
            except OSError:
                pass
        raise OSError(e.errno, e.strerror, path) from None  # name the file, not the temp (or nothing)
    if sync:
        fsync_dir(directory)
