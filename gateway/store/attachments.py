"""Supporting documents that travel with a permit (a scan of the paper original, an invoice, a licence).

Each is an AS4 payload of its own after the permit document, kept content-addressed in the payload store like
the permit; the message row lists them in order.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

FILENAME_PROPERTY = "FileName"
"""The eb:PartProperties property naming an attachment's file (no AS4 profile fixes one; we send and read it)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")


def safe_filename(name: str | None, position: int) -> str:
    """A file name that cannot leave its folder or confuse a shell: the base name, odd characters replaced."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    cleaned = _UNSAFE.sub("_", base)[:120]
    return cleaned or f"attachment-{position}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAttachment:
    """An attachment as the national system handed it over: an open file, read from its start."""

    filename: str
    mime_type: str
    file: BinaryIO


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """An attachment as stored: position (1 = first after the permit), name, type and content hash."""

    position: int
    filename: str
    mime_type: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Attachment:
        return cls(**{name: value[name] for name in ("position", "filename", "mime_type", "sha256", "size")})


def attachments_of(stored: list[dict[str, Any]] | None) -> list[Attachment]:
    return [Attachment.from_json(a) for a in stored or []]
