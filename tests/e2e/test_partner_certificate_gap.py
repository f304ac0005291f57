"""A queued message whose partner's certificate stops being valid (a gap in the partner's rollover) is held:
not claimed and not attempted, so the gap uses none of its retries, until the profile is fixed; it fails only
when its time to live runs out, saying why it was held."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from gateway.interfaces.demo import message, wait_for, write_profiles
from gateway.interfaces.keys import NODE
from tests.e2e.conftest import RETRIES, Harness, example

IA = "BE-IA-2026-0001.xml"


async def test_a_message_to_a_partner_whose_certificate_expired_waits_until_its_time_to_live(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=RETRIES + "  time_to_live_hours: 48\n")
    expires = harness.keys("CH-SWISSMEDIC").certificate.not_valid_after_utc
    harness.clock.advance(expires - timedelta(hours=1) - harness.clock.now())
    be = await harness.start("BE-FAMHP")  # Switzerland is down
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]
    first = await wait_for(session, be, message_id, "RETRY_WAIT")

    harness.clock.advance(timedelta(hours=2))  # past the end of Switzerland's certificate
    for _ in range(6):  # more sweeps than the profile has retries (two)
        harness.clock.advance(timedelta(hours=4))
        await be.runner.app[NODE].dispatcher.drain()
        waiting = await message(session, be, message_id)
        assert waiting is not None and waiting["state"] == "RETRY_WAIT", waiting
        assert waiting["attempts"] == first["attempts"] == 1

    harness.clock.advance(timedelta(hours=48))
    await be.runner.app[NODE].dispatcher.drain()
    failed = await message(session, be, message_id)
    assert failed is not None and failed["state"] == "FAILED" and failed["attempts"] == 1
    assert "time to live ran out while it was held unsent" in failed["last_error"]
    assert "CH-SWISSMEDIC" in failed["last_error"] and "expired" in failed["last_error"], failed["last_error"]
