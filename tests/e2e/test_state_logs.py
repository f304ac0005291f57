"""Each state change of a message is logged with its MessageId: a submission, an operator's retry of a FAILED
message, and a refused incoming message, so an operator can follow one permit through the log."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import aiohttp
import structlog

from gateway.interfaces.demo import wait_for
from gateway.interfaces.keys import NODE
from tests.e2e.conftest import Harness, example
from tests.e2e.test_two_gateways import _forged_user_message, _post_as4

IA = "BE-IA-2026-0001.xml"


async def test_submission_operator_retry_and_refusal_are_logged_with_the_message_id(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")  # Switzerland is down until the end
    with structlog.testing.capture_logs() as logged:
        async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as r:
            message_id = (await r.json())["message_id"]
        await wait_for(session, be, message_id, "RETRY_WAIT")
        harness.clock.advance(timedelta(hours=73))
        await be.runner.app[NODE].dispatcher.drain()
        await wait_for(session, be, message_id, "FAILED")
        async with session.post(f"{be.url}/api/v1/messages/{quote(message_id, safe='@')}/retry") as r:
            assert r.status == 200, await r.text()
        ch = await harness.start("CH-SWISSMEDIC")
        bad = example("X-006-negative-quantity.xml", today=harness.clock.now(), folder="invalid")
        await _post_as4(session, ch.url, *_forged_user_message(harness, bad, "u1@be-famhp.test"))

    def events_of(message: str) -> list[str]:
        return [entry["event"] for entry in logged if entry.get("message_id") == message]

    assert events_of(message_id)[0] == "message submitted"
    assert "FAILED message sent again" in events_of(message_id)
    assert "message refused" in events_of("u1@be-famhp.test")
