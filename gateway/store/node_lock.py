"""A serving node's mark on its SQLite file: an advisory lock that tells a second node on the same file that it
is not alone. It never refuses: SQLite serves several nodes on one host correctly, only slower."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

import structlog
from sqlalchemy.engine import URL

log = structlog.get_logger("gateway.store")

SUFFIX = ".node-lock"


def lock_path(url: URL) -> Path | None:
    """The lock file beside an SQLite database file; None for PostgreSQL and in-memory SQLite."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database.startswith(":memory:"):
        return None
    if database.startswith("file:"):  # a URI filename (``?uri=true``) names no plain path to put a file beside
        return None
    return Path(database + SUFFIX)


def hold(url: URL) -> BinaryIO | None:
    """Lock the file beside ``url``'s SQLite database for as long as the returned file stays open, or warn that
    another live process holds it. The kernel drops a killed process's lock, so none goes stale."""
    path = lock_path(url)
    if path is None:
        return None
    try:
        file = open(path, "a+b")  # noqa: SIM115 - held open for the store's life, closed by ``release``
    except OSError as exc:  # a lock file another user left: the check is lost, the node still serves
        log.warning(
            f"cannot open {path} to check that no other gateway node serves this SQLite store: {exc}."
            " Give the gateway's user write access to it, or remove it while no node runs",
            rule="one node per SQLite store",
            lock_file=str(path),
        )
        return None
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _warn(path, _holder(file))
        file.close()
        return None
    file.truncate(0)
    file.write(str(os.getpid()).encode())
    file.flush()
    return file


def release(file: BinaryIO | None) -> None:
    if file is not None:
        file.close()


def _holder(file: BinaryIO) -> int | None:
    file.seek(0)
    text = file.read(32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None  # None: the holder has not written its pid yet


def _warn(path: Path, pid: int | None) -> None:
    database = str(path)[: -len(SUFFIX)]
    who = f"another gateway node (pid {pid})" if pid is not None else "another gateway node"
    log.warning(
        f"{who} already serves the SQLite store {database}: SQLite serves several nodes on one host only with"
        " reduced throughput, as they take turns to write. Stop the other node if it was started by mistake"
        " (a second systemd unit, a forgotten terminal), or, to run several nodes, use PostgreSQL ([store] url)",
        rule="one node per SQLite store",
        database=database,
        lock_file=str(path),
        other_pid=pid,
    )
