"""Content-addressed payload files under the data folder: the file name is the SHA-256 of the bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from gateway.errors import StoreError
from gateway.files import make_folder, owned_like_folder, sync_folder, write_atomically

CHUNK = 1 << 20
_ASIDE = ".aside-"  # a payload file ``remove`` set aside before deleting it
ASIDE_SECONDS = 60.0
"""A file set aside longer than this was left by a crash (``remove`` takes microseconds)."""


class PayloadStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StoreError(f"{sha256!r} is not a SHA-256 hex digest")
        return self._root / sha256[:2] / sha256[2:]

    def put(self, data: bytes) -> str:
        """Write ``data`` once (atomically, fsynced) and return its SHA-256; the same bytes are stored once."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if self._reuse(target):
            return sha256
        self._shard(target)
        write_atomically(target, data)
        return sha256

    def _reuse(self, target: Path) -> bool:
        """The same bytes again: mark the file in use (its mtime), so the retention purge spares it."""
        try:
            os.utime(target)
        except FileNotFoundError:
            return False
        return True

    async def write(self, data: bytes) -> str:
        """``put`` on a worker thread: the fsync waits for the disk without stopping the event loop."""
        return await asyncio.to_thread(self.put, data)

    async def write_all(self, *contents: bytes) -> list[str]:
        """``write`` for several contents in one trip to a worker thread: their SHA-256s, in order."""
        return await asyncio.to_thread(lambda: [self.put(data) for data in contents])

    def put_chunks(self, chunks: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """``put`` for content in pieces, hashed while it is written: (SHA-256, size). Memory stays flat."""
        make_folder(self._root)
        fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".incoming-")
        owned_like_folder(fd, self._root)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            self.adopt(Path(tmp), digest.hexdigest())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size

    def put_file(self, source: BinaryIO) -> tuple[str, int]:
        """Copy an open file (from its start) into the store: (SHA-256, size)."""
        source.seek(0)
        return self.put_chunks(iter(lambda: source.read(CHUNK), b""))

    def adopt(self, written: Path, sha256: str) -> None:
        """Move a fully written file in as the payload ``sha256`` (or drop it when that payload exists)."""
        target = self.path(sha256)
        if self._reuse(target):
            written.unlink()
            return
        self._shard(target)
        os.replace(written, target)
        sync_folder(target.parent)

    def _shard(self, target: Path) -> None:
        """The two-letter folder of ``target``; a new one is made durable in the root folder too."""
        if not target.parent.is_dir():
            make_folder(target.parent)
            sync_folder(self._root)

    def incoming(self) -> IncomingFile:
        """A named file beside the payloads, hashed as it is written, that ``keep`` makes a stored payload."""
        make_folder(self._root)
        fd, name = tempfile.mkstemp(dir=self._root, prefix=".incoming-")
        owned_like_folder(fd, self._root)
        return IncomingFile(self, Path(name), os.fdopen(fd, "w+b"))

    def spool(self) -> BinaryIO:
        """A temporary file beside the payloads (same disk), gone when closed: for packing large messages."""
        make_folder(self._root)
        return tempfile.TemporaryFile(dir=self._root, prefix=".spool-")

    def open(self, sha256: str) -> BinaryIO:
        """The stored file for reading in pieces. Unlike ``get`` its hash is not checked on the way (it is
        whole-file work); what is sent from it is signed, so a changed file fails at the partner."""
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise StoreError(f"payload {sha256} is missing from {self._root}") from None

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"payload {sha256} is missing from {self._root}") from None

    def chunks(self, sha256: str) -> Iterator[bytes]:
        with self.open(sha256) as handle:
            while block := handle.read(CHUNK):
                yield block

    def remove_leftovers(self, *, untouched_for: timedelta) -> int:
        """Delete request bodies and packings a crash left half-written (``.incoming-*``); returns how many."""
        removed = 0
        cutoff = time.time() - untouched_for.total_seconds()
        for path in self._root.glob(".incoming-*") if self._root.is_dir() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def remove(self, sha256: str, *, untouched_for: timedelta) -> bool:
        """Delete a file no message names any more, unless it was written or reused (``put``) within
        ``untouched_for``: a submission of the same bytes may be about to name it. True when deleted."""
        path = self.path(sha256)
        limit = untouched_for.total_seconds()
        aside = path.with_name(f"{_ASIDE}{path.name}")
        try:
            if time.time() - path.stat().st_mtime < limit:
                return False
            # a submission here or on another node sharing the folder may reuse the file (touch it) between the
            # look and the delete: set it aside, look again, and put it back if it was touched meanwhile
            os.replace(path, aside)
        except FileNotFoundError:
            return False
        try:
            if time.time() - aside.stat().st_mtime < limit:
                os.replace(aside, path)
                return False
            aside.unlink()
        except FileNotFoundError:  # another node's sweep put it back meanwhile: it stays, judged again later
            return False
        return True

    @staticmethod
    def _restore(aside: Path, path: Path) -> None:
        if path.exists():
            aside.unlink()
        else:
            os.replace(aside, path)

    def shards(self) -> list[str]:
        """The two-letter folders payload files are kept in."""
        if not self._root.is_dir():
            return []
        return sorted(e.name for e in os.scandir(self._root) if e.is_dir() and len(e.name) == 2)

    def old_files(self, shard: str, *, untouched_for: timedelta) -> list[str]:
        """The SHA-256s of the payload files in ``shard`` untouched for ``untouched_for`` (which the purge asks
        the store about); a crash's half-written ``.tmp-*`` file that old is deleted on the way."""
        now = time.time()
        cutoff = now - untouched_for.total_seconds()
        found: list[str] = []
        for entry in os.scandir(self._root / shard):
            try:
                if not entry.is_file():
                    continue
                # set aside (its inode changed then) longer ago than a ``remove`` takes: a crash cut it short, and
                # the file goes back under its name whatever its age, a reuse just before may have touched it
                if entry.name.startswith(_ASIDE) and now - entry.stat().st_ctime > ASIDE_SECONDS:
                    self._restore(Path(entry.path), self._root / shard / entry.name.removeprefix(_ASIDE))
                elif entry.stat().st_mtime >= cutoff:
                    continue
                elif entry.name.startswith(".tmp-"):
                    os.unlink(entry.path)
                elif len(entry.name) == 62 and all(c in "0123456789abcdef" for c in entry.name):
                    found.append(shard + entry.name)
            except FileNotFoundError:
                continue
        return found

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"payload {sha256} is missing from {self._root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"payload file {path} does not match its SHA-256: the file was changed on disk")
        return data


class IncomingFile:
    """Bytes arriving in pieces (an HTTP request body), on disk and hashed on the way in; removed on
    ``close`` unless ``keep`` moved them into the store first."""

    def __init__(self, store: PayloadStore, path: Path, file: BinaryIO) -> None:
        self._store = store
        self._path = path
        self.file = file
        self._digest = hashlib.sha256()
        self.size = 0
        self._kept: str | None = None

    def write(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)
        self.file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        self.file.flush()
        self.file.seek(0)
        while block := self.file.read(CHUNK):
            yield block

    def keep(self) -> str:
        """Store the bytes (fsynced) under their SHA-256 and return it; the same bytes again are stored once."""
        if self._kept is None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self._store.adopt(self._path, self.sha256)
            self._kept = self.sha256
        return self._kept

    def close(self) -> None:
        self.file.close()
        if self._kept is None:
            self._path.unlink(missing_ok=True)
