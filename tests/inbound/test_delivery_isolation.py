"""A national destination that hangs holds up only its own partner's deliveries, and at most PER_PARTNER of them;
a message that cannot be delivered holds up no other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from gateway.inbound.deliver import PER_PARTNER, FolderDelivery
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import serving
from tests.inbound.conftest import Inbound, partner


@dataclass
class SilentWebhook:
    """Takes every POST and answers none of them until the test ends."""

    url: str = ""
    held: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.held += 1
        await self.release.wait()
        return web.Response(status=204)


@pytest.fixture
async def silent() -> AsyncIterator[SilentWebhook]:
    hook = SilentWebhook()
    async with serving("/permits", hook.handle) as hook.url:
        yield hook
        hook.release.set()


@pytest.fixture
async def worker(inbound: Inbound, silent: SilentWebhook) -> AsyncIterator[FolderDelivery]:
    webhook = partner(delivery={"method": "webhook", "url": silent.url})
    async with aiohttp.ClientSession() as session:
        delivery = inbound.worker(ProfileRegistry([webhook, partner("de-bfarm")]), timeout=60, session=session)
        yield delivery
        await delivery.close()


async def _held(silent: SilentWebhook, count: int) -> None:
    while silent.held < count:
        await asyncio.sleep(0.02)


async def test_a_hung_webhook_holds_up_only_its_own_partners_deliveries(
    inbound: Inbound, silent: SilentWebhook, worker: FolderDelivery
) -> None:
    for n in range(3):
        await inbound.accepted(n)
    assert await asyncio.wait_for(worker.run_once(), 2) == 3
    await asyncio.wait_for(_held(silent, 3), 5)  # Switzerland's national webhook now holds them for a minute

    other = await inbound.accepted(10, partner_id="de-bfarm")
    assert await asyncio.wait_for(worker.run_once(), 2) == 1
    while (await inbound.store.get(other.id)).state is not State.DELIVERED:
        await asyncio.sleep(0.02)  # bounded by the test's time-out; it takes milliseconds
    assert len(list(inbound.inbox.glob("*.xml"))) == 1


async def test_a_hung_webhook_never_holds_more_than_the_per_partner_cap(
    inbound: Inbound, silent: SilentWebhook, worker: FolderDelivery
) -> None:
    woken: list[int] = []
    worker.wake_with(lambda: woken.append(1))
    records = [await inbound.accepted(n) for n in range(PER_PARTNER + 10)]
    started = 0
    for _ in range(4):  # as the node's loop would, woken by each full claim
        started += await asyncio.wait_for(worker.run_once(), 2)
    await asyncio.wait_for(_held(silent, PER_PARTNER), 5)
    await asyncio.sleep(0.2)
    assert started == silent.held == PER_PARTNER
    assert woken, "a full claim wakes the loop to look for more"

    silent.release.set()  # the webhook answers: the rest goes
    await asyncio.wait_for(worker.drain(), 10)
    assert silent.held == len(records)
    assert {(await inbound.store.get(r.id)).state for r in records} == {State.DELIVERED}


async def test_a_hung_national_soap_service_holds_none_of_the_threads_the_receive_path_uses(
    inbound: Inbound,
) -> None:
    hung = SilentWebhook()
    async with serving("/delivery", hung.handle) as url:
        worker = inbound.worker(ProfileRegistry([partner(delivery={"method": "soap", "url": url})]), timeout=60)
        try:
            for n in range(PER_PARTNER):
                await inbound.accepted(n)
            assert await asyncio.wait_for(worker.run_once(), 2) == PER_PARTNER
            await asyncio.wait_for(_held(hung, PER_PARTNER), 10)  # every SOAP call blocks its thread now

            # what the receive path and folder delivery do on worker threads still runs at once
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "stored"), 2) == "stored"
        finally:
            hung.release.set()
            await worker.close()


async def test_a_message_whose_payload_file_is_gone_is_retried_saying_why_and_the_others_go(
    inbound: Inbound,
) -> None:
    lost = await inbound.accepted(1, data=b"<ImportAuthorization>lost</ImportAuthorization>")
    other = await inbound.accepted(2)
    inbound.payloads.remove(lost.payload_sha256, untouched_for=timedelta(0))
    worker = inbound.worker(ProfileRegistry([partner()]))

    assert await worker.drain() == 1
    assert (await inbound.store.get(other.id)).state is State.DELIVERED
    failed = [e for e in await inbound.store.events(lost.id) if e.kind == "delivery_failed"]
    assert failed[0].detail["reason"].startswith(f"payload {lost.payload_sha256} is missing from ")
    assert (await inbound.store.get(lost.id)).state is State.ACCEPTED


async def test_stopping_gives_back_the_deliveries_in_flight_due_at_once(
    inbound: Inbound, silent: SilentWebhook, worker: FolderDelivery
) -> None:
    record = await inbound.accepted(1)
    assert await worker.run_once() == 1
    await asyncio.wait_for(_held(silent, 1), 5)

    await worker.close()

    given_back = await inbound.store.get(record.id)
    assert (given_back.state, given_back.next_attempt_at, given_back.lease_owner) == (
        State.ACCEPTED,
        inbound.clock.now(),
        None,
    )
    assert (await inbound.store.events(record.id))[-1].detail == {
        "reason": "node node-1 stopped while delivering it"
    }
