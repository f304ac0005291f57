"""Every version of every profile, and an audit log of who changed what.

History: ``<data_dir>/profile-history/<id>/<n>.yaml`` holds version ``n`` of a profile exactly as written,
with ``<n>.json`` beside it (when, who, which action, which file name, whether it was refused). Versions are
numbered from 1 and never rewritten. ``retired`` holds the SHA-256 of the text an editor retired (or that was
removed from disk), until a version is added, and on a second line when and by whom (JSON).
Audit: ``<data_dir>/profile-audit.jsonl``, one JSON object a line, with a unified diff.
Audit markers: ``<n>.audited`` beside a version, and ``retired.audited`` (the SHA-256 it audited) beside
``retired``, are written once the change's audit entry is on disk: a change without one was left unaudited by a
writer that stopped, whatever became of the audit log since (rotated, moved away, truncated). ``.audit-markers``
in the history's root says that every change since it was written has its marker (histories of earlier versions
of the gateway have none).
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from gateway.errors import ProfileError
from gateway.files import write_atomically

PROFILE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_PROFILE_ID_LENGTH = 200
"""The longest profile id an edit can store: it names a history folder and the profile's file (with '.yaml' and
a temporary file's affixes), and a file name has at most 255 bytes."""
RETIRED = "retired"
AUDITED = ".audited"
MARKERS = ".audit-markers"

log = structlog.get_logger("gateway.profiles")


class UnknownVersion(ProfileError):
    """No such profile, or no such version of it."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_profile_id(profile_id: str) -> str:
    """Refuse anything but a profile slug before it becomes part of a path."""
    if len(profile_id) > MAX_PROFILE_ID_LENGTH:
        raise UnknownVersion(
            f"{profile_id[:40]!r}... ({len(profile_id)} characters) is not a profile id; a profile id has at most "
            f"{MAX_PROFILE_ID_LENGTH} characters, a lowercase slug such as 'ch-swissmedic'"
        )
    if not PROFILE_ID.fullmatch(profile_id):
        raise UnknownVersion(
            f"{profile_id!r} is not a profile id; expected a lowercase slug such as 'ch-swissmedic'"
        )
    return profile_id


def unified_diff(before: str, after: str, *, before_name: str, after_name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), before_name, after_name
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def write_text_atomically(path: Path, text: str, *, keep_attributes: bool = False) -> None:
    """``gateway.files.write_atomically`` for text: the exact characters given (no newline translation, so
    the ETag, a hash of the text, is the hash of the file), fsynced and renamed into place. ``keep_attributes``
    (a profile file): the file keeps its mode and owner, and a symlink keeps pointing at the new text."""
    write_atomically(path, text.encode("utf-8"), prefix=f".{path.name}.tmp-", keep_attributes=keep_attributes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    number: int
    at: str
    actor: str
    action: str
    file: str
    sha256: str
    refused: bool = False
    """A change found on disk that the gateway refused to load: kept as history, never a rollback's default."""


class ProfileHistory:
    """The version folders under ``root``; ``lock()`` serializes writers across processes (API and CLI)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and PROFILE_ID.fullmatch(p.name))

    def versions(self, profile_id: str) -> list[Version]:
        folder = self.root / check_profile_id(profile_id)
        if not folder.is_dir():
            return []
        found = [_read_meta(meta) for meta in folder.glob("*.json") if meta.stem.isdigit()]
        return sorted(found, key=lambda v: v.number)

    def latest(self, profile_id: str) -> Version | None:
        versions = self.versions(profile_id)
        return versions[-1] if versions else None

    def text(self, profile_id: str, number: int) -> str:
        path = self.root / check_profile_id(profile_id) / f"{number}.yaml"
        try:
            return path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            known = ", ".join(str(v.number) for v in self.versions(profile_id)) or "none"
            raise UnknownVersion(
                f"profile {profile_id!r} has no version {number} in {path.parent}; versions: {known}"
            ) from None

    def add(
        self,
        profile_id: str,
        text: str,
        *,
        at: datetime,
        actor: str,
        action: str,
        file: str,
        refused: bool = False,
    ) -> Version:
        folder = self.root / check_profile_id(profile_id)
        folder.mkdir(parents=True, exist_ok=True)
        latest = self.latest(profile_id)
        version = Version(
            number=(latest.number if latest else 0) + 1,
            at=at.isoformat(),
            actor=actor,
            action=action,
            file=file,
            sha256=sha256_text(text),
            refused=refused,
        )
        write_text_atomically(folder / f"{version.number}.yaml", text)
        write_text_atomically(folder / f"{version.number}.json", json.dumps(asdict(version), indent=2) + "\n")
        (folder / RETIRED).unlink(missing_ok=True)
        (folder / (RETIRED + AUDITED)).unlink(missing_ok=True)
        return version

    def mark_audited(self, profile_id: str, number: int) -> None:
        """Version ``number``'s audit entry is on disk (written after it is)."""
        write_text_atomically(self.root / check_profile_id(profile_id) / f"{number}{AUDITED}", "")

    def audited(self, profile_id: str, number: int) -> bool:
        return (self.root / check_profile_id(profile_id) / f"{number}{AUDITED}").is_file()

    def mark_retirement_audited(self, profile_id: str, sha256: str) -> None:
        """The retirement of the text ``sha256`` is audited (written after its entry is)."""
        write_text_atomically(self.root / check_profile_id(profile_id) / (RETIRED + AUDITED), sha256 + "\n")

    def retirement_audited(self, profile_id: str, sha256: str) -> bool:
        try:
            found = (self.root / check_profile_id(profile_id) / (RETIRED + AUDITED)).read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        return found.strip() == sha256

    def markers_kept(self) -> bool:
        """Whether every change since this history was upgraded (or began) has its audit marker."""
        return (self.root / MARKERS).is_file()

    def keep_markers(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.root / MARKERS, "every change audited since has its .audited marker\n")

    def mark_retired(
        self, profile_id: str, sha256: str, *, at: datetime | None = None, actor: str | None = None
    ) -> None:
        """Note that the file holding ``sha256`` was removed (by an editor's retire, or found removed on disk and
        audited): the watcher and the next start then do not audit it again. ``at`` and ``actor`` are kept to
        audit the retirement should its writer stop before it could."""
        folder = self.root / check_profile_id(profile_id)
        folder.mkdir(parents=True, exist_ok=True)
        who = "" if at is None else json.dumps({"at": at.isoformat(), "actor": actor}) + "\n"
        write_text_atomically(folder / RETIRED, sha256 + "\n" + who)

    def retired(self, profile_id: str) -> str | None:
        """The SHA-256 of the text an editor retired, if that is the last thing done to the profile."""
        lines = self._retired_lines(profile_id)
        return lines[0].strip() if lines else None

    def retired_by(self, profile_id: str) -> dict[str, Any]:
        """When and by whom the profile was retired, as ``mark_retired`` was told (empty if it was not)."""
        lines = self._retired_lines(profile_id)
        try:
            found = json.loads(lines[1]) if len(lines) > 1 else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def _retired_lines(self, profile_id: str) -> list[str]:
        try:
            return (self.root / check_profile_id(profile_id) / RETIRED).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []


def _read_meta(path: Path) -> Version:
    data = json.loads(path.read_text(encoding="utf-8"))
    # a version kept before a field was added has none: it takes the field's default
    return Version(**{key: data[key] for key in Version.__dataclass_fields__ if key in data})


def _ends_mid_line(handle: BinaryIO) -> bool:
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return False
    handle.seek(size - 1)
    return handle.read(1) != b"\n"


@dataclass(frozen=True, slots=True)
class AuditIndex:
    """What the audit log holds of each profile: the versions it audited, and the last entry that audited a
    version or a removal (a retirement is audited when that entry removed the text the retirement names)."""

    versions: set[tuple[str, int]]
    last: dict[str, dict[str, Any]]
    since: datetime | None = None
    """When the log's first entry was written (None: an empty log): it can tell only of changes since."""

    def audited(self, profile_id: str, number: int) -> bool:
        return (profile_id, number) in self.versions

    def covers(self, at: str | None) -> bool:
        """Whether the log reaches back to ``at`` (an ISO time), so a change made then is in it if audited."""
        when = _time(at)
        return when is not None and self.since is not None and self.since <= when

    def removal_audited(self, profile_id: str, sha256: str) -> bool:
        last = self.last.get(profile_id, {})
        return last.get("after_sha256") is None and last.get("before_sha256") == sha256


def _time(value: object) -> datetime | None:
    try:
        found = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return found if found is None or found.tzinfo is not None else None


def _records(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` audited a version, or a removal that took effect."""
    if isinstance(entry.get("version"), int):
        return True
    removal = entry.get("before_sha256") is not None and entry.get("after_sha256") is None
    return removal and entry.get("result") in ("ok", "activated")


class AuditLog:
    """Append-only JSON lines: who, when, action, profile, result, before/after hashes and the diff."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        """One line, on disk before this returns; after a line a crash cut short, on a line of its own."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # whatever text an entry holds (a header's undecodable bytes), the line is written: it records a change
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8", "backslashreplace")
        with self.path.open("a+b") as handle:
            if _ends_mid_line(handle):
                line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self, profile_id: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` entries, oldest first, for one profile or all."""
        found = [entry for entry in self._read() if profile_id is None or entry.get("profile") == profile_id]
        return found[-limit:]

    def index(self) -> AuditIndex:
        versions: set[tuple[str, int]] = set()
        last: dict[str, dict[str, Any]] = {}
        since: datetime | None = None
        for entry in self._read():
            if since is None:  # a recovered entry has the time of its change, and was written at recovered_at
                since = _time(entry.get("recovered_at") or entry.get("at"))
            profile = entry.get("profile")
            if not isinstance(profile, str) or not _records(entry):
                continue
            last[profile] = entry
            if isinstance(entry.get("version"), int):
                versions.add((profile, entry["version"]))
        return AuditIndex(versions=versions, last=last, since=since)

    def _read(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    entry = json.loads(line)
                except ValueError:  # a line a crash cut short: the entries around it still stand
                    log.warning("unreadable audit log line skipped", file=str(self.path), line=number)
                    continue
                if isinstance(entry, dict):
                    yield entry
