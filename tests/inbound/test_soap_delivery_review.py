"""SOAP delivery (review fixes): the national system's idempotency key is DeliveryId, not MessageId, so two
partners' permits under one MessageId both arrive; a national service that hangs holds only the SOAP threads of
its URL, so another partner's service is called at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway.inbound.deliver import PER_PARTNER, FolderDelivery, delivery_id
from gateway.inbound.soap import SoapDelivery
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import free_port
from tests.inbound.conftest import Inbound, partner
from tests.inbound.national import national_system

SAME = "1@gateway.local"


async def test_two_partners_permits_under_one_message_id_both_reach_the_national_system(inbound: Inbound) -> None:
    async with national_system(free_port()) as national:
        ch = await inbound.accepted(1, message_id=SAME, data=b"<ImportAuthorization>CH</ImportAuthorization>")
        de = await inbound.accepted(
            2, partner_id="de-bfarm", message_id=SAME, data=b"<ImportAuthorization>DE</ImportAuthorization>"
        )
        soap = {"method": "soap", "url": national.url}
        worker = inbound.worker(ProfileRegistry([partner(delivery=soap), partner("de-bfarm", delivery=soap)]))

        assert await worker.drain() == 2

        assert national.invalid == [] and national.requests == 2
        kept = {
            d.delivery_id: (d.metadata["FromParty"], d.metadata["MessageId"], d.document)
            for d in national.deliveries.values()
        }
        assert kept == {
            delivery_id(ch): ("CH-SWISSMEDIC", SAME, b"<ImportAuthorization>CH</ImportAuthorization>"),
            delivery_id(de): ("DE-BFARM", SAME, b"<ImportAuthorization>DE</ImportAuthorization>"),
        }
        references = set()
        for record in (ch, de):
            assert (await inbound.store.get(record.id)).state is State.DELIVERED
            [event] = [e for e in await inbound.store.events(record.id) if e.kind == "deliver"]
            assert event.detail["national_reference"] == national.references[delivery_id(record)]
            references.add(event.detail["national_reference"])
        assert len(references) == 2


async def test_a_redelivery_carries_the_same_delivery_id_and_gets_the_first_reference(inbound: Inbound) -> None:
    async with national_system(free_port()) as national:
        record = await inbound.accepted(1)
        soap = SoapDelivery(timeout=5.0)
        try:
            first = await soap.deliver(national.url, record, b"<ImportAuthorization/>")
            again = await soap.deliver(national.url, record, b"<ImportAuthorization/>")
        finally:
            soap.close()
        assert first == again == "NAT-0001"
        assert list(national.deliveries) == [delivery_id(record)] and national.invalid == []


@dataclass
class Hanging:
    """A SOAP endpoint that takes requests and answers none until released; counts the calls at once."""

    url: str = ""
    now: int = 0
    most: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.released.wait()
        finally:
            self.now -= 1
        return web.Response(status=500, text="released")


@asynccontextmanager
async def hanging(port: int) -> AsyncIterator[Hanging]:
    endpoint = Hanging(url=f"http://127.0.0.1:{port}/hang")
    app = web.Application()
    app.router.add_post("/hang", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield endpoint
    finally:
        endpoint.released.set()
        await runner.cleanup()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_hanging_national_service_does_not_hold_up_another_partners(inbound: Inbound) -> None:
    async with hanging(free_port()) as hang, national_system(free_port()) as national:
        for n in range(PER_PARTNER):
            await inbound.accepted(n)
        healthy = await inbound.accepted(100, partner_id="de-bfarm")
        worker = inbound.worker(
            ProfileRegistry(
                [
                    partner(delivery={"method": "soap", "url": hang.url}),
                    partner("de-bfarm", delivery={"method": "soap", "url": national.url}),
                ]
            ),
            timeout=4.0,
        )
        try:
            started = time.monotonic()
            assert await worker.run_once() == PER_PARTNER  # the claim is full with the hanging partner's messages
            await asyncio.sleep(0.3)
            assert await worker.run_once() == 1
            took = await _delivered(inbound, healthy.id, started)

            # held up, it would wait for the hanging calls' 4 s time-out; the margin is for a loaded CI machine
            assert took < 3.5, f"the healthy partner's permit waited {took:.1f} s for the hanging service's calls"
            assert hang.most == PER_PARTNER  # every call of the hanging partner is held there meanwhile
        finally:
            await _stop(worker, hang)


async def _delivered(inbound: Inbound, record_id: int, started: float) -> float:
    while (await inbound.store.get(record_id)).state is not State.DELIVERED:
        assert time.monotonic() - started < 15, "never delivered"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _stop(worker: FolderDelivery, hang: Hanging) -> None:
    await worker.close()
    hang.released.set()


def _soap_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("soap-delivery"))


async def test_thread_pools_of_urls_no_longer_used_are_dropped(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each delivery URL had a pool of threads for good: an administrator trying URLs, or changing a partner's
    delivery.url again and again, left idle threads behind for each. Beyond SOAP_URLS the least recently used
    pool is dropped; a URL used again gets a new one."""
    monkeypatch.setattr("gateway.inbound.soap.SOAP_URLS", 3)
    before = _soap_threads()
    async with national_system(free_port()) as national:
        record = await inbound.accepted(1)
        soap = SoapDelivery(timeout=5.0)
        try:
            for n in range(8):
                assert await soap.deliver(f"{national.url}?try={n}", record, b"<ImportAuthorization/>")
            deadline = time.monotonic() + 5
            while _soap_threads() - before > 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert _soap_threads() - before <= 3
            assert await soap.deliver(f"{national.url}?try=0", record, b"<ImportAuthorization/>")
        finally:
            soap.close()
