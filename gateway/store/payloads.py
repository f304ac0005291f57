"""Content-addressed payload files under the data folder: the file name is the SHA-256 of the bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

from gateway.errors import StoreError
from gateway.files import write_atomically


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
        try:
            os.utime(target)  # the same bytes again: mark the file in use, so the retention purge spares it
            return sha256
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)
        return sha256

    async def write(self, data: bytes) -> str:
        """``put`` on a worker thread: the fsync waits for the disk without stopping the event loop."""
        return await asyncio.to_thread(self.put, data)

    def remove(self, sha256: str, *, untouched_for: timedelta) -> bool:
        """Delete a file no message names any more, unless it was written or reused (``put``) within
        ``untouched_for``: a submission of the same bytes may be about to name it. True when deleted."""
        path = self.path(sha256)
        try:
            if time.time() - path.stat().st_mtime < untouched_for.total_seconds():
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"payload {sha256} is missing from {self._root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"payload file {path} does not match its SHA-256: the file was changed on disk")
        return data
