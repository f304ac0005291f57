"""A store operation whose caller is cancelled (a node stopping) runs to its end, on SQLite and PostgreSQL.

Cut mid-statement, it left SQLite's write lock with a connection nobody closed: the stopping node then waited
its whole ``wait_seconds`` to give its leases back, and failed to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from structlog.testing import capture_logs

from gateway.clock import FixedClock
from gateway.store import MessageStore, State, create_engine, upgrade
from gateway.tasks import run_to_end
from tests.store.helpers import new_message


@pytest.fixture
async def impatient(store_url: str, clock: FixedClock) -> AsyncIterator[MessageStore]:
    """A store whose statements wait 2 s for a lock, not 30."""
    engine = create_engine(store_url, wait_seconds=2)
    await upgrade(engine)
    yield MessageStore(engine, clock)
    await engine.dispose()


def _cancel_after_claim(store: MessageStore, caller: list[asyncio.Task[Any]]) -> None:
    """Cancel the caller while the claim's UPDATE runs."""

    def cancel(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "lease_owner" in statement and statement.lstrip().startswith("WITH") and caller:
            caller.pop().cancel()

    event.listen(store.engine.sync_engine, "before_cursor_execute", cancel)


async def test_a_claim_whose_caller_is_cancelled_commits_and_its_lease_is_given_back_at_once(
    impatient: MessageStore,
) -> None:
    added, _ = await impatient.add(new_message("cut@be"))
    caller: list[asyncio.Task[Any]] = []
    _cancel_after_claim(impatient, caller)
    claim = asyncio.create_task(impatient.claim_due("node-a", limit=5, lease=timedelta(minutes=2)))
    caller.append(claim)

    with pytest.raises(asyncio.CancelledError):
        await claim

    assert (await impatient.get(added.id)).state is State.SENDING
    assert await impatient.release_leases("node-a") == 1  # not "database is locked" after wait_seconds
    released = await impatient.get(added.id)
    assert released.state is State.RETRY_WAIT and released.lease_owner is None


async def test_run_to_end_finishes_the_work_then_passes_the_cancellation_on() -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    ended: list[str] = []

    async def work() -> str:
        started.set()
        await finish.wait()
        ended.append("work")
        return "done"

    caller = asyncio.create_task(run_to_end(work()))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0.01)
    caller.cancel()  # a second cancellation does not cut the work short either
    await asyncio.sleep(0.01)
    assert not caller.done() and ended == []
    finish.set()

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == ["work"]



async def test_what_the_work_raised_after_its_caller_was_cancelled_is_logged() -> None:
    finish = asyncio.Event()

    async def work() -> None:
        await finish.wait()
        raise RuntimeError("the commit failed")

    caller = asyncio.create_task(run_to_end(work()))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0)
    with capture_logs() as logs:
        finish.set()
        with pytest.raises(asyncio.CancelledError):
            await caller

    [said] = logs
    assert said["log_level"] == "error" and "the commit failed" in said["reason"]
