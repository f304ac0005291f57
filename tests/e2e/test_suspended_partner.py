"""A suspended partner (``enabled: false``): its queued messages are held, new documents to it and messages
from it are refused, and re-enabling it sends what was held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp

from gateway.interfaces.demo import Running, message, wait_for
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from tests.e2e.conftest import Harness, example, submit

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"


def set_enabled(harness: Harness, gateway: Running, profile_id: str, enabled: bool) -> None:
    """Edit one profile in the shared folder and have ``gateway`` reload it at once (as an admin edit does)."""
    path = harness.tmp / "profiles" / f"{profile_id}.yaml"
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith("enabled:")]
    path.write_text("".join(lines) + f"enabled: {'true' if enabled else 'false'}\n")
    assert gateway.runner.app[PROFILE_WATCHER].reload(f"test: {profile_id} enabled={enabled}")


async def held_message(harness: Harness, session: aiohttp.ClientSession, be: Running) -> dict[str, Any]:
    """A message to CH waiting for its retry (CH is down), then CH suspended and the retry long due."""
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202
    await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    set_enabled(harness, be, "ch-swissmedic", False)
    harness.clock.advance(timedelta(minutes=10))
    await be.runner.app[NODE].dispatcher.drain()
    found = await message(session, be, body["message_id"])
    assert found is not None
    return found


async def test_queued_messages_are_held_while_suspended_and_go_out_when_enabled(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    held = await held_message(harness, session, be)
    message_id = held["message_id"]
    ch = await harness.start("CH-SWISSMEDIC")

    harness.clock.advance(timedelta(hours=1))
    assert await be.runner.app[NODE].dispatcher.drain() == 0
    still = await message(session, be, message_id)
    assert still is not None and still["state"] == "RETRY_WAIT" and still["attempts"] == 1
    assert (
        [e["kind"] for e in still["events"]] == [e["kind"] for e in held["events"]] == ["submitted", "send_failed"]
    )
    assert await message(session, ch, message_id) is None

    set_enabled(harness, be, "ch-swissmedic", True)  # the reload wakes the send loop

    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert done["attempts"] == 2
    await wait_for(session, ch, message_id, "DELIVERED")


async def test_held_messages_fail_when_their_time_to_live_runs_out_saying_the_partner_was_suspended(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    held = await held_message(harness, session, be)

    harness.clock.advance(timedelta(hours=72))
    await be.runner.app[NODE].dispatcher.drain()

    failed = await message(session, be, held["message_id"])
    assert failed is not None and failed["state"] == "FAILED" and failed["attempts"] == 1
    assert (
        "time to live ran out while it was held unsent: partner 'ch-swissmedic' is suspended" in failed["last_error"]
    )
    assert failed["events"][-1]["kind"] == "give_up"


async def test_new_documents_to_a_suspended_partner_are_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    set_enabled(harness, be, "ch-swissmedic", False)

    status, body = await submit(session, be, example(IA, today=harness.clock.now()))

    assert status == 409
    assert "partner 'ch-swissmedic' is suspended (enabled: false in its profile)" in body["detail"]
    async with session.get(f"{be.url}/api/v1/messages") as listing:
        assert (await listing.json())["messages"] == []


async def test_messages_from_a_suspended_partner_are_refused_with_an_ebms_error(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    set_enabled(harness, ch, "be-famhp", False)  # CH suspends BE; BE still sends to CH

    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202

    failed = await wait_for(session, be, body["message_id"], "FAILED")
    assert "EBMS:0010" in failed["last_error"]
    assert "partner 'be-famhp' is suspended (enabled: false in its profile)" in failed["last_error"]
    assert failed["attempts"] == 1
    assert await message(session, ch, body["message_id"]) is None


async def test_an_operator_retry_sends_a_failed_message_again_under_its_message_id(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    set_enabled(harness, ch, "be-famhp", False)  # CH refuses BE's message: it fails for good
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202
    message_id = body["message_id"]
    await wait_for(session, be, message_id, "FAILED")
    set_enabled(harness, ch, "be-famhp", True)

    retry = f"{be.url}/api/v1/messages/{message_id}/retry"
    async with session.post(retry, json={"reason": "Swissmedic lifted the suspension"}) as response:
        assert response.status == 200
        again = await response.json()
    assert again["message_id"] == message_id and again["state"] == "RETRY_WAIT" and again["attempts"] == 0

    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    retried = next(e for e in done["events"] if e["kind"] == "operator_retry")
    assert retried["detail"]["reason"] == "Swissmedic lifted the suspension"
    assert "EBMS:0010" in retried["detail"]["failed_because"]
    await wait_for(session, ch, message_id, "DELIVERED")

    async with session.post(retry) as response:
        assert response.status == 409
        assert "is ACKNOWLEDGED; only a FAILED message can be retried" in (await response.json())["detail"]
    async with session.post(f"{be.url}/api/v1/messages/nope@be/retry") as response:
        assert response.status == 404
    async with session.post(retry, data=b"not json", headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
    nested = b"[" * 5000 + b"]" * 5000  # a RecursionError in the JSON parser was a 500
    async with session.post(retry, data=nested, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
