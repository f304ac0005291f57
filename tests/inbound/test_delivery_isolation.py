"""A national destination that hangs holds up only its own partner's deliveries, and at most PER_PARTNER of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

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
