"""A partner that speaks SOAP 1.1 (an Axis2-based MSH so configured) gets its refusal in SOAP 1.1: a ``text/xml``
envelope of its own version, with HTTP 500 as the SOAP 1.1 HTTP binding has it for every fault."""

from __future__ import annotations

import aiohttp

from gateway.as4 import (
    EbmsCode,
    ErrorReceived,
    Payload,
    SecurityPolicy,
    SoapVersion,
    build_user_message,
    mime,
    parse_response,
)
from gateway.as4._ns import S11
from tests.e2e.conftest import Harness, permit_user_message

BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"


async def test_a_soap_1_1_message_is_refused_in_soap_1_1(harness: Harness, session: aiohttp.ClientSession) -> None:
    ch = await harness.start(CH)
    sent = build_user_message(
        permit_user_message(harness, "soap11@be.test"),
        [Payload(content_id="permit@be.test", mime_type="application/xml", data=b"<ImportAuthorization/>")],
        sender=harness.keys(BE),
        recipient_certificate=harness.keys(CH).certificate,
        soap_version=SoapVersion.SOAP11,
    )
    async with session.post(
        f"{ch.url}/as4", data=sent.body, headers={"Content-Type": sent.content_type}
    ) as response:
        status, content_type, body = response.status, response.headers["Content-Type"], await response.read()

    assert status == 500
    assert mime.soap_version_of(content_type) is SoapVersion.SOAP11
    assert f'xmlns:env="{S11}"'.encode() in mime.parse(content_type, body).envelope
    policy = SecurityPolicy(signing_certificates=(harness.keys(CH).certificate,), accept_soap11=True)
    answer = parse_response(content_type, body, sent=sent, policy=policy, now=harness.clock.now())
    assert isinstance(answer, ErrorReceived) and answer.signed
    assert answer.errors[0].code == EbmsCode.PROCESSING_MODE_MISMATCH.code
    assert "SOAP 1.1" in (answer.errors[0].detail or "")


def test_the_soap_version_a_request_announces() -> None:
    assert mime.soap_version_of('multipart/related; type="text/xml"; boundary=b') is SoapVersion.SOAP11
    assert mime.soap_version_of("text/xml; charset=utf-8") is SoapVersion.SOAP11
    assert mime.soap_version_of('multipart/related; type="application/soap+xml"') is SoapVersion.SOAP12
    assert mime.soap_version_of("application/soap+xml") is SoapVersion.SOAP12
    assert mime.soap_version_of("garbage") is SoapVersion.SOAP12
