"""A SQLite store that another process keeps locked (a backup, a hung maintenance script): callers hear "try
again" (503 with Retry-After) once ``[store] wait_seconds`` runs out, whether they waited for the lock or queued
behind the one that did, and the gateway goes on once the lock is released."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp

from gateway.settings import StoreSettings
from gateway.store import is_unavailable
from gateway.store.store import PoolTimeoutError
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"


def test_no_free_pooled_connection_within_the_wait_is_an_outage_not_a_failure() -> None:
    assert is_unavailable(PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached"))


async def test_submissions_queued_behind_another_process_lock_are_answered_503_and_accepted_after_it(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Those queued for the one pooled connection waited 60 s and got a 500 (a pool time-out is no
    OperationalError), which a national system does not retry."""
    database = harness.tmp / "busy" / "gateway.db"
    be = await harness.start("BE-FAMHP", store=StoreSettings(url=f"sqlite+aiosqlite:///{database}", wait_seconds=1))
    document = example(IA, today=harness.clock.now())
    locker = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a backup or another writer would

    async def submit() -> tuple[int, str | None, dict[str, str]]:
        async with session.post(f"{be.url}/api/v1/documents", data=document) as response:
            return response.status, response.headers.get("Retry-After"), await response.json()

    try:
        answers = await asyncio.wait_for(asyncio.gather(*(submit() for _ in range(4))), 30)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for status, retry_after, body in answers:
        assert (status, body.get("error")) == (503, "store unavailable"), body
        assert retry_after is not None and "send it again" in body["detail"]

    status, _, body = await asyncio.wait_for(submit(), 30)
    assert status == 202, body
