"""Two real gateways on loopback exchange permits under the eDelivery AS4 2.0 suites (EXPERIMENTAL), and refuse
a message whose suite is not the one agreed with its sender."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.as4 import (
    EbmsCode,
    ErrorReceived,
    Payload,
    SecurityPolicy,
    Suite,
    UserMessage,
    build_user_message,
    parse_response,
)
from gateway.as4.algorithms import KeyAgreement, KeyTransport, KeyWrap, SignatureMethod
from gateway.interfaces.demo import exchange, message
from gateway.interfaces.keys import NODE
from gateway.metrics import REGISTRY
from gateway.outbound.ping import Stage, ping
from gateway.store import Direction
from tests.e2e.conftest import Harness, example, permit_user_message

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"
WIRE = {
    Suite.EDELIVERY_2_0: (SignatureMethod.ED25519, KeyAgreement.X25519),
    Suite.EDELIVERY_2_0_ECC: (SignatureMethod.ECDSA_SHA256, KeyAgreement.ECDH_ES),
}


@pytest.mark.parametrize("suite", [Suite.EDELIVERY_2_0, Suite.EDELIVERY_2_0_ECC], ids=lambda s: s.value)
async def test_permits_cross_both_ways_under_the_2_0_suite_with_verified_receipts(
    harness: Harness, session: aiohttp.ClientSession, suite: Suite
) -> None:
    harness.use_suites({BE: suite, CH: suite})
    be = await harness.start(BE)
    ch = await harness.start(CH)
    first = await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    second = await exchange(session, ch, be, example(EA, today=harness.clock.now()), EA)

    signature, agreement = WIRE[suite]
    for sender, receiver, sent in ((be, ch, first), (ch, be, second)):
        acknowledged = await message(session, sender, sent.message_id)
        assert acknowledged is not None and acknowledged["state"] == "ACKNOWLEDGED"
        assert [e["kind"] for e in acknowledged["events"]] == ["submitted", "receipt_ok"]
        sender_node, receiver_node = sender.runner.app[NODE], receiver.runner.app[NODE]
        outbound = await sender_node.store.find(Direction.OUTBOUND, sent.message_id)
        assert outbound is not None and outbound.wire_sha256 is not None
        wire = sender_node.payloads.get(outbound.wire_sha256)
        for uri in (signature, agreement, KeyWrap.KW_AES128):
            assert uri.value.encode() in wire
        assert KeyTransport.RSA_OAEP.value.encode() not in wire
        evidence = await sender_node.store.get_evidence(outbound.id, "receipt")
        assert evidence is not None and signature.value.encode() in evidence[1]
        party = "BE-FAMHP" if sender is be else "CH-SWISSMEDIC"
        assert await receiver_node.store.find(Direction.INBOUND, sent.message_id, party) is not None


@pytest.mark.parametrize("suite", [Suite.EDELIVERY_2_0, Suite.EDELIVERY_2_0_ECC], ids=lambda s: s.value)
async def test_ping_under_the_2_0_suite_gets_a_verified_receipt(
    harness: Harness, session: aiohttp.ClientSession, suite: Suite
) -> None:
    harness.use_suites({BE: suite, CH: suite})
    be = await harness.start(BE)
    await harness.start(CH)
    node = be.runner.app[NODE]
    result = await ping(
        node.partners.get("ch-swissmedic"),
        identity=node.settings.identity,
        keys=node.keys,
        session=session,
        clock=harness.clock,
    )
    assert result.stage is Stage.RECEIPT_OK, result.detail


def _permit_message(harness: Harness, message_id: str) -> UserMessage:
    return permit_user_message(harness, message_id, conversation_id="c-suite")


def _refusals() -> float:
    return REGISTRY.get_sample_value("permit_gateway_ebms_errors_sent_total", {"code": "EBMS:0103"}) or 0.0


@pytest.mark.parametrize(
    ("sent_suite", "agreed_suite", "received_uri", "expected_uri"),
    [
        (Suite.EDELIVERY_2_0, Suite.EDELIVERY_1_15, KeyWrap.KW_AES128, KeyTransport.RSA_OAEP),
        (Suite.EDELIVERY_1_15, Suite.EDELIVERY_2_0, KeyTransport.RSA_OAEP, KeyWrap.KW_AES128),
        (Suite.EDELIVERY_2_0_ECC, Suite.EDELIVERY_2_0, KeyAgreement.ECDH_ES, KeyAgreement.X25519),
    ],
    ids=["2.0-to-a-1.15-partner", "1.15-to-a-2.0-partner", "ecc-to-a-2.0-partner"],
)
async def test_a_message_in_another_suite_than_agreed_is_refused_with_ebms_0103(
    harness: Harness,
    session: aiohttp.ClientSession,
    sent_suite: Suite,
    agreed_suite: Suite,
    received_uri: str,
    expected_uri: str,
) -> None:
    """The receiver's profile of the sender names ``agreed_suite``; the sender uses ``sent_suite`` (fail closed)."""
    harness.use_suites({BE: agreed_suite, CH: sent_suite})
    ch = await harness.start(CH)
    user_message = _permit_message(harness, f"suite-{sent_suite.value}@be.test")
    ch_keys = harness.keys(CH, sent_suite)
    sent = build_user_message(
        user_message,
        [Payload(content_id="permit@be.test", mime_type="application/xml", data=b"<ImportAuthorization/>")],
        sender=harness.keys(BE, sent_suite),
        recipient_certificate=ch_keys.encryption_certificate,
        suite=sent_suite,
    )
    refused_before = _refusals()
    async with session.post(
        f"{ch.url}/as4", data=sent.body, headers={"Content-Type": sent.content_type}
    ) as response:
        status, content_type, body = response.status, response.headers["Content-Type"], await response.read()

    # CH answers with its key of the suite it agreed with BE, and BE (which agreed the same) verifies it.
    policy = SecurityPolicy.for_suite(
        agreed_suite, signing_certificates=(harness.keys(CH, agreed_suite).certificate,)
    )
    answer = parse_response(content_type, body, sent=sent, policy=policy, now=harness.clock.now())
    assert status == 400
    assert isinstance(answer, ErrorReceived) and answer.signed
    error = answer.errors[0]
    assert error.code == EbmsCode.POLICY_NONCOMPLIANCE.code
    assert error.ref_to_message_in_error == user_message.message_id
    assert error.detail is not None
    assert received_uri in error.detail and expected_uri in error.detail and agreed_suite.value in error.detail
    assert _refusals() == refused_before + 1
    assert await ch.runner.app[NODE].store.find(Direction.INBOUND, user_message.message_id, BE) is None


async def test_a_sender_whose_profile_of_us_names_another_suite_gets_no_receipt(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Both real gateways: BE sends under 2.0 (its profile of CH), CH expects 1.15 (its profile of BE)."""
    harness.use_suites({BE: Suite.EDELIVERY_1_15, CH: Suite.EDELIVERY_2_0})
    be = await harness.start(BE)
    ch = await harness.start(CH)
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]
    be_node = be.runner.app[NODE]
    for _ in range(400):
        record = await be_node.store.find(Direction.OUTBOUND, message_id)
        if record is not None and record.attempts >= 1 and record.last_error:
            break
        await asyncio.sleep(0.05)
    assert record is not None and record.state.value == "RETRY_WAIT"
    # CH refused with EBMS:0103 and signed its error under 1.15 (its profile of BE); BE, expecting CH to sign
    # under 2.0, cannot trust that signal either, and its reason names both suites' algorithms.
    reason = record.last_error or ""
    assert "EBMS:0103" in reason and SignatureMethod.RSA_SHA256.value in reason
    assert SignatureMethod.ED25519.value in reason and "edelivery-as4-2.0" in reason
    assert await ch.runner.app[NODE].store.find(Direction.INBOUND, message_id, BE) is None
