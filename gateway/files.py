"""Durable file writes: a temporary file in the same folder, fsynced, renamed over the target, and the folder
fsynced so that the new name survives a power cut too.

A reader never sees half a file, and a write repeated after a crash replaces the same file instead of adding one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

_READ_BLOCK = 1 << 20


def write_atomically(path: Path, data: bytes, *, prefix: str = ".tmp-") -> None:
    write_chunks_atomically(path, (data,), prefix=prefix)


def write_chunks_atomically(path: Path, chunks: Iterable[bytes | memoryview], *, prefix: str = ".tmp-") -> None:
    """``write_atomically`` for content that arrives in pieces (large payloads never sit in memory whole)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
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
