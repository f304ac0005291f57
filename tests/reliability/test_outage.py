"""A partner that is down for a long stretch (simulated clock) in every way a network fails, then comes back,
gets every message, each under its original MessageId, and delivers none twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.clock import FixedClock
from gateway.interfaces.demo import AUTHORITIES, Running, gateway_settings, start_gateway, wait_for
from gateway.interfaces.keys import NODE
from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import import_authorization, inbox_message_ids, messages, write_profiles

HTTP_TIMEOUT = 0.5
OUTAGE = ["refused", "refused", "timeout", "500", "500", "reset", "timeout", "reset", "refused", "500"]


class FakePartner:
    """Sits where the partner's profile points: fails as told, or passes the request to the real gateway."""

    def __init__(self, port: int, real: str) -> None:
        self.port = port
        self.real = real
        self.mode = "ok"
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.mode == "timeout":
            await asyncio.sleep(HTTP_TIMEOUT * 4)
        if self.mode in ("500", "timeout"):
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "reset":
            response = web.StreamResponse(headers={"Content-Type": "application/soap+xml"})
            await response.prepare(request)
            await response.write(b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Hea")
            assert request.transport is not None
            request.transport.close()
            return response
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.real}/as4", data=body, headers={"Content-Type": request.headers["Content-Type"]}
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                headers={"Content-Type": answer.headers["Content-Type"]},
            )

    async def listen(self) -> None:
        if self.runner is None:
            app = web.Application()
            app.router.add_post("/as4", self.handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def become(self, mode: str) -> None:
        self.mode = mode
        await (self.close() if mode == "refused" else self.listen())


@pytest.fixture(params=["sqlite", "postgresql"])
def be_store(request: pytest.FixtureRequest) -> str | None:
    """Belgium's store: its SQLite file (None), or a PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def world(
    tmp_path: Path, pki: DevPki, be_store: str | None
) -> AsyncIterator[tuple[Running, Running, FakePartner, FixedClock]]:
    be_port, ch_port, fake_port = free_port(), free_port(), free_port()
    write_profiles(
        tmp_path / "profiles",
        {"BE-FAMHP": be_port, "CH-SWISSMEDIC": fake_port},
        retries=50,
        delays=(60, 600, 3600),
    )
    profile = tmp_path / "profiles" / "ch-swissmedic.yaml"
    profile.write_text(profile.read_text().replace("time_to_live_hours: 1", "time_to_live_hours: 72"))
    clock = FixedClock(datetime.now(UTC))
    outbound = {"sweep_seconds": 3600.0, "http_timeout_seconds": HTTP_TIMEOUT, "lease_seconds": 1.0}
    be_settings, ch_settings = (
        gateway_settings(
            a, pki, port=p, data_dir=tmp_path / "data", profiles=tmp_path / "profiles", outbound=outbound
        )
        for a, p in zip(AUTHORITIES, (be_port, ch_port), strict=True)
    )
    if be_store is not None:
        be_settings = be_settings.model_copy(
            update={"store": be_settings.store.model_copy(update={"url": be_store})}
        )
    be = await start_gateway("BE", be_settings, clock)
    ch = await start_gateway("CH", ch_settings, clock)
    fake = FakePartner(fake_port, ch.url)
    yield be, ch, fake, clock
    await fake.close()
    await be.runner.cleanup()
    await ch.runner.cleanup()


async def _attempts(session: aiohttp.ClientSession, be: Running) -> dict[str, int]:
    return {m["message_id"]: m["attempts"] for m in await messages(session, be, "outbound")}  # type: ignore[arg-type]


async def test_long_outage_of_every_kind_then_recovery_delivers_everything_once(
    world: tuple[Running, Running, FakePartner, FixedClock],
) -> None:
    be, ch, fake, clock = world
    await fake.become("refused")
    async with aiohttp.ClientSession() as session:
        ids = []
        for number in range(1, 11):
            async with session.post(f"{be.url}/api/v1/documents", data=import_authorization(number)) as response:
                ids.append((await response.json())["message_id"])
        for message_id in ids:
            await wait_for(session, be, message_id, "RETRY_WAIT")
        for step, mode in enumerate(OUTAGE, start=2):
            await fake.become(mode)
            clock.advance(timedelta(hours=2))
            be.runner.app[NODE].dispatch_pump.wake()
            await _until(step, session, be)
            for message_id in ids:
                await wait_for(session, be, message_id, "RETRY_WAIT")
        assert clock.now() - (await _first_submitted(session, be)) > timedelta(hours=19)
        await fake.become("ok")
        clock.advance(timedelta(hours=2))
        be.runner.app[NODE].dispatch_pump.wake()
        for message_id in ids:
            done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
            assert done["attempts"] == len(OUTAGE) + 2
            await wait_for(session, ch, message_id, "DELIVERED")
        received = await messages(session, ch, "inbound")
    delivered = inbox_message_ids(ch.inbox)
    assert sorted(delivered) == sorted(ids)
    assert sorted(m["message_id"] for m in received) == sorted(ids)


async def _until(attempts: int, session: aiohttp.ClientSession, be: Running, timeout: float = 20.0) -> None:
    """Wait until every message has been tried at least ``attempts`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(n >= attempts for n in (await _attempts(session, be)).values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"attempts did not advance: {await _attempts(session, be)}")


async def _first_submitted(session: aiohttp.ClientSession, be: Running) -> datetime:
    return min(datetime.fromisoformat(m["created_at"]) for m in await messages(session, be, "outbound"))
