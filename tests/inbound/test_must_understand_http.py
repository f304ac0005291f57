"""Over HTTP, on a real gateway: a message with a mustUnderstand header block addressed to us that we do not
process is answered HTTP 500 (SOAP 1.2 Part 2 section 7.5.1.2) with an env:MustUnderstand fault, an
env:NotUnderstood header block naming it, and Switzerland's signed EBMS:0008 about that message, which the
sending side reads as the partner's error signal; nothing of the message is kept."""

from __future__ import annotations

import aiohttp
from lxml import etree

from gateway.as4 import ErrorReceived, Payload, SecurityPolicy, build_user_message, mime, parse_response
from gateway.as4._ns import EB, S12, q
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from gateway.xmlsafe import parse_xml
from tests.e2e.conftest import (  # noqa: F401 - the two-gateway fixtures
    Harness,
    example,
    harness,
    permit_user_message,
    session,
)

IA = "BE-IA-2026-0001.xml"
_NS = {"env": S12, "eb": EB}


async def test_a_must_understand_header_is_answered_500_with_a_must_understand_fault(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    message_id = "must-understand@be-famhp.test"
    sent = build_user_message(
        permit_user_message(harness, message_id),
        [Payload(content_id="p@be", mime_type="application/xml", data=example(IA, today=harness.clock.now()))],
        sender=harness.keys("BE-FAMHP"),
        recipient_certificate=harness.keys("CH-SWISSMEDIC").certificate,
    )
    package = mime.parse(sent.content_type, sent.body)
    root = parse_xml(package.envelope)
    header = root.find(q(S12, "Header"))
    assert header is not None
    etree.SubElement(header, "{urn:x}Routing", {q(S12, "mustUnderstand"): "true"}, nsmap={"x": "urn:x"})
    content_type, body = mime.build(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"), list(package.attachments.values())
    )

    async with session.post(f"{ch.url}/as4", data=body, headers={"Content-Type": content_type}) as response:
        status, answer_type, answer = response.status, response.headers["Content-Type"], await response.read()

    assert status == 500
    envelope = parse_xml(mime.parse(answer_type, answer).envelope)
    assert envelope.findtext("env:Body/env:Fault/env:Code/env:Value", namespaces=_NS) == "env:MustUnderstand"
    (not_understood,) = envelope.findall("env:Header/env:NotUnderstood", _NS)
    prefix, _, local = not_understood.get("qname", "").partition(":")
    assert (not_understood.nsmap[prefix], local) == ("urn:x", "Routing")
    policy = SecurityPolicy(signing_certificates=(harness.keys("CH-SWISSMEDIC").certificate,))
    received = parse_response(answer_type, answer, sent=sent, policy=policy, now=harness.clock.now())
    assert isinstance(received, ErrorReceived) and received.signed
    assert received.ref_to_message_id == message_id
    assert [(e.code, e.ref_to_message_in_error) for e in received.errors] == [("EBMS:0008", message_id)]
    assert await ch.runner.app[NODE].store.find_all(Direction.INBOUND, message_id) == []
