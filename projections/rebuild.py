"""A rebuild renders over the live projection files, and only once the whole journal is folded.

``Projector.rebuild`` folds the task's journal from its first record, writing nothing live: what
each flush of the fold renders is compared with the live file, and only bytes that differ are
kept, in a ``Spool`` (an unlinked temp file in ``.projection``: out of memory, and gone with the
process whatever ends it). A fold that fails (a corrupt record, a signal) leaves every live file
as it was.

Then it **writes**: the marker ``.projection/rebuilding`` first, then ``sweep`` removes what a
rebuild into an empty directory would not make (files of runs the journal no longer has, an
error file a resume cleared, temp files of a killed writer, a link where a directory belongs),
then each spooled file replaces its live one atomically (identical files are never touched:
no new inode, no new time), the checkpoint last, and the marker goes. A rebuild killed while it
writes leaves each file old or new, and the marker: the next projector of the task rebuilds
again before it trusts a file (``Projector._settle``).

Everything here works through directory descriptors from ``fsutil.Below``: nothing below the
user's roots is followed through a link, and a link found in the way is removed as a name.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection

from runjournal.journal.fsutil import Below, create_temp, write_all

#: in the task's ``.projection``: while it exists, the files may be part old, part new
MARKER = "rebuilding"
#: an earlier layout's leftovers: its commit marker (also a rebuild to redo), its staging
#: directory beside the checkpoint and its staged ``state.json``
OLD_MARKER, OLD_STAGING, OLD_STATE = "swap", "rebuild", ".state.json.rebuild"
#: the task's own projection entries, in its directory (journal, tokens and the rest are not)
TREES = ("cli", "metrics", "metrics.json")

_BUFFER = 1 << 20
_SIZE_BITS = 40
_SIZE_MASK = (1 << _SIZE_BITS) - 1


def mark(dir_fd: int, sync: bool) -> None:
    """Write the marker (made anew, never written through whatever is at its name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(MARKER, flags, 0o644, dir_fd=dir_fd)
    except FileExistsError:  # a killed rebuild's
        os.unlink(MARKER, dir_fd=dir_fd)
        fd = os.open(MARKER, flags, 0o644, dir_fd=dir_fd)
    try:
        write_all(fd, b"a rebuild is writing the projection files: until this file is gone, they may be part old, part new\n")
    finally:
        os.close(fd)
    if sync:
        os.fsync(dir_fd)


def unmark(dir_fd: int, sync: bool) -> None:
    os.unlink(MARKER, dir_fd=dir_fd)
    if sync:
        os.fsync(dir_fd)


class Spool:
    """Files rendered by a rebuild's fold and not yet written: ``paths`` maps each file to None
    when the live file holds its bytes already, else to where its bytes are in the spool (one
    int: the offset, shifted, and the size: a tuple would cost three objects per file)."""

    def __init__(self, dir_fd: int):
        """The spool file is made in ``dir_fd`` (the task's ``.projection``) and unlinked at once."""
        self.fd, name = create_temp(dir_fd, "rebuild-spool", flags=os.O_RDWR, mode=0o600)
        os.unlink(name, dir_fd=dir_fd)
        self.paths: dict[str, int | None] = {}
        self._flushed = 0  # bytes in the file; what is past them is still in _buf
        self._buf = bytearray()

    def hold(self, rendered: list[tuple[str, bytes]], changed: list[tuple[str, bytes]]) -> None:
        """The newest bytes of each rendered file, of which ``changed`` differ from the live ones."""
        paths = self.paths
        for path, _ in rendered:
            paths[path] = None
        buf = self._buf
        for path, data in changed:
            paths[path] = (self._flushed + len(buf)) << _SIZE_BITS | len(data)
            buf += data
        if len(buf) >= _BUFFER:
            self._flush()

    def drop(self, path: str) -> None:
        """A file the rebuilt projections do not hold (an error file cleared by a resume)."""
        self.paths.pop(path, None)

    def read(self, where: int) -> bytes:
        self._flush()
        offset, size = where >> _SIZE_BITS, where & _SIZE_MASK
        data = os.pread(self.fd, size, offset)
        while len(data) < size:  # a regular file gives all but at a signal
            more = os.pread(self.fd, size - len(data), offset + len(data))
            if not more:
                raise OSError(f"the rebuild's spool ended at byte {offset + len(data)}")
            data += more
        return data

    def _flush(self) -> None:
        if self._buf:
            write_all(self.fd, self._buf)
            self._flushed += len(self._buf)
            self._buf = bytearray()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sweep(below: Below, task_dir: str, out_dir: str, state_dir: str, keep: Collection[str]) -> int:
    """Remove every projection entry that a rebuild into an empty directory would not make:
    below the task's directory and its ``out`` directory (``out_dir``: ``<out>/<task>``), what
    ``keep`` (the files' paths) does not hold, and anything but a regular file or a directory
    where ``keep`` wants one; temp files of a killed writer there and in ``.projection``
    (``state_dir``); an earlier layout's leftovers. Returns how many files it removed."""
    dirs = _directories(keep)
    task_fd, state_fd = below.dir(task_dir), below.dir(state_dir)
    removed = sum(_prune(task_fd, name, os.path.join(task_dir, name), keep, dirs) for name in TREES)
    removed += _remove_temps(task_fd) + _remove_temps(state_fd)
    removed += remove(OLD_STAGING, state_fd) + remove(OLD_MARKER, state_fd)
    out_fd = below.dir(out_dir, create=False)
    if out_fd is not None:
        removed += _prune(out_fd, "state.json", os.path.join(out_dir, "state.json"), keep, dirs)
        removed += _remove_temps(out_fd) + remove(OLD_STATE, out_fd)
    return removed


def _directories(keep: Collection[str]) -> set[str]:
    """Every directory that holds a file of ``keep`` (up to the roots of the paths)."""
    dirs: set[str] = set()
    for path in keep:
        d = path.rpartition(os.sep)[0]
        while d and d not in dirs:
            dirs.add(d)
            d = d.rpartition(os.sep)[0]
    return dirs


def _prune(dir_fd: int, name: str, path: str, keep: Collection[str], dirs: set[str]) -> int:
    """Sweep the entry ``name`` of ``dir_fd`` (at ``path``); how many files went."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(st.st_mode) and path in dirs:
        return _prune_dir(dir_fd, name, path, keep, dirs)
    if stat.S_ISREG(st.st_mode) and path in keep:
        return 0
    return remove(name, dir_fd)


def _prune_dir(dir_fd: int, name: str, path: str, keep: Collection[str], dirs: set[str]) -> int:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    removed = 0
    try:
        with os.scandir(fd) as entries:
            found = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in entries]
        path += os.sep
        for child, is_dir, is_file in found:
            at = path + child
            if is_dir and at in dirs:
                removed += _prune_dir(fd, child, at, keep, dirs)
            elif not (is_file and at in keep):
                removed += remove(child, fd)
    finally:
        os.close(fd)
    return removed


def remove(name: str, dir_fd: int) -> int:
    """Remove the entry ``name`` and, for a directory, everything below it, through descriptors
    and never following a link (a link is removed as a name); how many files went."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return 0
        return 1
    removed = 0
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries]
        for child in names:
            removed += remove(child, fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    return removed


def _remove_temps(dir_fd: int) -> int:
    """Temp files of a projector killed mid-write (``.<name>.<random>.tmp``: never read)."""
    return sum(remove(name, dir_fd) for name in os.listdir(dir_fd) if name.startswith(".") and name.endswith(".tmp"))
