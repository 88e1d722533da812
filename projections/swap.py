"""A rebuild is written beside the live projection files and swapped in only once it is whole.

``Projector.rebuild`` writes every file of the task into a staging area next to the live
files: ``<runs>/<task>/.projection/rebuild/`` (``cli/``, ``metrics/``, ``metrics.json`` and the
checkpoint) and ``<out>/<task>/.state.json.rebuild``, each on the filesystem of the file it
replaces. A rebuild that fails (a corrupt record, a full disk, a signal) removes the staging
area: the live files are left exactly as they were.

Once the whole journal is folded and written, the rebuild **commits**: it writes the marker
``.projection/swap``, which records what the staging holds, and then moves each staged entry
into place, the checkpoint last. A directory is exchanged with the live one in one step
(``renameat2(RENAME_EXCHANGE)`` on Linux), so a reader sees the old tree or the new one; where
that is not available, the live one is moved aside first. Every step can be done again: a
projector killed in the middle of the swap leaves the marker, and the next projector of the
task finishes the swap (under the projector lock) before it does anything else; staging
without a marker is a rebuild that never finished, and is removed.

Everything here works on directory descriptors from ``fsutil.Below``: no link below the
user's roots is followed, and a link found where a directory was is moved or removed as a
name, never written through.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

import msgspec

from runjournal.journal import JournalError
from runjournal.journal.fsutil import Below, atomic_write

#: the staging directory, in the task's ``.projection``
STAGING = "rebuild"
#: the commit marker, in the task's ``.projection``: while it exists, the swap is to be finished
MARKER = "swap"
#: the staged state snapshot, beside ``state.json`` in ``<out>/<task>``
STAGED_STATE = ".state.json.rebuild"
#: the directories of a task's projection files, below ``<runs>/<task>``
DIRS = ("cli", "metrics")

_RENAME_EXCHANGE = 2


class SwapLost(JournalError):
    """A committed rebuild cannot be swapped in: what it staged is gone (removed by hand)."""


class Swap(msgspec.Struct):
    """The marker's content: what the staging held when the rebuild committed."""

    #: the inode of each staged directory (``DIRS``); 0: the rebuild made none, the live one goes
    dirs: dict[str, int]
    #: whether the rebuild wrote each file; one it did not write is removed from the live files
    metrics: bool
    state: bool
    checkpoint: bool


class Place:
    """Where one task's live and staged projection files are."""

    def __init__(self, task_dir: str, state_dir: str, out_task_dir: str):
        self.task_dir = task_dir
        self.state_dir = state_dir
        self.out_dir = out_task_dir
        self.staging = os.path.join(state_dir, STAGING)
        self.marker = os.path.join(state_dir, MARKER)
        self.staged_state = os.path.join(out_task_dir, STAGED_STATE)

    def pending(self) -> str | None:
        """``swap`` if a committed swap is unfinished, ``staging`` if an unfinished rebuild
        left its files, else None (two ``lstat`` calls: cheap enough for every catch-up)."""
        if os.path.lexists(self.marker):
            return "swap"
        if os.path.lexists(self.staging):
            return "staging"
        return None


def discard(place: Place, below: Below) -> None:
    """Remove what an unfinished rebuild staged (the staged state first: the staging directory
    goes last, so that while it is absent nothing else staged exists)."""
    out_fd = below.dir(place.out_dir, create=False)
    if out_fd is not None:
        _unlink(STAGED_STATE, out_fd)
    state_fd = below.dir(place.state_dir, create=False)
    if state_fd is not None:
        remove(STAGING, state_fd)


def commit(place: Place, below: Below, sync: bool) -> None:
    """Mark the staged rebuild as whole, then swap it in (``finish``)."""
    stage_fd = below.dir(place.staging)
    out_fd = below.dir(place.out_dir, create=False)
    swap = Swap(
        dirs={name: inode(name, stage_fd) or 0 for name in DIRS},
        metrics=inode("metrics.json", stage_fd) is not None,
        state=out_fd is not None and inode(STAGED_STATE, out_fd) is not None,
        checkpoint=inode("checkpoint", stage_fd) is not None,
    )
    if sync:
        os.sync()  # every staged file and directory durable before the marker says they are whole
    atomic_write(place.marker, msgspec.json.encode(swap), sync=sync, dir_fd=below.dir(place.state_dir))
    finish(place, below, sync)


def finish(place: Place, below: Below, sync: bool) -> None:
    """Swap a committed rebuild in, from wherever an earlier attempt stopped."""
    state_fd = below.dir(place.state_dir)
    try:
        with open(MARKER, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW, dir_fd=state_fd)) as f:
            swap = msgspec.json.decode(f.read(), type=Swap)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise SwapLost(f"the rebuild swap marker {place.marker} is unreadable ({e}); run `runjournal project --rebuild` again") from None
    task_fd = below.dir(place.task_dir)
    stage_fd = below.dir(place.staging, create=False)
    for name in DIRS:
        _swap_dir(place, name, swap.dirs.get(name, 0), task_fd, stage_fd)
    out_fd = below.dir(place.out_dir, create=swap.state)
    # the checkpoint last: until it is in place, the old one describes the old files
    for staged, src_fd, live, dst_fd, present in (
        ("metrics.json", stage_fd, "metrics.json", task_fd, swap.metrics),
        (STAGED_STATE, out_fd, "state.json", out_fd, swap.state),
        ("checkpoint", stage_fd, "checkpoint", state_fd, swap.checkpoint),
    ):
        if dst_fd is None:
            continue
        if not present:
            _unlink(live, dst_fd)
        elif src_fd is not None and inode(staged, src_fd) is not None:
            os.replace(staged, live, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        elif inode(live, dst_fd) is None:
            raise SwapLost(f"the rebuild's {live} is neither in place nor staged; run `runjournal project --rebuild` again")
    if sync:
        for fd in {task_fd, state_fd, out_fd} - {None}:
            os.fsync(fd)
    os.unlink(MARKER, dir_fd=state_fd)
    if sync:
        os.fsync(state_fd)
    remove(STAGING, state_fd)  # now the old directories, moved out of the way
    for fd in {task_fd, state_fd, out_fd} - {None}:
        _remove_temps(fd)


def _swap_dir(place: Place, name: str, staged_ino: int, task_fd: int, stage_fd: int | None) -> None:
    live = inode(name, task_fd)
    if not staged_ino:  # the rebuild made none: the live one goes
        if live is not None:
            remove(name, task_fd)
        return
    if live == staged_ino:
        return  # swapped already
    if stage_fd is None or inode(name, stage_fd) != staged_ino:
        raise SwapLost(f"the rebuild's {os.path.join(place.task_dir, name)} is neither in place nor staged; run `runjournal project --rebuild` again")
    if live is not None and not exchange(name, stage_fd, task_fd):
        aside = f"old-{name}"
        remove(aside, stage_fd)
        os.rename(name, aside, src_dir_fd=task_fd, dst_dir_fd=stage_fd)
        live = None
    if live is None:
        os.rename(name, name, src_dir_fd=stage_fd, dst_dir_fd=task_fd)


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()


def exchange(name: str, a_fd: int, b_fd: int) -> bool:
    """Swap the entries ``name`` of two directories in one step; False where the system or
    filesystem cannot (then nothing was done)."""
    if _renameat2 is None:
        return False
    raw = os.fsencode(name)
    if _renameat2(a_fd, raw, b_fd, raw, _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), name)


def inode(name: str, dir_fd: int) -> int | None:
    """The inode of the entry ``name`` (a link's own), None if there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return None


def remove(name: str, dir_fd: int) -> None:
    """Remove the entry ``name`` and, for a directory, everything below it, through descriptors
    and never following a link (a link is removed as a name)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _unlink(name, dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries]
        for child in names:
            remove(child, fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _remove_temps(dir_fd: int) -> None:
    """Temp files of a projector killed mid-write (``.<name>.<random>.tmp``: never read)."""
    for name in os.listdir(dir_fd):
        if name.startswith(".") and name.endswith(".tmp"):
            _unlink(name, dir_fd)
