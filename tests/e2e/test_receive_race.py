"""Two requests with one MessageId and different permits, racing: the one refused leaves nothing behind."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.interfaces.keys import NODE
from gateway.store import Direction, MessageRecord, State
from tests.e2e.conftest import Harness, example
from tests.e2e.test_two_gateways import IA, _error_code, _forged_user_message, _post_as4

MESSAGE_ID = "same@be-famhp.test"


async def _registered(session: aiohttp.ClientSession, url: str, number: str) -> int:
    async with session.get(f"{url}/api/v1/permits/ImportAuthorization/BE/{number}") as response:
        return response.status


async def test_the_refused_one_of_two_racing_messages_leaves_no_permit_behind(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    store = ch.runner.app[NODE].store
    lookup = store.find
    both_looked = asyncio.Event()
    looked: list[str] = []

    async def find_together(direction: Direction, message_id: str, *args: str | None) -> MessageRecord | None:
        """Both requests find no message before either stores its own: the race the database must decide."""
        found = await lookup(direction, message_id, *args)
        if message_id == MESSAGE_ID:
            looked.append(message_id)
            if len(looked) == 2:
                both_looked.set()
            await asyncio.wait_for(both_looked.wait(), 10)
        return found

    monkeypatch.setattr(store, "find", find_together)
    first = example(IA, today=harness.clock.now())
    second = first.replace(b"BE-IA-2026-0001", b"BE-IA-2026-0002")
    answers = await asyncio.gather(
        *(_post_as4(session, ch.url, *_forged_user_message(harness, d, MESSAGE_ID)) for d in (first, second))
    )
    monkeypatch.undo()

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 400]
    refused = next(a for a in answers if a[0] == 400)
    assert await _error_code(harness, *refused, about=MESSAGE_ID) == "EBMS:0003"
    kept = await store.find(Direction.INBOUND, MESSAGE_ID)
    assert kept is not None
    lost = "BE-IA-2026-0002" if kept.document_number == "BE-IA-2026-0001" else "BE-IA-2026-0001"
    assert await _registered(session, ch.url, kept.document_number or "") == 200
    assert await _registered(session, ch.url, lost) == 404, "the refused message's permit was kept"

    # Belgium sends the refused permit again, correctly, under a MessageId of its own: it is a new permit
    document = first if lost == "BE-IA-2026-0001" else second
    status, _, _ = await _post_as4(
        session, ch.url, *_forged_user_message(harness, document, "fresh@be-famhp.test")
    )
    assert status == 200
    fresh = await store.find(Direction.INBOUND, "fresh@be-famhp.test")
    assert fresh is not None and fresh.state in (State.ACCEPTED, State.DELIVERED)
