"""Each partner has its own send lane: a partner that takes the request and never answers holds up its own
messages until the HTTP time-out, and nobody else's."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from gateway.clock import SystemClock
from gateway.interfaces.demo import message, start_gateway, wait_for
from gateway.interfaces.keys import NODE
from gateway.interfaces.node import open_store
from gateway.settings import OutboundSettings
from gateway.store import Direction, State
from tests.conftest import serving
from tests.e2e.conftest import Harness, example, submit

IA = "BE-IA-2026-0001.xml"
PER_PARTNER = 4


@dataclass
class SilentPartner:
    """An AS4 endpoint that reads each request and answers none until released."""

    url: str = ""
    arrived: int = 0
    arrival_times: list[float] = field(default_factory=list)
    waiting: int = 0
    most_waiting: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived += 1
        self.arrival_times.append(time.monotonic())
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        return web.Response(status=503)


@pytest.fixture
async def silent() -> AsyncIterator[SilentPartner]:
    partner = SilentPartner()
    async with serving("/as4", partner.handle) as partner.url:
        yield partner
        partner.release.set()


def add_silent_profile(harness: Harness, endpoint: str) -> None:
    """A third partner, Germany, whose endpoint is the silent one (its certificate is only used to encrypt)."""
    (harness.tmp / "profiles" / "de-bfarm.yaml").write_text(
        "id: de-bfarm\nauthority_name: BfArM\ncountry: DE\nparty_id: DE-BFARM\n"
        f"endpoint: {endpoint}\nsecurity:\n  signing_certificate: de-bfarm.crt.pem\n"
    )


def numbered(harness: Harness, n: int, exporter: str = "DE") -> bytes:
    """An import from Germany (the silent partner's country) unless ``exporter`` says otherwise: a permit goes
    only to its trade's other country."""
    document = example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())
    return document.replace(b"<ExportingCountry>CH<", f"<ExportingCountry>{exporter}<".encode()).replace(
        b"<CountryCode>CH<", f"<CountryCode>{exporter}<".encode()
    )


async def test_a_partner_that_never_answers_holds_up_only_its_own_messages(
    harness: Harness, session: aiohttp.ClientSession, silent: SilentPartner
) -> None:
    add_silent_profile(harness, silent.url)
    outbound = OutboundSettings(http_timeout_seconds=60, max_in_flight_per_partner=PER_PARTNER)
    be = await harness.start("BE-FAMHP", outbound=outbound)
    ch = await harness.start("CH-SWISSMEDIC")

    stuck = []
    for n in range(101, 106):
        status, body = await submit(session, be, numbered(harness, n), "?partner=de-bfarm")
        assert status == 202, body
        stuck.append(body["message_id"])
    while silent.arrived < PER_PARTNER // 2:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)

    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    # the silent partner holds its POSTs for a minute; Switzerland's permit does not wait for them
    await wait_for(session, ch, body["message_id"], "DELIVERED", timeout=15)
    await wait_for(session, be, body["message_id"], "ACKNOWLEDGED", timeout=5)

    # the lane claims when half of it is free: between half and all of PER_PARTNER wait at the silent partner
    waiting = silent.arrived
    assert PER_PARTNER // 2 <= waiting <= PER_PARTNER and silent.most_waiting == waiting
    states = [(await message(session, be, m) or {}).get("state") for m in stuck]
    assert sorted(states) == ["SENDING"] * waiting + ["SUBMITTED"] * (5 - waiting)


async def test_a_retry_goes_when_the_profile_says_not_at_the_next_sweep(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    profile = harness.tmp / "profiles" / "ch-swissmedic.yaml"
    kept = profile.read_text().split("reception_awareness:")[0]
    profile.write_text(kept + "reception_awareness:\n  retries: 2\n  retry_delays_seconds: [2]\n")
    outbound = OutboundSettings(sweep_seconds=600)
    be = await start_gateway("BE", harness.settings("BE-FAMHP", outbound=outbound), SystemClock())
    harness.running["BE-FAMHP"] = be
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    await wait_for(session, be, body["message_id"], "RETRY_WAIT")  # Switzerland is not up yet
    await harness.start("CH-SWISSMEDIC")

    done = await wait_for(session, be, body["message_id"], "ACKNOWLEDGED", timeout=10)
    assert done["attempts"] == 2


async def test_sends_beyond_max_in_flight_wait_their_turn_without_it_counting_against_their_time_out(
    harness: Harness, session: aiohttp.ClientSession, silent: SilentPartner
) -> None:
    add_silent_profile(harness, silent.url)
    time_out = 2.0  # each wait costs the test a time-out: short, but with room for the real POST to Switzerland
    outbound = OutboundSettings(http_timeout_seconds=time_out, max_in_flight=1)
    be = await harness.start("BE-FAMHP", outbound=outbound)
    await harness.start("CH-SWISSMEDIC")
    for n in (101, 102):
        status, body = await submit(session, be, numbered(harness, n), "?partner=de-bfarm")
        assert status == 202, body
    while silent.arrived < 1:
        await asyncio.sleep(0.05)

    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    started = time.monotonic()
    # its turn comes when both POSTs to the silent partner have timed out, one after the other, a time-out each;
    # its own POST then has its whole time-out
    done = await wait_for(session, be, body["message_id"], "ACKNOWLEDGED", timeout=20)
    assert done["attempts"] == 1
    assert time.monotonic() - started > time_out * 2 / 3
    first, second = silent.arrival_times  # one at a time: the second only when the first had timed out
    assert second - first > time_out - 0.5


async def test_a_gateway_that_stops_mid_send_gives_the_message_back_due_at_once(
    harness: Harness, session: aiohttp.ClientSession, silent: SilentPartner
) -> None:
    add_silent_profile(harness, silent.url)
    be = await harness.start("BE-FAMHP")
    status, body = await submit(session, be, numbered(harness, 101), "?partner=de-bfarm")
    assert status == 202, body
    while silent.arrived < 1:
        await asyncio.sleep(0.05)

    await harness.stop("BE-FAMHP")

    store = await open_store(be.settings, harness.clock)
    try:
        record = await store.find(Direction.OUTBOUND, body["message_id"])
        assert record is not None
        assert (record.state, record.lease_owner, record.next_attempt_at) == (
            State.RETRY_WAIT,
            None,
            harness.clock.now(),
        )
        last = (await store.events(record.id))[-1]
        assert last.kind == "lease_expired" and "stopped while sending it" in last.detail["released"]
    finally:
        await store.close()


async def test_a_message_whose_signed_file_is_gone_fails_saying_so_and_its_lane_goes_on(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ids = []
    for n in (1, 2):
        status, body = await submit(session, be, numbered(harness, n, exporter="CH"))
        assert status == 202, body
        ids.append(body["message_id"])
        await wait_for(session, be, body["message_id"], "RETRY_WAIT")  # Switzerland is not up yet
    node = be.runner.app[NODE]
    lost = await node.store.find(Direction.OUTBOUND, ids[0])
    assert lost is not None and lost.wire_sha256 is not None
    node.payloads.remove(lost.wire_sha256, untouched_for=timedelta(0))  # a disk restored from an old backup
    await harness.start("CH-SWISSMEDIC")
    harness.clock.advance(timedelta(minutes=10))
    await node.dispatcher.drain()

    failed = await wait_for(session, be, ids[0], "FAILED")
    assert failed["last_error"].startswith(
        f"the signed message cannot be sent: payload {lost.wire_sha256} is missing"
    )
    assert "permit-gateway messages retry" in failed["last_error"]
    await wait_for(session, be, ids[1], "ACKNOWLEDGED")


async def test_a_send_waiting_longer_than_its_lease_keeps_it_and_each_message_goes_once_at_a_time(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """One send slot, a partner that answers just inside the time-out, and a lease shorter than the queue: the
    lease is renewed while the node works on the message, so it is never taken back and sent a second time
    beside the first, and each attempt counts once."""
    in_flight: Counter[str] = Counter()
    posts: Counter[str] = Counter()
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal most
        body = await request.read()
        start = body.index(b"<eb:MessageId>") + len(b"<eb:MessageId>")
        message_id = body[start : body.index(b"<", start)].decode()
        posts[message_id] += 1
        in_flight[message_id] += 1
        most = max(most, in_flight[message_id])
        await asyncio.sleep(0.45)
        in_flight[message_id] -= 1
        return web.Response(status=503)

    async with serving("/as4", slow) as url:
        add_silent_profile(harness, url)
        profile = harness.tmp / "profiles" / "de-bfarm.yaml"
        profile.write_text(profile.read_text() + "reception_awareness:\n  retry_delays_seconds: [600]\n")
        outbound = OutboundSettings(http_timeout_seconds=0.5, lease_seconds=0.6, sweep_seconds=0.2, max_in_flight=1)
        be = await start_gateway("BE", harness.settings("BE-FAMHP", outbound=outbound), SystemClock())
        harness.running["BE-FAMHP"] = be
        sent = []
        for n in range(101, 105):
            status, body = await submit(session, be, numbered(harness, n), "?partner=de-bfarm")
            assert status == 202, body
            sent.append(body["message_id"])
        for message_id in sent:
            await wait_for(session, be, message_id, "RETRY_WAIT", timeout=10)
        await asyncio.sleep(1.0)  # time for a taken-back lease to be claimed and sent again

    assert most == 1 and dict(posts) == dict.fromkeys(sent, 1), posts
    store = be.runner.app[NODE].store
    for message_id in sent:
        record = await store.find(Direction.OUTBOUND, message_id)
        assert record is not None and record.attempts == 1
        assert "lease_expired" not in [event.kind for event in await store.events(record.id)]
