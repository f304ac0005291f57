"""The control tables (estimates, prohibitions, import requirements) follow their files while the gateway runs.

The INCB publishes supplementary estimates through the year; an administrator who saves a new ``estimates.csv``
expects the next permit to be checked against it, without a restart. A changed file is loaded whole and checked
first: a table with a mistake is refused with its file, line and fix, and the tables in use stay as they were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.documents import ControlTables, ReferenceDataError
from gateway.documents.control import CONTROL_TABLES

log = structlog.get_logger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(folder: Path) -> Fingerprint:
    """What changes when a table file is saved, added or removed: each file's name, size and change time."""
    found = []
    for name in CONTROL_TABLES:
        try:
            status = (folder / name).stat()
        except FileNotFoundError:
            continue
        found.append((name, status.st_size, status.st_mtime_ns))
    return tuple(found)


_GONE = (
    "was removed while the gateway runs, which would drop the whole table; to empty a table keep its header line "
    "alone, to drop it restart the gateway without it"
)


class ControlTablesWatcher:
    """Loads the tables at start, then, polled by the node's scheduler, again whenever their files change."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._seen: Fingerprint = ()

    def load(self) -> ControlTables:
        """The tables as the files are now (``ReferenceDataError`` for a bad one: the gateway does not start)."""
        self._seen = fingerprint(self._folder)  # before reading: a save while it reads is seen at the next check
        return ControlTables.load(self._folder)

    async def check(self, use: Callable[[ControlTables], None]) -> bool:
        """Hand the tables to ``use`` if their files changed and they load cleanly; True when it did."""
        now = await asyncio.to_thread(fingerprint, self._folder)
        if now == self._seen:
            return False
        gone = sorted({name for name, *_ in self._seen} - {name for name, *_ in now})
        self._seen = now  # a refused change is reported once, not at every poll; the next save is tried again
        try:
            if gone:  # deleted by mistake, or by a copy made as rm then cp: an empty table would pass everything
                raise ReferenceDataError(str(self._folder / gone[0]), None, _GONE)
            tables = await asyncio.to_thread(ControlTables.load, self._folder)
        except ReferenceDataError as exc:
            log.error(
                "control tables not reloaded: the permits are still checked against the tables loaded before",
                error=str(exc),
                fix="correct the file and save it again; the gateway loads it at once",
            )
            return False
        use(tables)
        log.info("control tables reloaded", tables=[t.to_json() for t in tables.tables])
        return True
