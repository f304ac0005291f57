"""Build -> sign -> encrypt -> package, then parse -> decrypt -> verify, and the receipt back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    KeyPair,
    ReceiptReceived,
    build_error_signal,
    build_receipt,
    parse_incoming,
    parse_response,
)
from tests.as4.helpers import PERMIT, build, policy_of
from tests.conftest import NOW


def test_user_message_round_trip(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    assert out.content_type.startswith("multipart/related")
    assert PERMIT not in out.body  # encrypted, not in clear
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert event.user_message.message_id == "m-1@be-famhp.test"
    assert event.payloads[0].data == PERMIT
    assert event.payloads[0].mime_type == "application/xml"
    assert {r.uri.split(":")[0][:1] for r in event.references} == {"#", "c"}
    assert len(event.references) == 3


def test_receipt_round_trip(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    receipt = build_receipt(event.user_message.message_id, event.references, key=bob, message_id="r-1@ch", now=NOW)
    result = parse_response(receipt.content_type, receipt.body, sent=out, policy=policy_of(bob), now=NOW)
    assert isinstance(result, ReceiptReceived)
    assert result.ref_to_message_id == out.message_id


def test_receipt_with_a_wrong_digest_is_invalid(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    attachment = next(r for r in event.references if r.uri.startswith("cid:"))
    forged = replace(
        attachment,
        xml=attachment.xml.replace(
            attachment.digest_value.encode(), b"AAAA" + attachment.digest_value[4:].encode()
        ),
    )
    refs = [forged if r is attachment else r for r in event.references]
    receipt = build_receipt(out.message_id, refs, key=bob, message_id="r-2@ch", now=NOW)
    with pytest.raises(EbmsError) as caught:
        parse_response(receipt.content_type, receipt.body, sent=out, policy=policy_of(bob), now=NOW)
    assert caught.value.code is EbmsCode.INVALID_RECEIPT
    assert f"digest for {attachment.uri!r}" in caught.value.detail


def test_receipt_for_another_message_is_invalid(alice: KeyPair, bob: KeyPair) -> None:
    first = build(alice, bob, NOW)
    second = build(alice, bob, NOW)
    event = parse_incoming(
        second.content_type, second.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW
    )
    receipt = build_receipt(first.message_id, event.references, key=bob, message_id="r-2@ch", now=NOW)
    with pytest.raises(EbmsError) as caught:
        parse_response(receipt.content_type, receipt.body, sent=first, policy=policy_of(bob), now=NOW)
    assert caught.value.code is EbmsCode.INVALID_RECEIPT
    assert "has no reference for" in caught.value.detail


def test_receipt_signed_by_stranger_is_invalid(alice: KeyPair, bob: KeyPair, mallory: KeyPair) -> None:
    out = build(alice, bob, NOW)
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    receipt = build_receipt(out.message_id, event.references, key=mallory, message_id="r-3@ch", now=NOW)
    with pytest.raises(EbmsError) as caught:
        parse_response(receipt.content_type, receipt.body, sent=out, policy=policy_of(bob), now=NOW)
    assert caught.value.code is EbmsCode.INVALID_RECEIPT
    assert "not among the certificates pinned" in caught.value.detail


def test_error_signal_is_parsed_as_error(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    error = EbmsError(EbmsCode.FAILED_AUTHENTICATION, "bad digest", ref_to_message_id=out.message_id)
    signal = build_error_signal(error, key=bob, message_id="e-1@ch", now=NOW)
    assert signal.http_status == 400
    result = parse_response(signal.content_type, signal.body, sent=out, policy=policy_of(bob), now=NOW)
    assert isinstance(result, ErrorReceived)
    assert result.signed
    assert result.errors[0].code == "EBMS:0101"
    assert result.errors[0].detail == "bad digest"
