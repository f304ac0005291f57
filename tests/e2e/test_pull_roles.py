"""A message we pull may carry the agreement's roles the other way round: in One-Way/Pull the PMode's Initiator
is the party that pulls (ebMS 3.0 appendix D), and Domibus and Holodeck B2B give the message pulled from them the
responder's role as its From. Such a message is delivered; a pushed one with those roles is refused."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    Outgoing,
    Party,
    PartyId,
    Payload,
    ReceiptReceived,
    SecurityPolicy,
    build_user_message,
    parse_response,
    peek_signal,
)
from gateway.interfaces.demo import wait_for
from tests.e2e.conftest import UNREGISTERED, Harness, example, permit_user_message, session  # noqa: F401
from tests.e2e.test_pull import BE, CH, IA, MPC, _loopback_as4, post, pull_harness, write_ch_view  # noqa: F401

SWAPPED = {
    "from_party": Party(party_ids=(PartyId(value=BE, type=UNREGISTERED),), role=ROLE_RESPONDER),
    "to_party": Party(party_ids=(PartyId(value=CH, type=UNREGISTERED),), role=ROLE_INITIATOR),
}


def _swapped(harness: Harness, message_id: str, mpc: str | None = MPC) -> Outgoing:
    um = permit_user_message(harness, message_id, **({"mpc": mpc} if mpc else {}), **SWAPPED)
    permit = Payload(content_id="permit@test", mime_type="application/xml", data=example(IA, today=um.timestamp))
    return build_user_message(
        um, [permit], sender=harness.keys(BE), recipient_certificate=harness.keys(CH).certificate
    )


async def test_a_pulled_message_with_the_roles_the_other_way_round_is_delivered(
    pull_harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    served: list[Outgoing] = []
    receipts: list[ReceiptReceived] = []

    async def as4(request: web.Request) -> web.Response:
        body, content_type = await request.read(), request.headers.get("Content-Type", "")
        peeked = peek_signal(content_type, body)
        if peeked is not None and peeked.kind == "PullRequest":
            if served:
                return web.Response(status=204)
            served.append(_swapped(pull_harness, "pulled-swapped@be-famhp.test"))
            return web.Response(body=served[-1].body, headers={"Content-Type": served[-1].content_type})
        policy = SecurityPolicy(signing_certificates=(pull_harness.keys(CH).certificate,))
        answer = parse_response(content_type, body, sent=served[-1], policy=policy, now=pull_harness.clock.now())
        if isinstance(answer, ReceiptReceived):
            receipts.append(answer)
        return web.Response(status=200)

    async with _loopback_as4(as4) as endpoint:
        write_ch_view(pull_harness, endpoint)
        ch = await pull_harness.start(CH)
        await wait_for(session, ch, "pulled-swapped@be-famhp.test", "DELIVERED", timeout=10)
        for _ in range(100):
            if receipts:
                break
            await asyncio.sleep(0.05)
    assert len(receipts) == 1


async def test_a_pushed_message_with_the_roles_the_other_way_round_is_refused(
    pull_harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    ch = await pull_harness.start(CH)
    status, _, body = await post(session, ch, _swapped(pull_harness, "pushed-swapped@be-famhp.test", mpc=None))
    assert status == 400 and b"EBMS:0010" in body and b"From Role is" in body
