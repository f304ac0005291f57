"""A partner sends only the documents its own authority issued, under their own type's Action, to us: anything
else is refused with an ebMS error naming the field, what was found and what was expected."""

from __future__ import annotations

import aiohttp

from gateway.as4 import ErrorReceived, Payload, SecurityPolicy, build_user_message, parse_response
from gateway.interfaces.demo import message
from tests.e2e.conftest import Harness, example, permit_user_message

IA = "BE-IA-2026-0001.xml"


async def _send(
    harness: Harness, session: aiohttp.ClientSession, document: bytes, message_id: str, **changes: str
) -> str:
    """Belgium sends ``document`` to Switzerland; the detail of the ebMS error that comes back."""
    ch = harness.running["CH-SWISSMEDIC"]
    keys, theirs = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC")
    payload = Payload(content_id="permit@test", mime_type="application/xml", data=document)
    sent = build_user_message(
        permit_user_message(harness, message_id, **changes),
        [payload],
        sender=keys,
        recipient_certificate=theirs.certificate,
    )
    headers = {"Content-Type": sent.content_type}
    async with session.post(f"{ch.url}/as4", data=sent.body, headers=headers) as response:
        content_type, body = response.headers["Content-Type"], await response.read()
    policy = SecurityPolicy(signing_certificates=(theirs.certificate,))
    answer = parse_response(content_type, body, sent=sent, policy=policy, now=harness.clock.now())
    assert isinstance(answer, ErrorReceived), answer
    record = await message(session, ch, message_id)
    assert record is not None and record["state"] == "REJECTED"
    return answer.errors[0].detail or ""


async def test_a_document_issued_by_another_country_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    french = (
        ia.replace(b"<CountryCode>BE</CountryCode>", b"<CountryCode>FR</CountryCode>")
        .replace(b"<ImportingCountry>BE</ImportingCountry>", b"<ImportingCountry>FR</ImportingCountry>")
        .replace(b"BE-FAMHP", b"FR-ANSM")
        .replace(b"BE-IA-2026-0001", b"FR-IA-2026-0001")
    )
    detail = await _send(harness, session, french, "fr1@be-famhp.test")
    assert "IN-001" in detail and "issued by FR" in detail and "partner of BE" in detail
    assert "ia:IssuingAuthority/ia:CountryCode" in detail and "Fix:" in detail


async def test_a_document_under_another_types_action_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    detail = await _send(harness, session, ia, "act1@be-famhp.test", action="Acknowledgement")
    assert "IN-002" in detail and "ImportAuthorization but the AS4 Action is Acknowledgement" in detail
    assert "under the Action ImportAuthorization" in detail


async def test_a_document_for_another_country_is_refused(harness: Harness, session: aiohttp.ClientSession) -> None:
    await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    german = ia.replace(b"<ExportingCountry>CH</ExportingCountry>", b"<ExportingCountry>DE</ExportingCountry>")
    german = german.replace(b"<CountryCode>CH</CountryCode>", b"<CountryCode>DE</CountryCode>")
    detail = await _send(harness, session, german, "de1@be-famhp.test")
    assert "IN-003" in detail and "goes to DE (ExportingCountry)" in detail and "authority of CH" in detail
