"""Delivery limits review: a folder write that hangs on one node (its mount stale) is given up after
``HUNG_AFTER_LEASES`` claim leases, recorded as a failure and logged as an error, and another node delivers the
message; an attempt a stopping node gave back is no failure, so it neither lengthens the back-off of the first
real failure nor brings the alert nearer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.inbound.deliver import ALERT_AFTER, RETRY_DELAY, FolderDelivery
from gateway.profiles import ProfileRegistry
from gateway.store import MessageRecord, State
from tests.conftest import free_port
from tests.inbound.conftest import Inbound, partner
from tests.inbound.test_delivery_review import HeldPayloads, failed_count, permits


def hung_node(inbound: Inbound, registry: ProfileRegistry, gate: threading.Event, *, fail: bool) -> FolderDelivery:
    """node-1, whose reads of the permit hang until ``gate`` opens (its mount stale): a claim lease of 0.3 s."""
    node = FolderDelivery(
        store=inbound.store,
        payloads=HeldPayloads(inbound.payloads._root, gate, fail=fail),
        inbox=inbound.inbox,
        clock=inbound.clock,
        node_id="node-1",
        profiles=registry,
        http_timeout=0.1,
        lease=timedelta(seconds=0.3),  # renewed every 0.1 s, given up after 5 leases: 1.5 s
    )
    return node


async def failures_of(inbound: Inbound, record: MessageRecord, count: int) -> list[dict[str, object]]:
    """The message's delivery_failed details, once there are ``count`` of them (2 s at most)."""
    for _ in range(40):
        failed = [e.detail for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
        if len(failed) >= count:
            return failed
        await asyncio.sleep(0.05)
    return failed


async def test_a_hung_folder_write_is_given_up_and_another_node_delivers_the_message(
    inbound: Inbound, tmp_path: Path
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    first = hung_node(inbound, registry, gate, fail=False)
    failures = failed_count(record.partner_id)
    try:
        with structlog.testing.capture_logs() as logs:
            assert await first.run_once() == 1
            await asyncio.sleep(0.1)
            inbound.clock.advance(timedelta(hours=3))  # the mount hangs for hours
            [failed] = await failures_of(inbound, record, 1)
        assert failed["attempt"] == 1
        reason = str(failed["reason"])
        assert reason.startswith(f"folder write hung for 10800 s on node node-1 (folder {inbound.inbox}); ")
        assert "check that folder's file system" in reason and "5 claim leases (1.5 s)" in reason
        [error] = [entry for entry in logs if entry["log_level"] == "error"]
        assert error["event"].startswith("delivery hung and given up")
        assert (error["reason"], error["message_id"], error["attempt"]) == (reason, record.message_id, 1)
        assert failed_count(record.partner_id) == failures + 1  # PermitGatewayNationalDeliveryFailing counts it
        held = await inbound.store.get(record.id)
        assert (held.state, held.last_error) == (State.ACCEPTED, reason)
        assert held.next_attempt_at == inbound.clock.now() + timedelta(seconds=0.3)  # a first failure's back-off

        inbound.clock.advance(timedelta(seconds=1))
        second = FolderDelivery(  # node-2, whose mount of the national share answers
            store=inbound.store,
            payloads=inbound.payloads,
            inbox=tmp_path / "node-2-mount",
            clock=inbound.clock,
            node_id="node-2",
            profiles=registry,
        )
        assert await second.drain() == 1
        assert len(permits(tmp_path / "node-2-mount")) == 1
    finally:
        gate.set()
    await asyncio.wait(set(first._delivering))
    assert list(inbound.inbox.iterdir()) == []  # node-1's thread, released, writes nothing
    after = await inbound.store.get(record.id)
    assert (after.state, after.attempts, after.last_error) == (State.DELIVERED, 2, None)
    kinds = [event.kind for event in await inbound.store.events(record.id)]
    assert kinds == ["received", "accept", "delivery_failed", "deliver"]


async def test_a_hung_write_given_up_that_fails_later_is_not_counted_twice(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    gate = threading.Event()
    first = hung_node(inbound, ProfileRegistry([partner()]), gate, fail=True)
    failures = failed_count(record.partner_id)
    try:
        assert await first.run_once() == 1
        await asyncio.sleep(0.1)
        inbound.clock.advance(timedelta(seconds=2))
        assert len(await failures_of(inbound, record, 1)) == 1
    finally:
        gate.set()  # the mount answers at last, with an I/O error
    await asyncio.wait(set(first._delivering))
    assert len(await failures_of(inbound, record, 2)) == 1
    assert failed_count(record.partner_id) == failures + 1


async def test_a_node_that_claims_again_a_message_it_gave_up_makes_a_new_attempt(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    gate = threading.Event()
    first = hung_node(inbound, ProfileRegistry([partner()]), gate, fail=False)
    try:
        assert await first.run_once() == 1
        await asyncio.sleep(0.1)
        inbound.clock.advance(timedelta(seconds=2))
        assert len(await failures_of(inbound, record, 1)) == 1
        inbound.clock.advance(timedelta(seconds=1))
        assert await first.run_once() == 1  # its own first write still hangs: the new claim is renewed anew
        await asyncio.sleep(0.1)
        inbound.clock.advance(timedelta(seconds=2))
        failed = await failures_of(inbound, record, 2)
        assert [f["attempt"] for f in failed] == [1, 2]
        held = await inbound.store.get(record.id)
        assert (held.attempts, held.next_attempt_at) == (2, inbound.clock.now() + timedelta(seconds=0.6))
    finally:
        gate.set()
    await asyncio.wait(set(first._delivering))
    assert list(inbound.inbox.iterdir()) == []


@pytest.fixture
async def slow_webhook() -> AsyncIterator[str]:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/hook"
    await server.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_deliveries_a_stopping_node_gave_back_are_not_failures(inbound: Inbound, slow_webhook: str) -> None:
    record = await inbound.accepted(1)
    slow = ProfileRegistry([partner(delivery={"method": "webhook", "url": slow_webhook})])
    refusing = ProfileRegistry(
        [partner(delivery={"method": "webhook", "url": f"http://127.0.0.1:{free_port()}/"})]
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(ALERT_AFTER):  # rolling restarts while the national webhook answers slowly
            node = inbound.worker(slow, session=session)
            assert await node.run_once() == 1
            await asyncio.sleep(0.1)
            await node.close()
        given_back = await inbound.store.get(record.id)
        assert (given_back.attempts, given_back.last_error) == (ALERT_AFTER, None)

        with structlog.testing.capture_logs() as logs:
            assert await inbound.worker(refusing, session=session).drain() == 0
    after = await inbound.store.get(record.id)
    assert after.attempts == ALERT_AFTER + 1  # the claims' fence
    [failed] = [e.detail for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert failed["attempt"] == 1
    assert after.next_attempt_at == inbound.clock.now() + RETRY_DELAY  # the documented first back-off
    assert [(entry["log_level"], entry["event"], entry["attempt"]) for entry in logs] == [
        ("warning", "delivery failed", 1)
    ]
