"""Operations after review: the failure counter of a partner no profile names starts at 0, a retry whose
attempt outlived its lease is counted once, a receipt the partner refuses is logged with the pulled MessageId,
and /ready tells a node that cannot work from one that can."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.interfaces.demo import Running, submit
from gateway.interfaces.keys import NODE
from gateway.metrics import FAILURES, REGISTRY
from gateway.outbound.dispatch import Attempt
from gateway.settings import StoreSettings
from gateway.store import Direction, IllegalTransition, State
from tests.e2e import test_pull
from tests.e2e.conftest import Harness, StoreOutage, example
from tests.e2e.test_pull import BE, CH, IA, write_ch_view

pull_harness = test_pull.pull_harness  # the fixture: Belgium keeps what it sends Switzerland, which pulls
lossy_proxy = test_pull.lossy_proxy  # the fixture: a hop before Belgium that answers the first receipt 503


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def _scrape(session: aiohttp.ClientSession, gateway: Running) -> str:
    async with session.get(f"{gateway.url}/metrics") as response:
        return await response.text()


async def test_the_failure_counter_of_a_partner_without_profile_starts_at_0_before_its_first_failure(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    await be.runner.app[NODE].dispatcher.drain()  # Switzerland is down: RETRY_WAIT
    await harness.stop(BE)
    (harness.tmp / "profiles" / "ch-swissmedic.yaml").unlink()  # retired while the node was stopped
    FAILURES.clear()  # a new process starts with no series
    be = await harness.start(BE)
    node = be.runner.app[NODE]
    await node.dispatcher.run_once()  # the node's first send sweep, which the start wakes

    labels = 'permit_gateway_messages_failed_total{direction="out",partner="ch-swissmedic"}'
    assert f"{labels} 0.0" in (await _scrape(session, be)).splitlines()
    record = await node.store.find(Direction.OUTBOUND, message_id)
    assert record is not None and record.expires_at is not None
    harness.clock.advance(record.expires_at - harness.clock.now() + timedelta(minutes=1))
    await node.dispatcher.drain()

    failed = await node.store.find(Direction.OUTBOUND, message_id)
    assert failed is not None and failed.state is State.FAILED
    assert f"{labels} 1.0" in (await _scrape(session, be)).splitlines()  # increase() sees 0 -> 1


async def test_a_retry_whose_attempt_outlived_its_lease_is_counted_once(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)
    node = be.runner.app[NODE]
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    await node.dispatcher.drain()  # the node's first attempt (Switzerland is down), so it claims no more now
    harness.clock.advance(timedelta(minutes=2))  # past the retry delay
    [stale] = await node.store.claim_due("node-a", limit=1, lease=timedelta(minutes=2), partners=["ch-swissmedic"])
    harness.clock.advance(timedelta(minutes=3))  # node-a stalls past its lease
    assert await node.store.recover_leases() == 1
    [fresh] = await node.store.claim_due("node-b", limit=1, lease=timedelta(minutes=2), partners=["ch-swissmedic"])
    partner = node.partners.get("ch-swissmedic")
    failure = Attempt(receipt=None, retryable=True, reason="EBMS:0005 test", http_status=None, latency_ms=1.0)
    retries = {"partner": "ch-swissmedic", "outcome": "retry"}
    before = _sample("permit_gateway_send_attempts_total", **retries) or 0.0

    with pytest.raises(IllegalTransition):  # node-a's late outcome is not applied
        await node.dispatcher._settle(stale, partner, failure)
    assert _sample("permit_gateway_send_attempts_total", **retries) == before
    await node.dispatcher._settle(fresh, partner, failure)  # node-b's

    assert _sample("permit_gateway_send_attempts_total", **retries) == before + 1
    record = await node.store.find(Direction.OUTBOUND, message_id)
    assert record is not None and record.state is State.RETRY_WAIT
    kinds = [e.kind for e in await node.store.events(record.id)]
    assert kinds == ["submitted", "send_failed", "lease_expired", "send_failed"]  # the node's, then node-b's


async def test_a_receipt_the_partner_refuses_is_logged_with_the_pulled_message_id(
    pull_harness: Harness, lossy_proxy: tuple[str, list[int]], session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    proxy, dropped = lossy_proxy
    write_ch_view(harness, proxy)
    be = await harness.start(BE)
    with capture_logs() as logs:
        await harness.start(CH)
        message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
        refused = await _logged(logs, "partner refused the receipt for a pulled message")

    assert dropped == [1]
    assert refused["message_id"] == message_id
    assert refused["http_status"] == 503 and refused["partner"] == "be-famhp"


async def _logged(logs: list[dict[str, Any]], event: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while not (found := [entry for entry in logs if entry["event"] == event]):
            await asyncio.sleep(0.05)
    return found[0]


async def _ready(session: aiohttp.ClientSession, gateway: Running) -> tuple[int, dict[str, Any]]:
    async with session.get(f"{gateway.url}/ready") as response:
        return response.status, await response.json()


async def test_ready_while_the_node_can_work_and_health_stays_live(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)

    status, body = await _ready(session, be)
    assert status == 200 and body["status"] == "ready" and body["problems"] == []
    assert body["party_id"] == BE and body["node"] == be.runner.app[NODE].node_id
    async with session.head(f"{be.url}/health") as response:
        assert response.status == 200
    async with session.head(f"{be.url}/ready") as response:
        assert response.status == 405  # like every GET route but /health's


@pytest.fixture
async def cut_store(harness: Harness, store_outage: StoreOutage) -> AsyncIterator[Running]:
    store_outage.gateway = await harness.start(BE, store=StoreSettings(url=store_outage.url))
    await store_outage.cut()
    yield store_outage.gateway


async def test_not_ready_while_the_store_is_out_of_reach(
    cut_store: Running, session: aiohttp.ClientSession
) -> None:
    status, body = await _ready(session, cut_store)

    assert status == 503 and body["status"] == "not ready"
    [problem] = body["problems"]
    # "cannot be reached", or "did not answer ... within 2 s" while the store waits for a database that may be back
    assert problem["check"] == "store" and problem["error"].startswith("the message store ")
    assert "[store].url" in problem["fix"]
    assert "gateway.db" not in str(body)  # where the database is goes to the log only
    async with session.get(f"{cut_store.url}/health") as response:
        assert response.status == 200  # alive: a restart would not bring the store back


async def test_not_ready_when_the_profiles_folder_cannot_be_listed(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)
    folder = harness.tmp / "profiles"
    folder.rename(harness.tmp / "profiles-away")  # root lists a folder of mode 000: take it away instead
    try:
        status, body = await _ready(session, be)
    finally:
        (harness.tmp / "profiles-away").rename(folder)

    assert status == 503
    [problem] = body["problems"]
    assert problem == {
        "check": "profiles",
        "error": "the profiles folder cannot be listed: No such file or directory",
        "fix": "check that [profiles].folder exists and that the gateway's account may read it (a network share: "
        "mounted)",
    }
    assert "[profiles].folder" in problem["fix"]
    assert (await _ready(session, be))[0] == 200


async def test_not_ready_once_our_certificate_has_expired(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)
    ours = be.runner.app[NODE].keys.own_certificates()
    harness.clock.advance(max(c.not_valid_after_utc for _, c in ours) - harness.clock.now() + timedelta(days=1))

    status, body = await _ready(session, be)

    assert status == 503
    assert [p["check"] for p in body["problems"]] == ["certificate"]
    assert "our certificate has expired: current" in body["problems"][0]["error"]


async def test_a_store_error_is_named_by_its_type_and_its_text_goes_to_the_log_only(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    be = await harness.start(BE)
    store = be.runner.app[NODE].store

    async def refused(*args: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('db.internal', 5432)")

    monkeypatch.setattr(store, "ping", refused)  # as asyncpg fails when the database's host refuses
    with capture_logs() as logs:
        status, body = await _ready(session, be)

    assert status == 503
    [problem] = body["problems"]
    assert (
        problem["error"] == "the message store cannot be reached (ConnectionRefusedError; the log has the reason)"
    )
    assert "db.internal" not in str(body)
    assert any("db.internal" in str(entry.get("reason")) for entry in logs)
