"""The sender's profile chooses how a received permit reaches the national system: its own folder, a webhook,
SOAP or REST pull."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from gateway.interfaces.demo import Running, message, submit, wait_for, write_profiles
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.store import Direction
from tests.conftest import free_port
from tests.e2e.conftest import Harness, example, metric
from tests.inbound.national import national_system

IA = "BE-IA-2026-0001.xml"


@dataclass
class Hook:
    url: str
    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    port = free_port()
    found = Hook(url=f"http://127.0.0.1:{port}/permits", statuses=[])

    async def receive(request: web.Request) -> web.Response:
        found.received.append((dict(request.headers), await request.read()))
        return web.Response(status=found.statuses.pop(0) if found.statuses else 200)

    app = web.Application()
    app.router.add_post("/permits", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield found
    await runner.cleanup()


async def _send(harness: Harness, session: aiohttp.ClientSession, extra: str) -> tuple[Running, str, bytes]:
    """Both gateways with ``extra`` in every profile; BE sends the import authorization to CH."""
    profiles = harness.tmp / "profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(profiles, endpoints, extra=extra)
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    document = example(IA, today=harness.clock.now())
    message_id = (await submit(session, be, document))["message_id"]
    await wait_for(session, be, message_id, "ACKNOWLEDGED")
    return ch, message_id, document


def _inbox_empty(gateway: Running) -> bool:
    return not gateway.inbox.exists() or list(gateway.inbox.iterdir()) == []


async def test_webhook_gets_the_permit_and_its_metadata_once(
    harness: Harness, session: aiohttp.ClientSession, hook: Hook
) -> None:
    ch, message_id, document = await _send(harness, session, f"delivery:\n  method: webhook\n  url: {hook.url}\n")
    done = await wait_for(session, ch, message_id, "DELIVERED")
    assert len(hook.received) == 1
    headers, body = hook.received[0]
    assert body == document and headers["Content-Type"] == "application/xml"
    assert headers["X-Permit-Message-Id"] == message_id
    assert headers["X-Permit-From-Party"] == "BE-FAMHP"
    assert headers["X-Permit-Document-Type"] == done["document_type"]
    assert headers["X-Permit-Document-Number"] == "BE-IA-2026-0001"
    assert headers["X-Permit-Conversation-Id"] == done["conversation_id"]
    deliver = [e for e in done["events"] if e["kind"] == "deliver"]
    assert deliver[0]["detail"] == {"webhook": hook.url, "status": 200}
    assert _inbox_empty(ch)


async def test_webhook_error_is_retried_after_the_lease_and_delivered_once(
    harness: Harness, session: aiohttp.ClientSession, hook: Hook
) -> None:
    hook.statuses.append(500)
    ch, message_id, _ = await _send(harness, session, f"delivery:\n  method: webhook\n  url: {hook.url}\n")
    attempts = "permit_gateway_delivery_attempts_total"
    labels = {"partner": "be-famhp", "method": "webhook"}
    failed = await _wait_event(session, ch, message_id, "delivery_failed")
    failures = await metric(session, ch, attempts, outcome="failed", **labels)
    assert failures >= 1
    assert failed["state"] == "ACCEPTED" and len(hook.received) == 1
    assert "HTTP 500" in next(e for e in failed["events"] if e["kind"] == "delivery_failed")["detail"]["reason"]
    harness.clock.advance(timedelta(minutes=10))
    ch.runner.app[NODE].delivery_pump.wake()
    done = await wait_for(session, ch, message_id, "DELIVERED")
    assert len(hook.received) == 2
    assert [e["kind"] for e in done["events"]].count("deliver") == 1
    assert await metric(session, ch, attempts, outcome="failed", **labels) == failures
    assert await metric(session, ch, attempts, outcome="delivered", **labels) >= 1
    assert _inbox_empty(ch)


async def _wait_event(
    session: aiohttp.ClientSession, gateway: Running, message_id: str, kind: str
) -> dict[str, Any]:
    for _ in range(200):
        found = await message(session, gateway, message_id)
        if found is not None and any(e["kind"] == kind for e in found["events"]):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event for {message_id}")


async def _pull_listing(session: aiohttp.ClientSession, gateway: Running, message_id: str) -> list[dict[str, Any]]:
    """The REST pull listing once it shows ``message_id`` (the message is stored before the receipt leaves)."""
    for _ in range(200):
        async with session.get(f"{gateway.url}/api/v1/inbox", params={"partner": "be-famhp"}) as listing:
            listed: list[dict[str, Any]] = (await listing.json())["messages"]
        if [m["message_id"] for m in listed] == [message_id]:
            return listed
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} is not listed for REST pull")


def _switch_delivery(harness: Harness, gateway: Running, extra: str) -> None:
    """Rewrite every profile with ``extra`` and reload at once (what an admin edit does)."""
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=extra)
    assert gateway.runner.app[PROFILE_WATCHER].reload("test: delivery method changed")


async def test_rest_pull_lists_fetches_and_acks(harness: Harness, session: aiohttp.ClientSession) -> None:
    ch, message_id, document = await _send(harness, session, "delivery:\n  method: rest-pull\n")
    listed = await _pull_listing(session, ch, message_id)
    assert (await message(session, ch, message_id) or {})["state"] == "ACCEPTED"
    delivered = {"partner": "be-famhp", "method": "rest-pull", "outcome": "delivered"}
    before = await metric(session, ch, "permit_gateway_delivery_attempts_total", **delivered)
    timed = await metric(session, ch, "permit_gateway_delivery_latency_seconds_count", partner="be-famhp")
    async with session.get(f"{ch.url}{listed[0]['url']}") as fetched:
        assert fetched.status == 200 and await fetched.read() == document
        assert fetched.headers["X-Permit-Message-Id"] == message_id
    ack_url = f"{ch.url}/api/v1/inbox/{quote(message_id, safe='@')}/ack"
    for acknowledged in (True, False):
        async with session.post(ack_url) as ack:
            assert ack.status == 200
            assert await ack.json() == {
                "message_id": message_id,
                "state": "DELIVERED",
                "acknowledged": acknowledged,
            }
    await wait_for(session, ch, message_id, "DELIVERED")
    assert await metric(session, ch, "permit_gateway_delivery_attempts_total", **delivered) == before + 1
    assert (
        await metric(session, ch, "permit_gateway_delivery_latency_seconds_count", partner="be-famhp") == timed + 1
    )
    async with session.get(f"{ch.url}/api/v1/inbox") as listing:
        assert (await listing.json())["messages"] == []
    async with session.post(f"{ch.url}/api/v1/inbox/nobody@nowhere/ack") as unknown:
        assert unknown.status == 404
    assert _inbox_empty(ch)


async def test_a_pulled_permit_whose_file_is_gone_is_answered_with_the_reason(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch, message_id, _ = await _send(harness, session, "delivery:\n  method: rest-pull\n")
    listed = await _pull_listing(session, ch, message_id)
    node = ch.runner.app[NODE]
    record = await node.store.find(Direction.INBOUND, message_id)
    assert record is not None
    node.payloads.remove(record.payload_sha256, untouched_for=timedelta(0))

    async with session.get(f"{ch.url}{listed[0]['url']}") as fetched:
        assert fetched.status == 500
        body = await fetched.json()
    assert body["error"] == "the permit cannot be read"
    assert body["detail"].startswith(f"payload {record.payload_sha256} is missing")


async def test_a_partner_with_its_own_folder_gets_its_messages_there(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    folder = harness.tmp / "from-partners"
    ch, message_id, document = await _send(harness, session, f"delivery:\n  folder: {folder}\n")
    await wait_for(session, ch, message_id, "DELIVERED")
    [permit] = folder.glob("*.xml")
    assert permit.read_bytes() == document
    assert json.loads(permit.with_suffix(".json").read_text())["message_id"] == message_id
    assert _inbox_empty(ch)


async def test_soap_fault_is_retried_and_the_permit_delivered_once(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    async with national_system(free_port()) as national:
        national.answers.append("fault")
        extra = f"delivery:\n  method: soap\n  url: {national.url}\n"
        ch, message_id, document = await _send(harness, session, extra)
        failed = await _wait_event(session, ch, message_id, "delivery_failed")
        assert failed["state"] == "ACCEPTED" and national.stored == {}
        harness.clock.advance(timedelta(minutes=10))
        ch.runner.app[NODE].delivery_pump.wake()
        done = await wait_for(session, ch, message_id, "DELIVERED")
    assert national.invalid == [] and national.requests == 2
    delivered = national.stored[message_id]
    assert delivered.document == document
    assert delivered.metadata["FromParty"] == "BE-FAMHP" and delivered.metadata["PartnerId"] == "be-famhp"
    assert delivered.metadata["ConversationId"] == done["conversation_id"]
    assert delivered.metadata["DocumentNumber"] == "BE-IA-2026-0001"
    deliver = [e for e in done["events"] if e["kind"] == "deliver"]
    assert deliver == [deliver[0]] and deliver[0]["detail"] == {
        "soap": national.url,
        "national_reference": "NAT-0001",
    }
    assert _inbox_empty(ch)


async def test_messages_waiting_for_pull_go_by_the_new_method_after_a_profile_change(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch, message_id, document = await _send(harness, session, "delivery:\n  method: rest-pull\n")
    await _pull_listing(session, ch, message_id)
    assert _inbox_empty(ch)

    _switch_delivery(harness, ch, "")  # back to the default: the inbox folder

    await wait_for(session, ch, message_id, "DELIVERED")
    [permit] = ch.inbox.glob("*.xml")
    assert permit.read_bytes() == document
    async with session.get(f"{ch.url}/api/v1/inbox") as listing:
        assert (await listing.json())["messages"] == []


async def test_a_partner_switched_to_rest_pull_has_its_messages_listed_not_pushed(
    harness: Harness, session: aiohttp.ClientSession, hook: Hook
) -> None:
    hook.statuses.append(500)
    ch, message_id, document = await _send(harness, session, f"delivery:\n  method: webhook\n  url: {hook.url}\n")
    await _wait_event(session, ch, message_id, "delivery_failed")

    _switch_delivery(harness, ch, "delivery:\n  method: rest-pull\n")
    harness.clock.advance(timedelta(minutes=10))
    ch.runner.app[NODE].delivery_pump.wake()

    [listed] = await _pull_listing(session, ch, message_id)
    async with session.get(f"{ch.url}{listed['url']}") as fetched:
        assert await fetched.read() == document
    await asyncio.sleep(0.3)  # a push would have happened by now
    assert len(hook.received) == 1
    assert (await message(session, ch, message_id) or {})["state"] == "ACCEPTED"


@pytest.mark.parametrize(
    ("inside", "named"), [("", "is the outbox ([folders].outbox)"), (".processing", "is inside")]
)
async def test_a_delivery_folder_that_is_the_outbox_holds_the_permit_saying_so_instead_of_losing_it(
    harness: Harness, session: aiohttp.ClientSession, inside: str, named: str
) -> None:
    """A profile written on disk named Switzerland's outbox as its delivery folder: the permit was delivered
    there, taken as a document to send, refused ("received from a partner") into the rejected folder, and never
    reached the national system, though the message said DELIVERED. Its .processing/ is submitted the same way."""
    outbox = harness.settings("CH-SWISSMEDIC").folders.outbox
    folder = outbox / inside if inside else outbox
    ch, message_id, _ = await _send(harness, session, f"delivery:\n  folder: {folder}\n")

    failed = await _wait_event(session, ch, message_id, "delivery_failed")

    assert failed["state"] == "ACCEPTED"
    reason = next(e for e in failed["events"] if e["kind"] == "delivery_failed")["detail"]["reason"]
    assert f"the delivery folder of partner 'be-famhp' ({folder}) {named}" in reason, reason
    assert "set delivery.folder in that profile to the inbox or a folder inside it" in reason
    assert not folder.exists() or not list(folder.glob("*.xml"))
