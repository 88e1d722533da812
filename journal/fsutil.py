"""Small filesystem helpers shared by the journal and the projection writer."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Union


#: every directory runjournal creates: never group- or world-writable, whatever the umask
DIR_MODE = 0o755
#: what marks a directory set up for a shared group journal (docs/guarantees.md, "A journal
#: shared by a group"): setgid and group-writable. What runjournal creates in one is
#: group-writable too (directories 2775, files 0664, locks 0660), so every member can write.
SHARED = stat.S_ISGID | stat.S_IWGRP
SHARED_DIR_MODE = 0o2775


def shared(st: os.stat_result) -> bool:
    """Whether a directory (its stat) is set up for a shared group journal."""
    return st.st_mode & SHARED == SHARED


def parent_stat(path: str, dir_fd: int | None) -> os.stat_result:
    """The stat of the directory a name is created in."""
    if dir_fd is not None and not os.path.isabs(path):
        head = os.path.dirname(path)
        return os.stat(head, dir_fd=dir_fd) if head else os.fstat(dir_fd)
    return os.stat(os.path.dirname(os.path.abspath(path)))


def grouped(mode: int) -> int:
    """A mode with the group given what the owner has (0644 -> 0664, 0600 -> 0660, 0700 -> 0770)."""
    return mode | (mode & 0o700) >> 3


def mkdir(path: str, dir_fd: int | None = None) -> None:
    """Make one directory at DIR_MODE (never looser, whatever the umask); in a shared group
    directory at SHARED_DIR_MODE exactly (set through a descriptor, never a link's target).
    FileExistsError if it is there."""
    os.mkdir(path, DIR_MODE, dir_fd=dir_fd)
    if shared(parent_stat(path, dir_fd)):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.fchmod(fd, SHARED_DIR_MODE)
        finally:
            os.close(fd)


#: a directory: its path, or a descriptor open on it. Below a descriptor, names are opened
#: relative to it (``dir_fd``), so a directory renamed or swapped for a link after it was
#: opened changes nothing about where they go: the journal writer works this way.
Where = Union[str, int]


def at(where: Where, name: str) -> tuple[str, int | None]:
    """``name`` in ``where``, as (path, dir_fd) for the ``os`` functions."""
    if isinstance(where, int):
        return name, where
    return os.path.join(where, name), None


def sync_dir(where: Where) -> None:
    """Make a directory's entries durable, by path or by descriptor."""
    if isinstance(where, int):
        os.fsync(where)
    else:
        fsync_dir(where)


def exists_at(where: Where, name: str) -> bool:
    """Whether ``name`` is in ``where`` (a link counts as there, never followed)."""
    path, dfd = at(where, name)
    try:
        os.stat(path, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@contextmanager
def subdir(where: Where, name: str, create: bool = False) -> Iterator[Where]:
    """The directory ``name`` in ``where``: a path below a path, a descriptor below a descriptor
    (opened without following a link, closed after). With ``create``, made at DIR_MODE if
    missing, durably. FileNotFoundError if it is missing and not to be created."""
    if not isinstance(where, int):
        path = os.path.join(where, name)
        if create:
            makedirs_durable(path)
        yield path
        return
    if create:
        try:
            mkdir(name, dir_fd=where)
            os.fsync(where)
        except FileExistsError:
            pass
    fd = open_own_dir(name, dir_fd=where)
    try:
        yield fd
    finally:
        os.close(fd)


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
        mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        makedirs(os.path.dirname(path))
        try:
            mkdir(path)
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
            mkdir(d)
        except FileExistsError:
            continue
        fsync_dir(os.path.dirname(d))


def open_own_dir(path: str, mode: int | None = None, dir_fd: int | None = None) -> int:
    """A descriptor on a directory runjournal made, opened without following a symlink; with
    ``mode``, created if missing and set to it (through the descriptor, never a link's target;
    in a shared group directory, with the group given what the owner has, and setgid).
    A symlink or anything else found there is an OSError saying so: nothing is written through it."""
    if mode is not None:
        if shared(parent_stat(path, dir_fd)):
            mode = grouped(mode) | stat.S_ISGID
        try:
            os.mkdir(path, mode, dir_fd=dir_fd)
        except FileExistsError:
            pass
    fd = open_dir(path, dir_fd, path)
    if mode is not None:
        try:
            st = os.fstat(fd)
            if st.st_uid == os.geteuid():
                os.fchmod(fd, mode)
            elif st.st_mode & 0o002:  # another member's, in a shared group journal: never open to all
                raise OSError(errno.EPERM, f"{path} is writable by every account; runjournal writes nothing in it")
        except OSError:
            os.close(fd)
            raise
    return fd


def root_of(path: str, roots) -> str:
    """The deepest of ``roots`` (directories the user named, which may be links) that holds
    ``path``; ``path`` itself if none does (then the user named it)."""
    path = os.path.abspath(path)
    inside = [r for r in map(os.path.abspath, roots) if path == r or path.startswith(r.rstrip(os.sep) + os.sep)]
    return max(inside, key=len) if inside else path


def open_dir(name: str, dir_fd: int | None, shown: str) -> int:
    """A descriptor on the directory ``name`` (in ``dir_fd``), never through a symlink: a link
    or anything but a directory there is an OSError naming ``shown``."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(e.errno, f"{shown} is a symbolic link or not a directory; runjournal writes nothing through it") from None
        raise


def open_dir_below(root: str, directory: str) -> int:
    """A descriptor of its own on ``directory``, created with its missing parents (at DIR_MODE,
    durably) as ``Below`` opens it: ``root`` may be a symlink (the user named it), nothing
    below it is followed through one. ValueError if ``directory`` is not below ``root``."""
    root, directory = os.path.abspath(root), os.path.abspath(directory)
    if root_of(directory, (root,)) != root:
        raise ValueError(f"{directory} is not below {root}")
    with Below(root, durable=True) as below:
        return os.dup(below.dir(directory))


def open_private(path: str, dir_fd: int | None = None) -> int:
    """A lock file, created 0600 without following a symlink: another account cannot open it,
    so it cannot take the lock (flock needs only a descriptor); 0660 in a shared group
    directory, for the group's members only. One of ours made looser by an older version is
    tightened; one of another owner is used as it is (their journal)."""
    mode = grouped(0o600) if shared(parent_stat(path, dir_fd)) else 0o600
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def preallocate(path: str, size: int, dir_fd: int | None = None) -> None:
    """Create ``path`` if missing and give its first ``size`` bytes real disk blocks.

    For a file written through an mmap: storing into a page that has no block yet on a full
    disk kills the process with SIGBUS, where this raises OSError (ENOSPC) instead.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
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


def create_temp(directory: Where, name: str, flags: int = os.O_WRONLY, mode: int = 0o644, dir_fd: int | None = None) -> tuple[int, str]:
    """A new temporary file for ``name`` in ``directory`` (or in the directory ``dir_fd``, or
    ``directory`` a descriptor: then named relative to it), under a name no one can guess
    (``.<name>.<16 random hex>.tmp``): its descriptor and path. Every temp file runjournal
    writes is made here."""
    if isinstance(directory, int):
        dir_fd = directory
    while True:
        tmp = f".{name}.{os.urandom(8).hex()}.tmp"
        if dir_fd is None:
            tmp = os.path.join(directory, tmp)
        try:
            fd = os.open(tmp, flags | TEMP_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            continue  # 64 random bits taken already: draw again
        try:
            if shared(parent_stat(tmp, dir_fd)):
                os.fchmod(fd, grouped(mode))  # the umask would take the group's write away
        except OSError:
            os.close(fd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        return fd, tmp


def write_temp(directory: Where, name: str, data: bytes) -> str:
    """``data`` in a new temp file for ``name`` (``create_temp``), fsynced and closed; its name
    (relative to ``directory`` when that is a descriptor), for the caller to rename into place.
    On failure the temp file is removed: on a full disk it would hold on to space."""
    fd, tmp = create_temp(directory, name)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp, dir_fd=directory if isinstance(directory, int) else None)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: str, data: bytes, mode: int = 0o644, sync: bool = True, dir_fd: int | None = None) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename, dir fsync.
    With ``dir_fd`` (a ``Below`` directory), the file is its basename in that directory."""
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path) if dir_fd is not None else path
    tmp = None
    try:
        fd, tmp = create_temp(directory, os.path.basename(path), mode=mode, dir_fd=dir_fd)
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dir_fd)  # on a full disk, a half-written temp file would hold on to space
            except OSError:
                pass
        raise OSError(e.errno, e.strerror, path) from None  # name the file, not the temp (or nothing)
    if sync:
        if dir_fd is not None:
            os.fsync(dir_fd)
        else:
            fsync_dir(directory)


class Below:
    """Directories below the roots the user named (which may themselves be symlinks: the user's
    choice), each component created at DIR_MODE or opened without following a symlink, so that
    nothing is written through a link planted below a root. Descriptors are kept until ``close``."""

    def __init__(self, *roots: str, durable: bool = False):
        """``durable``: every directory made is synced into its parent (for the journal)."""
        self.roots = [os.path.abspath(r) for r in roots]
        self.durable = durable
        self._fds: dict[str, int] = {}

    def dir(self, directory: str, create: bool = True) -> int | None:
        """The directory's descriptor; None if it is missing and ``create`` is false. A symlink
        or a non-directory on the way is an OSError naming it."""
        directory = os.path.abspath(directory)
        fd = self._fds.get(directory)
        if fd is not None:
            return fd
        # the deepest root the directory is in: a runs dir the user named inside the root is theirs
        root = root_of(directory, self.roots)
        if root == directory and directory not in self.roots:
            root = None
        parent = os.path.dirname(directory)
        # opened first, made only if missing: most directories asked for are there already
        if root is None or directory == root:
            try:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not create:
                    return None
                (makedirs_durable if self.durable else makedirs)(directory)
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            pfd = self.dir(parent, create)
            if pfd is None:
                return None
            name = os.path.basename(directory)
            try:
                fd = open_dir(name, pfd, directory)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    mkdir(name, dir_fd=pfd)
                    if self.durable:
                        os.fsync(pfd)
                except FileExistsError:
                    pass
                fd = open_dir(name, pfd, directory)
        self._fds[directory] = fd
        return fd

    def close(self) -> None:
        fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> Below:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
