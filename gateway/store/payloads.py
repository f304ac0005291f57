"""Content-addressed payload files under the data folder: the file name is the SHA-256 of the bytes."""

from __future__ import annotations

import hashlib
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
        if target.exists():
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"payload {sha256} is missing from {self._root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"payload file {path} does not match its SHA-256: the file was changed on disk")
        return data
