"""The send loop under review: a lease kept through a store outage and stopped without cancelling a renewal, a
give-up counted only once moved, held partners and unpulled messages that alert, no POST past the time to live,
and an operator's retry that stays inside the partner's duplicate window."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.exc import OperationalError

from gateway.clock import FixedClock, SystemClock
from gateway.interfaces.demo import message, wait_for
from gateway.interfaces.keys import NODE
from gateway.metrics import SEND_ATTEMPTS
from gateway.outbound.dispatch import Attempt, Dispatcher
from gateway.settings import OutboundSettings
from gateway.store import IllegalTransition, MessageRecord, MessageStore, State, create_engine, upgrade
from tests.conftest import NOW
from tests.e2e.conftest import Harness, example, submit
from tests.e2e.test_pull import BE, CH, pull_harness  # noqa: F401  (a fixture)
from tests.e2e.test_suspended_partner import set_enabled
from tests.store.helpers import new_message
from tests.test_alerts import firing, rule_named, scraped

IA = "BE-IA-2026-0001.xml"


class _Partners:
    """A partner the dispatcher may send to; ``_post`` is replaced, so nothing in it is read."""

    def get(self, partner_id: str) -> Any:
        return SimpleNamespace(profile=SimpleNamespace(id=partner_id, enabled=True))

    def usable(self, partner: Any, now: Any) -> None:
        return None

    def __iter__(self) -> Any:
        return iter(())


@asynccontextmanager
async def _store(url: str, clock: Any) -> AsyncIterator[MessageStore]:
    engine = create_engine(url)
    await upgrade(engine)
    try:
        yield MessageStore(engine, clock)
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[MessageStore]:
    async with _store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", SystemClock()) as store:
        yield store


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[MessageStore]:
    async with _store(pg_url, SystemClock()) as store:
        yield store


def _dispatcher(store: MessageStore, *, lease_seconds: float) -> tuple[Dispatcher, list[str]]:
    """A dispatcher whose POST only records the message (the store is what these tests are about)."""
    dispatcher = Dispatcher(
        store=store,
        payloads=None,  # type: ignore[arg-type]
        partners=_Partners(),  # type: ignore[arg-type]
        clock=store._clock,
        session=None,  # type: ignore[arg-type]
        node_id="n1",
        http_timeout=lease_seconds / 3,
        lease=timedelta(seconds=lease_seconds),
        per_partner=1,
        max_in_flight=1,
    )
    posted: list[str] = []

    async def post(record: MessageRecord, partner: Any) -> Attempt:
        posted.append(record.message_id)
        return Attempt(receipt=None, retryable=True, reason="test", http_status=None, latency_ms=0.0)

    async def settle(record: MessageRecord, partner: Any, attempt: Attempt) -> None:
        return None

    dispatcher._post = post  # type: ignore[method-assign]
    dispatcher._settle = settle  # type: ignore[method-assign]
    return dispatcher, posted


async def test_a_store_outage_during_a_renewal_keeps_the_lease_and_the_send(sqlite_store: MessageStore) -> None:
    """One renewal that meets the store out of reach (SQLite busy, a dropped connection) did end the keeper; the
    message then waiting for a send slot was abandoned though its lease was still this node's."""
    store = sqlite_store
    await store.add(new_message("keep@be"))
    record = (await store.claim_due("n1", limit=1, lease=timedelta(seconds=60)))[0]
    dispatcher, posted = _dispatcher(store, lease_seconds=0.3)
    renew = store.renew_lease
    calls: list[str] = []

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        calls.append("renew")
        if len(calls) == 1:
            raise OperationalError("UPDATE messages", {}, ConnectionResetError("connection reset by peer"))
        return await renew(*args, **kwargs)

    store.renew_lease = flaky  # type: ignore[method-assign]
    await dispatcher._posting.acquire()  # another send holds the only slot
    send = asyncio.create_task(dispatcher._send(record))
    await asyncio.sleep(0.5)  # the first renewal fails, the next succeeds
    dispatcher._posting.release()
    await send

    kinds = [event.kind for event in await store.events(record.id)]
    assert posted == ["keep@be"] and "attempt_abandoned" not in kinds, kinds
    assert len(calls) >= 2


async def test_a_lease_another_claim_took_still_abandons_the_wait(sqlite_store: MessageStore) -> None:
    store = sqlite_store
    await store.add(new_message("lost@be"))
    record = (await store.claim_due("n1", limit=1, lease=timedelta(seconds=60)))[0]
    await store.release_leases("n1")  # the claim is gone: the renewal answers False
    dispatcher, posted = _dispatcher(store, lease_seconds=0.3)
    await dispatcher._posting.acquire()
    send = asyncio.create_task(dispatcher._send(record))
    await asyncio.sleep(0.3)
    dispatcher._posting.release()
    await send
    assert posted == [] and "attempt_abandoned" in [e.kind for e in await store.events(record.id)]


async def test_a_send_that_ends_mid_renewal_lets_the_renewal_finish(pg_store: MessageStore) -> None:
    """The keeper was cancelled when the send ended: a cancel landing in asyncpg's query drops the pooled
    connection and logs 'Future exception was never retrieved'. It is stopped and awaited instead."""
    store = pg_store
    await store.add(new_message("renewing@be"))
    record = (await store.claim_due("n1", limit=1, lease=timedelta(seconds=60)))[0]
    dispatcher, _ = _dispatcher(store, lease_seconds=0.3)
    renew = store.renew_lease
    renewing = asyncio.Event()
    outcomes: list[str] = []

    async def watched(*args: Any, **kwargs: Any) -> bool:
        renewing.set()
        try:
            renewed = await renew(*args, **kwargs)
        except asyncio.CancelledError:
            outcomes.append("cancelled")
            raise
        outcomes.append(f"renewed={renewed}")
        return renewed

    async def attempt(record: MessageRecord, lost: Any) -> None:
        await renewing.wait()  # the send ends while the renewal's query is on the wire

    store.renew_lease = watched  # type: ignore[method-assign]
    dispatcher._attempt = attempt  # type: ignore[method-assign, assignment]
    problems: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context.get("message")))
    try:
        await dispatcher._send(record)
        await asyncio.sleep(0.2)
    finally:
        loop.set_exception_handler(None)
    assert outcomes == ["renewed=True"], outcomes
    assert problems == []
    assert await renew(record.id, "n1", claimed=record.attempts, lease=timedelta(seconds=60))


async def test_a_give_up_refused_as_a_stale_claim_is_not_counted_as_failed(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    async with _store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", clock) as store:
        await store.add(new_message("stale@be"))
        mine = (await store.claim_due("node-a", limit=1, lease=timedelta(seconds=60)))[0]
        clock.advance(timedelta(seconds=61))
        await store.recover_leases()
        await store.claim_due("node-b", limit=1, lease=timedelta(seconds=60))
        dispatcher = Dispatcher(
            store=store,
            payloads=None,  # type: ignore[arg-type]
            partners=_Partners(),  # type: ignore[arg-type]
            clock=clock,
            session=None,  # type: ignore[arg-type]
            node_id="node-a",
            http_timeout=30,
            lease=timedelta(seconds=60),
            per_partner=1,
            max_in_flight=1,
        )
        failed = SEND_ATTEMPTS.labels(partner="ch-swissmedic", outcome="failed")
        before = failed._value.get()
        with pytest.raises(IllegalTransition):
            await dispatcher._give_up(mine, "no receipt after 3 attempts", {"attempt": mine.attempts})
        assert failed._value.get() == before
        assert (await store.get(mine.id)).state is State.SENDING


# --- held partners and partners that do not pull: the alerts -------------------------------------------------


def _alerting(name: str) -> set[str]:
    return {dict(labels)["partner"] for labels in firing(rule_named(name), scraped())}


async def test_a_held_partner_raises_its_alert_and_is_released(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    set_enabled(harness, be, "ch-swissmedic", False)
    dispatcher = be.runner.app[NODE].dispatcher
    await dispatcher.drain()
    assert "ch-swissmedic" in _alerting("PermitGatewayPartnerHeld")
    set_enabled(harness, be, "ch-swissmedic", True)
    await dispatcher.drain()
    assert "ch-swissmedic" not in _alerting("PermitGatewayPartnerHeld")


async def test_a_pull_partner_that_does_not_pull_raises_an_alert(
    pull_harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    dispatcher = be.runner.app[NODE].dispatcher
    harness.clock.advance(timedelta(minutes=10))
    await dispatcher.drain()
    assert "ch-swissmedic" not in _alerting("PermitGatewayPartnerNotTakingPermits")
    harness.clock.advance(timedelta(minutes=25))  # nobody pulled it: due for 35 minutes
    await dispatcher.drain()
    assert "ch-swissmedic" in _alerting("PermitGatewayPartnerNotTakingPermits")
    found = await message(session, be, body["message_id"])
    assert found is not None and found["state"] == "SUBMITTED"


# --- time to live -------------------------------------------------------------------------------------------


async def test_a_message_that_waited_for_a_send_slot_past_its_time_to_live_is_not_posted(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def as4(request: web.Request) -> web.Response:
        found = re.search(rb"MessageId>([^<]+)<", await request.read())
        assert found is not None
        seen.append(found.group(1).decode())
        await release.wait()
        return web.Response(status=500, text="down")

    app = web.Application()
    app.router.add_post("/as4", as4)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", harness.ports["CH-SWISSMEDIC"]).start()
    try:
        be = await harness.start("BE-FAMHP", outbound=OutboundSettings(max_in_flight=1))
        first = example(IA, today=harness.clock.now())
        ids = []
        for document in (first, first.replace(b"BE-IA-2026-0001", b"BE-IA-2026-0002")):
            status, body = await submit(session, be, document)
            assert status == 202, body
            ids.append(body["message_id"])
        for _ in range(100):  # the first POST hangs; the second waits for the only send slot
            if seen:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        harness.clock.advance(timedelta(hours=73))  # both time to live (72 h) run out meanwhile
        release.set()
        second = await wait_for(session, be, ids[1], "FAILED")
        assert ids[1] not in seen, seen
        assert "time to live ran out" in second["last_error"]
    finally:
        await runner.cleanup()


async def test_an_operator_retry_ends_inside_the_duplicate_window(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A retry resends the first eb:Timestamp: a fresh 72 h time to live would outlast the partner's 720 h
    window, and every attempt beyond it is refused as too old (EBMS:0003)."""
    be = await harness.start("BE-FAMHP")
    created = harness.clock.now()
    status, body = await submit(session, be, example(IA, today=created))
    assert status == 202, body
    message_id = body["message_id"]
    await wait_for(session, be, message_id, "RETRY_WAIT")
    harness.clock.advance(timedelta(hours=73))
    await be.runner.app[NODE].dispatcher.drain()
    assert (await message(session, be, message_id) or {})["state"] == "FAILED"

    harness.clock.advance(timedelta(hours=719 - 73))
    await harness.start("CH-SWISSMEDIC")
    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "back"}) as response:
        retried = await response.json()
        assert response.status == 200, retried
    assert datetime.fromisoformat(retried["expires_at"]) <= created + timedelta(hours=720) - timedelta(minutes=5)
    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")  # 719 h old: still inside the window
    assert done["state"] == "ACKNOWLEDGED"


async def test_an_operator_retry_past_the_duplicate_window_goes_as_a_new_message(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Its stored bytes carry an eb:Timestamp the partner would refuse for its age (EBMS:0003): the permit goes
    built anew under a new MessageId, and the FAILED one names it."""
    be = await harness.start("BE-FAMHP")
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    message_id = body["message_id"]
    await wait_for(session, be, message_id, "RETRY_WAIT")
    harness.clock.advance(timedelta(hours=73))
    await be.runner.app[NODE].dispatcher.drain()
    harness.clock.advance(timedelta(hours=720 - 73))
    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "late"}) as response:
        rebuilt = await response.json()
        assert response.status == 202, rebuilt
    assert rebuilt["supersedes"] == message_id and rebuilt["message_id"] != message_id
    assert (await message(session, be, message_id) or {})["state"] == "FAILED"
