"""SOAP delivery edge cases: an answer zeep cannot read is a failed delivery like any other, and a message
whose eb:ConversationId is empty is still delivered, valid against national-delivery.xsd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web

from gateway.metrics import DELIVERY_ATTEMPTS
from gateway.profiles import ProfileRegistry
from gateway.store import Direction, Event, NewMessage, State
from tests.conftest import free_port
from tests.inbound.conftest import PERMIT, Inbound, partner
from tests.inbound.national import SOAP11, NationalSystem, national_system

ANSWERS = {
    "an empty Body": f'<s:Envelope xmlns:s="{SOAP11}"><s:Body/></s:Envelope>',
    "no Body": f'<s:Envelope xmlns:s="{SOAP11}"/>',
}


@pytest.fixture
async def national() -> AsyncIterator[NationalSystem]:
    async with national_system(free_port()) as system:
        yield system


@pytest.fixture
async def answering() -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A national system on loopback answering HTTP 200 with ``state["answer"]`` and counting requests."""
    state: dict[str, object] = {"answer": "", "requests": 0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        state["requests"] = int(str(state["requests"])) + 1
        return web.Response(text=str(state["answer"]), content_type="text/xml")

    app = web.Application()
    app.router.add_post("/permit-gateway/delivery", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/permit-gateway/delivery", state
    finally:
        await runner.cleanup()


def soap_profiles(url: str) -> ProfileRegistry:
    return ProfileRegistry([partner(delivery={"method": "soap", "url": url})])


def _failed_count() -> float:
    return DELIVERY_ATTEMPTS.labels(partner="ch-swissmedic", method="soap", outcome="failed")._value.get()


@pytest.mark.parametrize(("case", "error"), [("an empty Body", "IndexError"), ("no Body", "TypeError")])
async def test_an_unreadable_answer_is_a_failed_delivery_retried_after_the_back_off(
    inbound: Inbound, answering: tuple[str, dict[str, object]], case: str, error: str
) -> None:
    url, state = answering
    state["answer"] = ANSWERS[case]
    record = await inbound.accepted(1)
    worker = inbound.worker(soap_profiles(url))
    failed_before = _failed_count()

    assert await worker.drain() == 0

    waiting = await inbound.store.get(record.id)
    assert waiting.state is State.ACCEPTED and waiting.attempts == 1
    [failed] = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert failed.detail["reason"].startswith(f"SOAP {url}: unreadable answer: {error}; national-delivery.wsdl")
    assert _failed_count() == failed_before + 1
    assert await worker.drain() == 0 and state["requests"] == 1  # not due again before the back-off
    inbound.clock.advance(timedelta(minutes=5))
    assert await worker.drain() == 0 and state["requests"] == 2


async def test_an_empty_conversation_id_is_delivered_valid_against_the_schema(
    inbound: Inbound, national: NationalSystem
) -> None:
    new = NewMessage(
        direction=Direction.INBOUND,
        message_id="m-empty@ch-swissmedic.test",
        conversation_id="",
        ref_to_message_id=None,
        partner_id="ch-swissmedic",
        from_party="CH-SWISSMEDIC",
        to_party="BE-FAMHP",
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        document_type="ImportAuthorization",
        document_number="CH-IA-2026-0001",
        payload_sha256=inbound.payloads.put(PERMIT),
        payload_mime_type="application/xml",
    )
    record, _ = await inbound.store.add(new, then=Event.ACCEPT)

    assert await inbound.worker(soap_profiles(national.url)).drain() == 1

    assert national.invalid == []
    assert national.stored[record.message_id].metadata["ConversationId"] == ""
    assert (await inbound.store.get(record.id)).state is State.DELIVERED
