"""What a partner or an anonymous client sends to /as4, and what the REST API then answers about it: a reused
MessageId, bytes that are not ASCII in a Content-Type, many slow uploads at once, an unknown PartyId, and a
partner whose answer to our receipt is no signal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from gateway.as4 import (
    MAX_SIGNAL_BYTES,
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    Outgoing,
    Party,
    PartyId,
    Payload,
    build_user_message,
)
from gateway.as4.model import Property
from gateway.inbound.deliver import webhook_headers
from gateway.inbound.puller import Puller, PullFailed
from gateway.interfaces.demo import Running, wait_for
from gateway.interfaces.keys import NODE
from gateway.profiles.model import Tls
from gateway.settings import InboundSettings, StoreSettings
from gateway.store import Direction, Event, MessageRecord, NewMessage
from gateway.store.attachments import Attachment
from tests.conftest import make_key_pair
from tests.e2e.conftest import UNREGISTERED, Harness, example, permit_user_message, submit

IA, EA = "BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"
SERVICE = "urn:permit-gateway:services:controlled-substances-trade"


def party(value: str, role: str) -> Party:
    return Party(party_ids=(PartyId(value=value, type=UNREGISTERED),), role=role)


async def raw_post(gateway: Running, head: bytes, body: bytes) -> bytes:
    """One request written byte for byte (aiohttp's client sends no header that is not ASCII); the answer."""
    port = int(gateway.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


# --- 1. a MessageId names one message --------------------------------------------------------------------


async def test_a_partner_message_under_the_message_id_of_one_we_sent_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    form = aiohttp.FormData()
    form.add_field("document", example(IA, today=harness.clock.now()), filename="ia.xml")
    form.add_field("attachment", b"%PDF Belgian scan", filename="be.pdf", content_type="application/pdf")
    _, answer = await submit(session, be, form)
    mid = answer["message_id"]
    await wait_for(session, be, mid, "ACKNOWLEDGED")
    await wait_for(session, ch, mid, "DELIVERED")
    # Switzerland's ExportAuthorization, sent under the MessageId it received from Belgium
    user_message = permit_user_message(
        harness,
        mid,
        action="ExportAuthorization",
        from_party=party("CH-SWISSMEDIC", ROLE_INITIATOR),
        to_party=party("BE-FAMHP", ROLE_RESPONDER),
    )
    sent = build_user_message(
        user_message,
        [
            Payload(content_id="p@ch", mime_type="application/xml", data=example(EA, today=harness.clock.now())),
            Payload(
                content_id="s@ch",
                mime_type="application/pdf",
                data=b"%PDF Swiss scan",
                properties=(Property(name="FileName", value="ch.pdf"),),
            ),
        ],
        sender=harness.keys("CH-SWISSMEDIC"),
        recipient_certificate=harness.keys("BE-FAMHP").certificate,
    )

    async with session.post(f"{be.url}/as4", data=sent.body, headers={"Content-Type": sent.content_type}) as r:
        refusal = await r.read()

    assert b"EBMS:0003" in refusal and b"is the MessageId of a message this gateway sent" in refusal
    assert b"new MessageId" in refusal
    assert await be.runner.app[NODE].store.find_all(Direction.INBOUND, mid) == []
    async with session.get(f"{be.url}/api/v1/messages/{mid}/attachments/1") as r:
        assert r.status == 200 and await r.read() == b"%PDF Belgian scan"


def _message(harness_payloads: Any, direction: Direction, partner: str, sender: str, scan: bytes) -> NewMessage:
    sha = harness_payloads.put(scan)
    return NewMessage(
        direction=direction,
        message_id="same-1@example.test",
        conversation_id="c",
        partner_id=partner,
        from_party=sender,
        to_party="CH-SWISSMEDIC" if direction is Direction.INBOUND else "BE-FAMHP",
        service=SERVICE,
        action="ImportAuthorization",
        document_type="ImportAuthorization",
        document_number=f"N-{sender}",
        payload_sha256=harness_payloads.put(b"<permit>" + scan + b"</permit>"),
        payload_mime_type="application/xml",
        wire_sha256=harness_payloads.put(b"wire of " + scan),
        wire_content_type="multipart/related",
        next_attempt_at=datetime(2999, 1, 1, tzinfo=UTC),  # ours is not sent meanwhile: no partner is running
        attachments=[
            Attachment(
                position=1, filename="a.pdf", mime_type="application/pdf", sha256=sha, size=len(scan)
            ).to_json()
        ],
    )


async def _stored_three(gateway: Running) -> list[MessageRecord]:
    """Stored before this fix, or by two partners: one MessageId on our message and on two partners' messages."""
    node = gateway.runner.app[NODE]
    records = []
    for direction, partner, sender, scan in (
        (Direction.OUTBOUND, "be-famhp", "CH-SWISSMEDIC", b"%PDF our own scan"),
        (Direction.INBOUND, "be-famhp", "BE-FAMHP", b"%PDF the Belgian scan"),
        (Direction.INBOUND, "de-bfarm", "DE-BFARM", b"%PDF the German scan"),
    ):
        new = _message(node.payloads, direction, partner, sender, scan)
        record, created = await node.store.add(new, then=Event.REJECT if direction is Direction.INBOUND else None)
        assert created
        records.append(record)
    return records


@pytest.mark.parametrize("route", ["", "/attachments/1", "/wire", "/receipt"])
async def test_a_message_id_that_names_several_messages_is_answered_409_naming_the_query(
    harness: Harness, session: aiohttp.ClientSession, route: str
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    await _stored_three(ch)

    async with session.get(f"{ch.url}/api/v1/messages/same-1@example.test{route}") as r:
        status, body = r.status, await r.json()

    assert status == 409, body
    assert "names 3 messages" in body["error"]
    assert (
        "?direction=inbound&from=DE-BFARM" in body["fix"]
        and "?direction=outbound&from=CH-SWISSMEDIC" in body["fix"]
    )


async def test_the_query_picks_the_message_and_the_urls_handed_out_carry_it(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,
    session: aiohttp.ClientSession,
) -> None:
    ch = await harness.start("CH-SWISSMEDIC", store=StoreSettings(url=store_url))
    _ours, _belgian, german = await _stored_three(ch)
    base = f"{ch.url}/api/v1/messages/same-1@example.test"

    async with session.get(f"{base}/attachments/1?direction=inbound&from=DE-BFARM") as r:
        assert (r.status, await r.read()) == (200, b"%PDF the German scan")
    async with session.get(f"{base}/wire?direction=outbound") as r:
        assert (r.status, await r.read()) == (200, b"wire of %PDF our own scan")
    async with session.get(f"{base}?direction=inbound&from=BE-FAMHP") as r:
        shown = await r.json()
    assert shown["partner"] == "be-famhp" and shown["direction"] == "inbound"
    async with session.get(f"{ch.url}{shown['attachments'][0]['url']}") as r:
        assert (r.status, await r.read()) == (200, b"%PDF the Belgian scan")
    # a webhook (or REST pull) consumer gets the URL template of the message it was given
    template = webhook_headers(german)["X-Permit-Attachments-Url"]
    async with session.get(ch.url + template.replace("{position}", "1")) as r:
        assert (r.status, await r.read()) == (200, b"%PDF the German scan")
    async with session.get(f"{base}?direction=sideways") as r:
        assert r.status == 400
    async with session.get(f"{base}?from=NOBODY") as r:
        assert r.status == 404


# --- 2. a Content-Type that is not ASCII -----------------------------------------------------------------


async def test_an_as4_content_type_that_is_not_ascii_is_refused_with_an_ebms_fault(harness: Harness) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    keys, theirs = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC")
    payload = Payload(content_id="p@t", mime_type="application/xml", data=example(IA, today=harness.clock.now()))
    sent = build_user_message(
        permit_user_message(harness, "latin1@be-famhp.test"),
        [payload],
        sender=keys,
        recipient_certificate=theirs.certificate,
    )
    head = (
        b"POST /as4 HTTP/1.1\r\nHost: ch\r\nContent-Type: "
        + sent.content_type.encode()
        + b'; x-note="caf\xe9"\r\n'
    )

    answer = await raw_post(ch, head, sent.body)

    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"Fault" in answer and b"EBMS:0007" in answer
    assert b"Content-Type header has bytes that are not ASCII" in answer and b"caf\\xe9" in answer
    assert await ch.runner.app[NODE].store.find_all(Direction.INBOUND, "latin1@be-famhp.test") == []


async def test_a_submitted_attachment_whose_content_type_is_not_ascii_is_a_bad_submission(
    harness: Harness,
) -> None:
    be = await harness.start("BE-FAMHP")
    body = (
        b'--B\r\nContent-Disposition: form-data; name="document"; filename="ia.xml"\r\n'
        b"Content-Type: application/xml\r\n\r\n" + example(IA, today=harness.clock.now()) + b"\r\n--B\r\n"
        b'Content-Disposition: form-data; name="attachment"; filename="scan.pdf"\r\n'
        b"Content-Type: application/pdf; charset=caf\xe9\r\n\r\n%PDF-1.4 x\r\n--B--\r\n"
    )
    head = b"POST /api/v1/documents HTTP/1.1\r\nHost: be\r\nContent-Type: multipart/form-data; boundary=B\r\n"

    answer = await raw_post(be, head, body)

    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"bad submission" in answer and b"not ASCII" in answer and b"scan.pdf" in answer


# --- 3. uploads at once, and how long one may take --------------------------------------------------------

CHUNKED = b"POST /as4 HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"


def spooled(harness: Harness) -> int:
    return len(list((harness.tmp / "data").rglob(".incoming-*")))


async def test_uploads_over_max_concurrent_requests_get_503_before_their_body_is_read(harness: Harness) -> None:
    inbound = InboundSettings(max_concurrent_requests=2, read_timeout_seconds=30)
    ch = await harness.start("CH-SWISSMEDIC", inbound=inbound)
    port = int(ch.url.rsplit(":", 1)[1])
    open_uploads = []
    for _ in range(2):  # two uploads in progress, each spooling
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(CHUNKED + b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        await writer.drain()
        open_uploads.append(writer)
    for _ in range(50):
        if spooled(harness) == 2:
            break
        await asyncio.sleep(0.05)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(CHUNKED + b"10\r\n" + b"y" * 16 + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        answer += await asyncio.wait_for(reader.read(300), 10)
        writer.close()
    finally:
        for upload in open_uploads:
            upload.transport.abort()

    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"Retry-After: 10" in answer and b"[inbound].max_concurrent_requests" in answer
    for _ in range(50):  # the two aborted uploads leave nothing behind, and the places are free again
        if spooled(harness) == 0:
            break
        await asyncio.sleep(0.05)
    assert spooled(harness) == 0
    assert (await raw_post(ch, b"POST /as4 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n", b"x")).startswith(
        b"HTTP/1.1 4"
    )


async def test_a_body_that_trickles_past_body_seconds_is_refused_with_408_and_its_spool_file_removed(
    harness: Harness,
) -> None:
    ch = await harness.start("CH-SWISSMEDIC", inbound=InboundSettings(read_timeout_seconds=5, body_seconds=1.5))
    port = int(ch.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(CHUNKED)

    async def trickle() -> None:
        for _ in range(100):  # a byte every 0.2 s: never a pause of read_timeout_seconds
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)

    trickling = asyncio.create_task(trickle())
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
        answer = await asyncio.wait_for(reader.read(2000), 5)
    finally:
        trickling.cancel()
        writer.transport.abort()

    assert status.startswith(b"HTTP/1.1 408"), status
    assert b"[inbound].body_seconds" in answer
    assert spooled(harness) == 0


# --- 4. the answer to our receipt for a pulled message ---------------------------------------------------


async def test_a_partner_answer_to_our_receipt_over_the_signal_limit_fails_without_being_held() -> None:
    sent_bytes = []

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        block = b"x" * (1 << 20)
        try:
            for _ in range(4 * MAX_SIGNAL_BYTES // len(block) + 1):
                await response.write(block)
                sent_bytes.append(len(block))
        except (ConnectionError, RuntimeError):
            pass  # our side stopped reading: the point
        return response

    app = web.Application()
    app.router.add_post("/as4", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            puller = Puller(
                receiver=cast(Any, None),
                payloads=cast(Any, None),
                max_message_bytes=1 << 30,
                partners=cast(Any, None),
                identity=cast(Any, None),
                keys=cast(Any, None),
                clock=cast(Any, None),
                session=session,
                http_timeout=30,
                on_accepted=lambda: None,
            )
            partner = SimpleNamespace(
                profile=SimpleNamespace(endpoint_url=f"http://127.0.0.1:{port}/as4", tls=Tls())
            )
            receipt = Outgoing(message_id="r@x", content_type="application/soap+xml", body=b"<receipt/>")
            with pytest.raises(PullFailed, match=f"over {MAX_SIGNAL_BYTES} bytes, the largest signal"):
                await puller._post(cast(Any, partner), receipt)
    finally:
        await runner.cleanup()


# --- 5. an unknown sender learns nothing of our partners ---------------------------------------------------


async def test_an_unknown_party_id_is_not_told_the_known_ones(
    harness: Harness, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    user_message = permit_user_message(
        harness, "probe@evil.test", from_party=Party(party_ids=(PartyId(value="NOBODY"),), role=ROLE_INITIATOR)
    )
    sent = build_user_message(
        user_message,
        [Payload(content_id="p@x", mime_type="application/xml", data=b"<a/>")],
        sender=make_key_pair("MALLORY"),
        recipient_certificate=harness.keys("CH-SWISSMEDIC").certificate,
    )

    async with session.post(f"{ch.url}/as4", data=sent.body, headers={"Content-Type": sent.content_type}) as r:
        body = await r.read()

    assert (
        b"no partner profile with PartyId &apos;NOBODY&apos;" in body
        or b"no partner profile with PartyId 'NOBODY'" in body
    )
    assert b"known PartyIds" not in body and b"BE-FAMHP" not in body
    assert b"administrator" in body
    assert "BE-FAMHP, CH-SWISSMEDIC" in capsys.readouterr().out  # the operator still sees them, in the log
