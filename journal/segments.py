"""Segment files as a writer makes and mends them: creation, opening for append, sealing,
cutting a torn tail, and the head file's creation (docs/journal-format.md sections 1, 5, 7).

Functions on paths and descriptors; which segment is current, and the sequences, are the
writer's (``Journal``).
"""

from __future__ import annotations

import errno
import os

from . import format as fmt
from .errors import CorruptRecord, JournalWriteFailed
from .events import SCHEMA_VERSION, TailRepaired
from .fsutil import Where, at, create_temp, exists_at, preallocate, subdir, sync_dir, write_all, write_temp
from .head import SIZE as HEAD_SIZE

TORN_DIR = "torn"


def create(directory: Where, base: int, chain_in: bytes | None = None) -> int:
    """A new segment based at ``base``, its header in place before its name appears (temp file,
    fsync, rename, directory fsync); its descriptor, open for append. With ``chain_in`` (the hash
    chain before record ``base``) it is a chained segment (format 3), its first frame the LINK
    that says so; a segment of that name already there (an empty one being upgraded) is replaced."""
    name = fmt.segment_name(base)
    path, dfd = at(directory, name)
    try:
        fd, tmp = create_temp(directory, name, os.O_RDWR | os.O_APPEND)
    except OSError as e:
        raise JournalWriteFailed(f"cannot create segment {name}: {e.strerror}") from None
    try:
        if chain_in is None:
            write_all(fd, fmt.encode_header(base, SCHEMA_VERSION))
        else:
            write_all(fd, fmt.encode_header(base, SCHEMA_VERSION, fmt.CHAINED_FORMAT) + fmt.encode_link(chain_in))
        os.fsync(fd)
        os.rename(tmp, path, src_dir_fd=dfd, dst_dir_fd=dfd)
        sync_dir(directory)
    except OSError as e:
        os.close(fd)
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise JournalWriteFailed(f"cannot create segment {name}: {e.strerror}") from None
    return fd


def open_for_append(directory: Where, name: str, base: int) -> tuple[int, bool]:
    """An existing segment opened for append, its header checked: (descriptor, whether it is
    chained). A header left unwritten by a writer that crashed while creating the segment in
    place, as early writers did (and nothing after it), is written again, unchained."""
    fd, _ = fmt.open_segment(directory, name, os.O_RDWR | os.O_APPEND)
    head = os.pread(fd, fmt.HEADER_LEN, 0)
    if len(head) < fmt.HEADER_LEN and not any(head) and not exists_at(directory, fmt.segment_name(base + 1)):
        try:
            os.ftruncate(fd, 0)
            write_all(fd, fmt.encode_header(base, SCHEMA_VERSION))
            os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        return fd, False
    try:
        header = fmt.decode_header(head, name)
    except CorruptRecord:
        os.close(fd)
        raise
    if header.base_seq != base:
        os.close(fd)
        raise CorruptRecord(name, 0, f"header says base sequence {header.base_seq}, expected {base}")
    return fd, header.chained


def seal(fd: int, segment: str, end: int) -> None:
    """Seal a full segment, durably; on failure nothing of the seal is left."""
    try:
        write_all(fd, fmt.seal_frame())
        os.fdatasync(fd)
    except OSError as e:
        os.ftruncate(fd, end)
        raise JournalWriteFailed(f"cannot seal segment {segment}: {e.strerror}") from None


def cut_tail(directory: Where, fd: int, segment: str, offset: int) -> TailRepaired:
    """Cut a crashed writer's unfinished batch off a segment, keeping a copy in ``torn/``."""
    size = os.fstat(fd).st_size
    name = f"{segment}.{offset}.torn"
    data = os.pread(fd, size - offset, offset)
    with subdir(directory, TORN_DIR, create=True) as torn:
        path, tfd = at(torn, name)
        tmp = write_temp(torn, name, data)
        os.replace(tmp, path, src_dir_fd=tfd, dst_dir_fd=tfd)  # a copy of an earlier cut at the same place is replaced, never written through
        sync_dir(torn)
    os.ftruncate(fd, offset)
    os.fsync(fd)
    return TailRepaired(segment=segment, offset=offset, bytes_cut=size - offset, copy=f"{TORN_DIR}/{name}")


def create_head(directory: Where, name: str) -> None:
    """Create the head with its disk blocks reserved, so that a full disk is an error at open.

    The head is written through an mmap, and storing into a page that has no block yet is a
    SIGBUS on a full disk. The blocks are reserved under a temporary name, then linked into
    place: where the file system cannot reserve them, glibc emulates it by writing, which must
    not race with a writer using the head. (A head rebuild reserves them again under the lock,
    for a head made any other way.)
    """
    path, dfd = at(directory, name)
    fd, tmp = create_temp(directory, name)
    os.close(fd)
    try:
        preallocate(tmp, HEAD_SIZE, dir_fd=dfd)
        os.link(tmp, path, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except FileExistsError:
        pass  # another writer created it first
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP):  # no hard links here: Head creates it
            raise
    finally:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
