"""A partner's message sent again under its MessageId, on a real gateway over HTTP with its store on SQLite and
PostgreSQL: a genuine retry (built and signed anew: new Timestamp, ids, signature and encryption keys) gets the
stored receipt; the same MessageId with any other signed header content (a PartInfo's MimeType or FileName,
MessageProperties) is refused with EBMS:0003 naming what differs, and the stored message is left as it was.
A message stored before migration 0011 (no header digests) is compared on its columns, as before."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update

from gateway.as4 import Party, PartyId, Payload, Property, UserMessage, build_user_message
from gateway.inbound.receive import header_digests
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.settings import StoreSettings
from gateway.store import Direction, State, create_engine
from gateway.store.schema import messages
from tests.conftest import NOW
from tests.e2e.conftest import (  # noqa: F401 - the two-gateway fixtures
    UNREGISTERED,
    Harness,
    example,
    harness,
    permit_user_message,
    session,
)

IA = "BE-IA-2026-0001.xml"
FOUR_CORNER = (
    Property(name="originalSender", value="urn:be:national-system", type=UNREGISTERED),
    Property(name="finalRecipient", value="urn:ch:national-system", type=UNREGISTERED),
)
SCAN = b"%PDF-1.4 the scanned paper original"


def _payloads(gateways: Harness, *, mime_type: str = "application/pdf", name: str = "scan.pdf") -> list[Payload]:
    return [
        Payload(content_id="permit@be", mime_type="application/xml", data=example(IA, today=gateways.clock.now())),
        Payload(
            content_id="scan@be",
            mime_type=mime_type,
            data=SCAN,
            properties=(Property(name="FileName", value=name),),
        ),
    ]


def _message(gateways: Harness, message_id: str, *, late: int = 0, **changes: Any) -> tuple[str, bytes]:
    """Built, signed and encrypted anew each time, ``late`` seconds after the first."""
    payloads = changes.pop("payloads", None) or _payloads(gateways)
    fields: dict[str, Any] = {
        "properties": FOUR_CORNER,
        "timestamp": gateways.clock.now() + timedelta(seconds=late),
    }
    sent = build_user_message(
        permit_user_message(gateways, message_id, **(fields | changes)),
        payloads,
        sender=gateways.keys("BE-FAMHP"),
        recipient_certificate=gateways.keys("CH-SWISSMEDIC").certificate,
    )
    return sent.content_type, sent.body


async def _post(client: aiohttp.ClientSession, gateway: Running, sent: tuple[str, bytes]) -> tuple[int, bytes]:
    content_type, body = sent
    async with client.post(f"{gateway.url}/as4", data=body, headers={"Content-Type": content_type}) as response:
        return response.status, await response.read()


def _text(answer: bytes) -> str:
    return html.unescape(answer.decode("utf-8", "replace"))


CHANGES: dict[str, tuple[dict[str, Any], str]] = {
    "attachment MimeType and FileName": (
        "payloads",
        "different PartInfo 2 (its MimeType or other part properties",
    ),
    "finalRecipient": (
        {
            "properties": (
                FOUR_CORNER[0],
                Property(name="finalRecipient", value="urn:x:elsewhere", type=UNREGISTERED),
            )
        },
        "different MessageProperties",
    ),
    "originalSender left out": ({"properties": FOUR_CORNER[1:]}, "different MessageProperties"),
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_the_same_message_id_with_other_signed_header_content_is_refused_naming_it(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    change: str,
) -> None:
    ch = await harness.start("CH-SWISSMEDIC", store=StoreSettings(url=store_url))
    mid = "resend-1@be-famhp.test"
    first, retry = _message(harness, mid), _message(harness, mid, late=60)  # a genuine retry, built anew
    assert first[1] != retry[1]
    status, receipt = await _post(session, ch, first)
    assert status == 200 and b"Receipt" in receipt, _text(receipt)[:1500]

    assert await _post(session, ch, retry) == (200, receipt)

    changes, named = CHANGES[change]
    if changes == "payloads":
        changes = {"payloads": _payloads(harness, mime_type="text/html", name="evil.html")}
    status, answer = await _post(session, ch, _message(harness, mid, late=120, **changes))

    text = _text(answer)
    assert status == 400 and "EBMS:0003" in text, text[:1500]
    assert f"MessageId '{mid}' was already received with different content ({named}" in text, text[:1500]
    stored = await ch.runner.app[NODE].store.find_all(Direction.INBOUND, mid)
    assert len(stored) == 1 and stored[0].state in (State.ACCEPTED, State.DELIVERED)
    assert [(a["filename"], a["mime_type"]) for a in stored[0].attachments or []] == [
        ("scan.pdf", "application/pdf")
    ]
    events = await ch.runner.app[NODE].store.events(stored[0].id)
    refused = [e.detail["reason"] for e in events if e.kind == "duplicate_refused"]
    assert len(refused) == 1 and refused[0].startswith(f"same MessageId, {named}"), refused


async def test_a_message_stored_before_the_header_digests_is_compared_on_its_columns(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    ch = await harness.start("CH-SWISSMEDIC", store=StoreSettings(url=store_url))
    mid = "before-0011@be-famhp.test"
    status, receipt = await _post(session, ch, _message(harness, mid))
    assert status == 200
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(messages).where(messages.c.message_id == mid).values(header_digests=None))
    finally:
        await engine.dispose()
    stored = await ch.runner.app[NODE].store.find(Direction.INBOUND, mid, "BE-FAMHP")
    assert stored is not None and stored.header_digests is None

    assert await _post(session, ch, _message(harness, mid, late=60)) == (200, receipt)
    changed = _payloads(harness)
    changed[1] = Payload(content_id="scan@be", mime_type="application/pdf", data=b"%PDF-1.4 another scan")
    status, answer = await _post(session, ch, _message(harness, mid, late=120, payloads=changed))
    assert status == 400 and "different content (different attachments)" in _text(answer), _text(answer)[:1500]


def test_the_header_digests_do_not_change_with_the_order_of_party_ids_or_properties() -> None:
    """A sender that keeps several PartyIds or properties in a set may send them in another order on a retry:
    the same message, the same digests. Another PartyId is another message."""
    ids = (PartyId(value="BE-FAMHP", type="urn:x:a"), PartyId(value="0208:0123456789", type="urn:x:b"))
    props = (Property(name="originalSender", value="s"), Property(name="finalRecipient", value="r"))
    first = UserMessage(
        message_id="m@x",
        timestamp=NOW,
        from_party=Party(party_ids=ids, role="urn:r:i"),
        to_party=Party(party_ids=(PartyId(value="CH-SWISSMEDIC", type="urn:x:a"),), role="urn:r:r"),
        service="urn:s",
        action="ImportAuthorization",
        conversation_id="c",
        properties=props,
    )
    again = replace(
        first,
        timestamp=NOW + timedelta(minutes=5),
        from_party=Party(party_ids=ids[::-1], role="urn:r:i"),
        properties=props[::-1],
    )
    other = replace(first, from_party=Party(party_ids=(ids[0],), role="urn:r:i"))

    assert header_digests(again) == header_digests(first)
    assert header_digests(other)["From party"] != header_digests(first)["From party"]
