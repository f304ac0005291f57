"""Which errors mean "a disk is full" (answered 503 with Retry-After) and which do not."""

from __future__ import annotations

import errno
import sqlite3

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from gateway.errors import GatewayError
from gateway.files import is_disk_full


def _raised(make: type[BaseException] | None = None) -> BaseException:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/var/gateway/payloads/ab/cd")
        except OSError:
            if make is None:
                raise
            raise make("the profile could not be read") from None
    except BaseException as caught:
        return caught
    raise AssertionError("nothing raised")


def test_an_oserror_of_a_full_or_over_quota_file_system_is_a_full_disk() -> None:
    assert is_disk_full(_raised())
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_what_wraps_it_is_followed_but_not_an_error_raised_from_none() -> None:
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = _raised()
    assert is_disk_full(wrapped)
    assert not is_disk_full(_raised(GatewayError)), "raised from None: its own error, not the full disk"


def test_sqlite_and_postgresql_say_it_their_own_way() -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (b BLOB)")
    connection.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(1000):
            connection.execute("INSERT INTO t VALUES (randomblob(4000))")
    assert is_disk_full(OperationalError("INSERT ...", {}, full.value))
    assert is_disk_full(asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"))
    assert not is_disk_full(asyncpg.exceptions.UniqueViolationError("duplicate key"))
