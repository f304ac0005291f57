"""A partner profile's ``max_payload_bytes`` holds both ways: on submission and on receive."""

from __future__ import annotations

import aiohttp

from gateway.as4.envelope import MAX_ENVELOPE_BYTES
from gateway.interfaces.demo import message, wait_for
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"


def limit(harness: Harness, profile_id: str, max_payload_bytes: int) -> None:
    path = harness.tmp / "profiles" / f"{profile_id}.yaml"
    path.write_text(path.read_text() + f"max_payload_bytes: {max_payload_bytes}\n")


async def test_a_document_larger_than_the_partner_accepts_is_refused_at_submission(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    limit(harness, "ch-swissmedic", 1000)
    be = await harness.start("BE-FAMHP")
    document = example(IA, today=harness.clock.now())

    async with session.post(f"{be.url}/api/v1/documents", data=document) as response:
        assert response.status == 409
        detail = (await response.json())["detail"]

    assert detail == (
        f"ImportAuthorization BE-IA-2026-0001 is {len(document)} bytes; partner 'ch-swissmedic' accepts payloads up "
        "to 1000 bytes (max_payload_bytes in its profile)"
    )


async def test_a_message_larger_than_the_senders_profile_allows_is_refused_with_an_ebms_error(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    limit(harness, "be-famhp", 1000)  # what CH accepts from BE; BE's view of CH has the default
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    document = example(IA, today=harness.clock.now())

    async with session.post(f"{be.url}/api/v1/documents", data=document) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]

    failed = await wait_for(session, be, message_id, "FAILED")
    assert "EBMS:0010" in failed["last_error"]
    assert "the partner profile allows at most 1000 bytes per payload (max_payload_bytes)" in failed["last_error"]
    assert failed["attempts"] == 1
    assert await message(session, ch, message_id) is None


async def test_a_large_body_that_is_not_mime_is_refused_from_its_size_naming_the_fix(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Payloads travel as MIME parts; a plain SOAP body over the envelope limit (spooled to disk as it came)
    is refused from its size, before it is joined into one buffer of up to [inbound].max_message_bytes."""
    ch = await harness.start("CH-SWISSMEDIC")
    body = b"<env:Envelope>" + b" " * (2 * MAX_ENVELOPE_BYTES) + b"</env:Envelope>"
    headers = {"Content-Type": "application/soap+xml"}
    async with session.post(f"{ch.url}/as4", data=body, headers=headers) as response:
        answer = await response.text()
    assert response.status == 400 and "EBMS:0009" in answer
    assert f"is {len(body)} bytes, over the limit of {MAX_ENVELOPE_BYTES} bytes; send payloads as MIME" in answer
