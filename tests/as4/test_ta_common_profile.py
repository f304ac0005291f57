"""eDelivery AS4 Common Profile test assertions, mirrored offline over a sans-IO ``GatewayPair``.

Named after the EC conformance assertions (AS4-NOTES.md, "Conformance test assertions") so the suite reads
like a report. The assertions that need two internet-reachable access points are mirrored as far as the core
can show them; duplicate elimination itself is the message store's (tests/store, tests/e2e).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib

import pytest

from gateway.as4 import (
    TEST_ACTION,
    TEST_SERVICE,
    EbmsCode,
    ErrorReceived,
    KeyPair,
    PartyId,
    Payload,
    ReceiptReceived,
    UserMessageReceived,
    build_user_message,
    mime,
    parse_incoming,
    parse_response,
)
from gateway.as4.envelope import parse_envelope
from gateway.as4.mime import parse_content_type
from gateway.as4.model import PartInfo, Property, is_message_id
from tests.as4.helpers import PERMIT, GatewayPair, hand_built, permit, policy_of, user_message
from tests.conftest import NOW

DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture
def pair(alice: KeyPair, bob: KeyPair) -> GatewayPair:
    return GatewayPair.of(alice, bob)


def _receipt(answer: object) -> ReceiptReceived:
    assert isinstance(answer, ReceiptReceived), answer
    return answer


def test_TA01_one_way_push_receipt_in_2xx(pair: GatewayPair) -> None:
    sent = build_user_message(
        user_message(NOW), [permit()], sender=pair.a.key, recipient_certificate=pair.b.key.certificate
    )
    response = pair.b.answer(sent.content_type, sent.body, NOW)
    assert 200 <= response.http_status < 300
    receipt = _receipt(
        parse_response(response.content_type, response.body, sent=sent, policy=pair.a.partner_policy, now=NOW)
    )
    assert receipt.ref_to_message_id == sent.message_id
    assert b"NonRepudiationInformation" in receipt.evidence and b"ds:SignatureValue" in receipt.evidence


def test_TA02_two_way_push_and_push_correlates_by_ref_to_message_id(pair: GatewayPair) -> None:
    request, answer = pair.push(user_message(NOW, message_id="req-1@be.test"), [permit()], NOW)
    _receipt(answer)
    incoming = pair.b.received[-1].user_message
    response = dataclasses.replace(
        user_message(NOW, message_id="resp-1@ch.test", ref_to_message_id=incoming.message_id),
        from_party=incoming.to_party,
        to_party=incoming.from_party,
        service=incoming.service,
        action="ExportAuthorization",
        conversation_id=incoming.conversation_id,
    )
    _, back = pair.push(response, [permit(b"<ExportAuthorization/>")], NOW, reverse=True)
    _receipt(back)
    got = pair.a.received[-1].user_message
    assert got.ref_to_message_id == request.message_id
    assert (got.service, got.action, got.conversation_id) == (incoming.service, "ExportAuthorization", "conv-1")
    assert got.from_party == incoming.to_party and got.to_party == incoming.from_party


def test_TA03_single_exchange_between_two_parties(pair: GatewayPair) -> None:
    message = user_message(NOW, agreement_ref="urn:agreements:be-ch", agreement_ref_pmode="be-ch")
    pair.push(message, [permit()], NOW)
    (received,) = pair.b.received
    assert dataclasses.replace(received.user_message, parts=()) == message
    assert pair.a.received == [] and pair.b.refused == []


@pytest.mark.parametrize("character_set", [None, "utf-8"])
def test_TA04_TA23_TA29_TA34_payload_compression_keeps_mime_type(
    pair: GatewayPair, character_set: str | None
) -> None:
    sent, answer = pair.push(user_message(NOW), [permit(character_set=character_set)], NOW)
    _receipt(answer)
    package = mime.parse(sent.content_type, sent.body)
    header = parse_envelope(package.envelope).unit
    props = {p.get("name"): p.text for p in header.iter("{*}Property")}
    assert props["CompressionType"] == "application/gzip" and props["MimeType"] == "application/xml"
    assert props.get("CharacterSet") == character_set
    payload = pair.b.received[-1].payloads[0]
    assert (payload.mime_type, payload.character_set, payload.data) == ("application/xml", character_set, PERMIT)
    assert "CompressionType" not in {p.name for p in payload.properties}  # not passed on to the consumer


def test_TA30_TA31_every_payload_is_compressed_the_header_is_not(pair: GatewayPair) -> None:
    payloads = [permit(), Payload(content_id="annex@be.test", mime_type="text/plain", data=b"annex " * 500)]
    sent, answer = pair.push(user_message(NOW), payloads, NOW)
    _receipt(answer)
    infos = pair.b.received[-1].user_message.parts
    assert [i.get_property("CompressionType") for i in infos] == ["application/gzip"] * 2
    assert b"<eb:Messaging" in sent.body  # the header travels as plain XML
    assert [p.data for p in pair.b.received[-1].payloads] == [PERMIT, b"annex " * 500]


def test_TA05_payload_as_attachment_with_an_empty_body(pair: GatewayPair) -> None:
    sent, answer = pair.push(user_message(NOW), [permit()], NOW)
    _receipt(answer)
    envelope = parse_envelope(mime.parse(sent.content_type, sent.body).envelope)
    assert len(envelope.body) == 0
    assert [p.href for p in pair.b.received[-1].user_message.parts] == ["cid:permit@be-famhp.test"]


def test_TA06_message_without_payload(pair: GatewayPair) -> None:
    _, answer = pair.push(user_message(NOW), [], NOW)
    _receipt(answer)
    assert pair.b.received[-1].payloads == ()


def test_TA08_payload_in_the_soap_body_is_accepted_where_agreed(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(
        NOW, parts=(PartInfo(href=None, properties=(Property(name="MimeType", value="application/xml"),)),)
    )
    content_type, body = hand_built(alice, message, body_children=[b'<p xmlns="urn:p">1</p>'])
    event = parse_incoming(
        content_type, body, policy_for=lambda um: policy_of(alice, require_encryption=False), keys=[bob], now=NOW
    )
    assert event.payloads[0].content_id == "soap-body"


def test_TA07_TA32_TA33_payloads_are_delivered_byte_identical_with_their_ids(pair: GatewayPair) -> None:
    binary = bytes(range(256)) * 64
    payloads = [permit(), Payload(content_id="scan@be.test", mime_type="application/pdf", data=binary)]
    _, answer = pair.push(user_message(NOW), payloads, NOW)
    _receipt(answer)
    got = pair.b.received[-1].payloads
    assert [(p.content_id, p.mime_type, p.data) for p in got] == [
        (p.content_id, p.mime_type, p.data) for p in payloads
    ]


def test_TA09_TA10_a_retry_resends_the_same_bytes_and_gets_a_matching_receipt(pair: GatewayPair) -> None:
    sent = build_user_message(
        user_message(NOW), [permit()], sender=pair.a.key, recipient_certificate=pair.b.key.certificate
    )
    for _attempt in range(2):  # the first receipt "lost", the retry is the identical message
        response = pair.b.answer(sent.content_type, sent.body, NOW)
        receipt = _receipt(
            parse_response(response.content_type, response.body, sent=sent, policy=pair.a.partner_policy, now=NOW)
        )
        assert receipt.ref_to_message_id == sent.message_id
    first, second = pair.b.received
    assert first.references == second.references  # same bytes, same digests: the NRI matches what we signed


def test_TA14_TA15_a_duplicate_carries_what_duplicate_detection_keys_on(pair: GatewayPair) -> None:
    sent = build_user_message(
        user_message(NOW), [permit()], sender=pair.a.key, recipient_certificate=pair.b.key.certificate
    )
    pair.b.answer(sent.content_type, sent.body, NOW)
    pair.b.answer(sent.content_type, sent.body, NOW)
    first, second = pair.b.received

    def key(event: UserMessageReceived) -> tuple[str, PartyId]:
        return event.user_message.message_id, event.user_message.from_party.primary

    assert key(first) == key(second)  # the store's unique key (message id, sender)


def test_TA12_TA13_each_payload_is_signed_and_a_changed_payload_is_refused(pair: GatewayPair) -> None:
    sent = build_user_message(
        user_message(NOW),
        [permit(), permit(b"<second/>", content_id="p2@be.test")],
        sender=pair.a.key,
        recipient_certificate=pair.b.key.certificate,
    )
    uris = {r.uri for r in sent.references}
    assert {"cid:permit@be-famhp.test", "cid:p2@be.test"} <= uris
    cut = sent.body.rindex(b"\r\n--MIMEBoundary") - 20
    tampered = sent.body[:cut] + bytes([sent.body[cut] ^ 1]) + sent.body[cut + 1 :]
    response = pair.b.answer(sent.content_type, tampered, NOW)
    answer = parse_response(response.content_type, response.body, sent=sent, policy=pair.a.partner_policy, now=NOW)
    assert isinstance(answer, ErrorReceived) and answer.signed
    assert answer.errors[0].code in (EbmsCode.FAILED_DECRYPTION.code, EbmsCode.FAILED_AUTHENTICATION.code)


def test_TA16_TA17_test_service_messages_are_receipted_and_marked(pair: GatewayPair) -> None:
    _, answer = pair.push(user_message(NOW, service=TEST_SERVICE, action=TEST_ACTION), [], NOW)
    _receipt(answer)
    assert pair.b.received[-1].user_message.is_test
    assert not user_message(NOW).is_test


def test_TA19_conversation_id_is_kept(pair: GatewayPair) -> None:
    pair.push(user_message(NOW, conversation_id="BE-IA-2026-0001/1"), [permit()], NOW)
    assert pair.b.received[-1].user_message.conversation_id == "BE-IA-2026-0001/1"


def test_TA21_TA22_message_format(pair: GatewayPair) -> None:
    sent, _ = pair.push(user_message(NOW), [permit()], NOW)
    media, params = parse_content_type(sent.content_type)
    assert media == "multipart/related" and params["type"] == "application/soap+xml" and params["start"]
    envelope = parse_envelope(mime.parse(sent.content_type, sent.body).envelope)
    assert envelope.soap_ns == "http://www.w3.org/2003/05/soap-envelope"
    assert envelope.messaging.get("{http://www.w3.org/2003/05/soap-envelope}mustUnderstand") == "true"
    message_id = envelope.unit.findtext(".//{*}MessageId")
    assert message_id is not None and is_message_id(message_id)
    assert (envelope.unit.findtext(".//{*}Timestamp") or "").endswith("Z")


def test_TA35_TA37_message_level_security(pair: GatewayPair) -> None:
    sent, answer = pair.push(user_message(NOW), [permit()], NOW)
    _receipt(answer)
    envelope = parse_envelope(mime.parse(sent.content_type, sent.body).envelope)
    signed_info = envelope.header.find(f".//{DS}SignedInfo")
    assert signed_info is not None
    method = signed_info.find(f"{DS}SignatureMethod")
    assert method is not None and method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert {d.get("Algorithm") for d in signed_info.iter(f"{DS}DigestMethod")} == {
        "http://www.w3.org/2001/04/xmlenc#sha256"
    }
    assert b"#X509v3" in sent.body  # BinarySecurityToken key reference
    unsigned = sent.body.replace(b"ds:Signature", b"ds:Signatur")
    response = pair.b.answer(sent.content_type, unsigned, NOW)
    refused = parse_response(
        response.content_type, response.body, sent=sent, policy=pair.a.partner_policy, now=NOW
    )
    assert isinstance(refused, ErrorReceived)


def test_TA36_payload_encryption(pair: GatewayPair) -> None:
    sent, answer = pair.push(user_message(NOW), [permit()], NOW)
    _receipt(answer)
    assert b"http://www.w3.org/2009/xmlenc11#aes128-gcm" in sent.body
    assert b"http://www.w3.org/2009/xmlenc11#rsa-oaep" in sent.body and b"mgf1sha256" in sent.body
    assert gzip.compress(PERMIT, compresslevel=6, mtime=0) not in sent.body and PERMIT not in sent.body
    assert b"ImportAuthorization</eb:Action>" in sent.body  # eb:Messaging is never encrypted


def test_TA38_compress_then_sign_then_encrypt(pair: GatewayPair) -> None:
    sent, answer = pair.push(user_message(NOW), [permit()], NOW)
    _receipt(answer)
    signed = next(r for r in sent.references if r.uri.startswith("cid:"))
    compressed = gzip.compress(PERMIT, compresslevel=6, mtime=0)
    assert signed.digest_value == base64.b64encode(hashlib.sha256(compressed).digest()).decode()  # signed: gzip
    ciphertext = mime.parse(sent.content_type, sent.body).attachments["permit@be-famhp.test"].data
    assert compressed not in ciphertext  # then encrypted


def test_TA45_payload_order_is_kept(pair: GatewayPair) -> None:
    payloads = [permit(f"<p{i}/>".encode(), content_id=f"p{i}@be.test") for i in (3, 1, 2, 0)]
    sent, answer = pair.push(user_message(NOW), payloads, NOW)
    _receipt(answer)
    assert [p.content_id for p in pair.b.received[-1].payloads] == [
        "p3@be.test",
        "p1@be.test",
        "p2@be.test",
        "p0@be.test",
    ]
    assert list(mime.parse(sent.content_type, sent.body).attachments) == [
        "p3@be.test",
        "p1@be.test",
        "p2@be.test",
        "p0@be.test",
    ]
