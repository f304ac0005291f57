"""A consistent copy of what the gateway cannot rebuild, taken while it runs: the SQLite message store (through
SQLite's online backup, which a plain file copy of a database in WAL mode is not) and the payload files it names,
each checked against its SHA-256 name as it is copied. PostgreSQL is backed up with its own tools (pg_dump); the
payload files are copied all the same. Keys, partner profiles and the configuration are files an operator backs
up with the rest of the host (README, "Backup and restore")."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.errors import GatewayError
from gateway.files import make_folder, write_atomically

MANIFEST = "backup.json"
_CHUNK = 1 << 20


class BackupError(GatewayError):
    """A backup that cannot be made where it was asked for."""


@dataclass(slots=True)
class BackupReport:
    """What a backup holds: where, the database copied (None for PostgreSQL), the payload files copied and the
    ones whose content no longer matches their name (a damaged file, left out and named)."""

    folder: Path
    database: Path | None
    payloads: int = 0
    payload_bytes: int = 0
    damaged: list[str] = field(default_factory=list)


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite+aiosqlite:///PATH`` URL; None for PostgreSQL."""
    if not url.startswith("sqlite"):
        return None
    return Path(url.split(":///", 1)[-1])


def backup(url: str, payloads: Path, folder: Path, *, now: datetime) -> BackupReport:
    """Copy the store at ``url`` (when SQLite) and the payload files under ``payloads`` into ``folder``, which
    must not exist yet or be empty. The database goes first: a payload is written before the commit that names
    it, so every payload the copied database names is there when the files are copied after it."""
    _new_folder(folder)
    source = sqlite_path(url)
    report = BackupReport(folder=folder, database=None)
    if source is not None:
        report.database = folder / "gateway.db"
        _copy_sqlite(source, report.database)
    _copy_payloads(payloads, folder / "payloads", report)
    manifest = {
        "taken_at": now.isoformat(),
        "store": "sqlite" if source is not None else "postgresql (back it up with pg_dump)",
        "database": report.database.name if report.database else None,
        "payloads": report.payloads,
        "payload_bytes": report.payload_bytes,
        "damaged_payloads": report.damaged,
    }
    write_atomically(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return report


def _new_folder(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(
            f"{folder} exists and is not an empty folder; a backup goes into a new folder (one per backup, e.g. "
            "named by the date), so that it is never mixed with an older one"
        )
    make_folder(folder)


def _copy_sqlite(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"the message store {source} does not exist; check [store].url in the configuration")
    # through SQLite: a running gateway's WAL is included, and a write meanwhile never tears the copy
    reader = sqlite3.connect(source, timeout=30)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
        checked = writer.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        writer.close()
        reader.close()
    if checked != "ok":
        raise BackupError(
            f"the copy of {source} fails SQLite's check ({checked}); the copy in {target} is unusable"
        )
    os.chmod(target, 0o600)


def _copy_payloads(source: Path, target: Path, report: BackupReport) -> None:
    if not source.is_dir():
        return
    for shard in sorted(p for p in source.iterdir() if p.is_dir() and len(p.name) == 2):
        for file in sorted(p for p in shard.iterdir() if p.is_file() and not p.name.startswith(".")):
            copied = target / shard.name / file.name
            make_folder(copied.parent)
            size = _copy_checked(file, copied, expected=shard.name + file.name)
            if size is None:
                report.damaged.append(shard.name + file.name)
                continue
            report.payloads += 1
            report.payload_bytes += size


def _copy_checked(source: Path, target: Path, *, expected: str) -> int | None:
    """Copy ``source`` to ``target`` hashing it on the way; its size, or None (and no copy) when its content's
    SHA-256 is not ``expected``."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as reading, target.open("wb") as writing:
        while chunk := reading.read(_CHUNK):
            digest.update(chunk)
            writing.write(chunk)
            size += len(chunk)
    if digest.hexdigest() != expected:
        target.unlink()
        return None
    shutil.copystat(source, target)
    return size
