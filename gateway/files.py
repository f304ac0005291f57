"""Durable file writes: a temporary file in the same folder, fsynced, renamed over the target, and the folder
fsynced so that the new name survives a power cut too.

A reader never sees half a file, and a write repeated after a crash replaces the same file instead of adding one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

_READ_BLOCK = 1 << 20
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` (or what it wraps) says a file system is full or over quota: a payload or spool file that could not
    be written, SQLite's "database or disk is full", or the PostgreSQL server's disk_full (SQLSTATE 53100). Nothing
    was kept; the same request succeeds once there is space again."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, OSError) and found.errno in _FULL:
            return True
        if getattr(found, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        if _PG_DISK_FULL in (getattr(found, "sqlstate", None), getattr(found, "pgcode", None)):
            return True
        # what a handler re-raised "from None" is its own error, whatever it caught on the way
        context = None if found.__suppress_context__ else found.__context__
        found = getattr(found, "orig", None) or found.__cause__ or context
    return False


def write_atomically(
    path: Path, data: bytes, *, prefix: str = ".tmp-", keep_attributes: bool = False, mode: int | None = None
) -> None:
    write_chunks_atomically(path, (data,), prefix=prefix, keep_attributes=keep_attributes, mode=mode)


def write_chunks_atomically(
    path: Path,
    chunks: Iterable[bytes | memoryview],
    *,
    prefix: str = ".tmp-",
    keep_attributes: bool = False,
    mode: int | None = None,
) -> None:
    """``write_atomically`` for content that arrives in pieces (large payloads never sit in memory whole).

    A new file is private to this account (mode 0600) unless ``mode`` names another (``shared_mode()``: a file
    handed to another account). ``keep_attributes``: the file replaces one someone manages (a partner profile):
    it keeps that file's mode and owner, and through a symlink the link's target is replaced, not the link."""
    if keep_attributes and path.is_symlink():
        path = path.resolve()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        owned_like_folder(fd, path.parent)
        if mode is not None:
            os.fchmod(fd, mode)
        if keep_attributes:
            _take_attributes(path, fd)
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


@functools.cache
def shared_mode() -> int:
    """The mode ``open()`` gives a new file (0666 less the umask): for files another account reads, as the
    national system does the permits delivered to its folder. The umask is read once, from /proc where it can
    be: ``os.umask`` can only read it by setting it, for every thread of the process at once."""
    return 0o666 & ~_umask()


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _take_attributes(path: Path, fd: int) -> None:
    """Give the new file the mode and owner of ``path`` (when it exists): a service account that could read
    the old file can read the new one. Only root can give a file away; another account keeps the group."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) == (old.st_uid, old.st_gid):
        return
    if os.geteuid() == 0:
        os.fchown(fd, old.st_uid, old.st_gid)
        os.fchmod(fd, stat.S_IMODE(old.st_mode))  # chown clears the set-id bits
    else:
        with contextlib.suppress(PermissionError):  # allowed only for a group this account is in
            os.fchown(fd, -1, old.st_gid)


def owned_like_folder(fd: int, folder: Path) -> None:
    """Run as root in a folder another account owns (an operator's ``sudo permit-gateway messages retry``
    in the gateway's data folder), a new file goes to that account: left to root, with mode 0600, the gateway
    running as its own account could not read it."""
    if os.geteuid() != 0:
        return
    owner = os.stat(folder)
    if owner.st_uid != 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def make_folder(folder: Path) -> None:
    """``mkdir -p`` whose new folders belong to the account that owns the folder above them (see
    ``owned_like_folder``)."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            continue
        owner = os.stat(new.parent)
        if owner.st_uid != 0:
            # not following links: the account could swap the new folder for a link to one of root's
            os.chown(new, owner.st_uid, owner.st_gid, follow_symlinks=False)


def sync_folder(folder: Path) -> None:
    """fsync a directory: a rename is durable only once the directory entry is on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of_file(file: BinaryIO) -> str:
    """The SHA-256 of an open file's whole content, read in blocks; the file is left at its start."""
    digest = hashlib.sha256()
    file.seek(0)
    while block := file.read(_READ_BLOCK):
        digest.update(block)
    file.seek(0)
    return digest.hexdigest()


def remove_leftovers(folder: Path, prefix: str, *, older_than: float) -> list[Path]:
    """Delete the files named ``prefix...`` in ``folder`` and its ``*.attachments`` subfolders last changed
    more than ``older_than`` seconds ago: temporary files of writes a crash cut short. Nothing else is touched,
    nor followed through a symlink. Returns what was deleted."""
    cutoff = time.time() - older_than
    removed: list[Path] = []
    folders = [folder]
    with contextlib.suppress(FileNotFoundError):
        folders += [f for f in folder.glob("*.attachments") if f.is_dir() and not f.is_symlink()]
    for where in folders:
        with contextlib.suppress(FileNotFoundError):
            for path in where.glob(f"{glob.escape(prefix)}*"):
                with contextlib.suppress(FileNotFoundError):
                    found = path.lstat()
                    if stat.S_ISREG(found.st_mode) and found.st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
    return removed
