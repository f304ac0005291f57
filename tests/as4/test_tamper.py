"""A changed byte or a moved element must be refused with the code that names the failure, never delivered."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.as4 import EbmsCode, EbmsError, KeyPair, UserMessageReceived, build_user_message, parse_incoming
from tests.as4.helpers import build, permit, policy_of, user_message
from tests.conftest import NOW, make_key_pair


def _parse(body: bytes, content_type: str, sender: KeyPair, recipient: KeyPair) -> UserMessageReceived:
    return parse_incoming(content_type, body, policy_for=lambda um: policy_of(sender), keys=[recipient], now=NOW)


def _refused(body: bytes, content_type: str, sender: KeyPair, recipient: KeyPair) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        _parse(body, content_type, sender, recipient)
    return caught.value


def test_one_byte_of_the_attachment_changed(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    cut = out.body.rindex(b"\r\n--MIMEBoundary") - 10
    body = out.body[:cut] + bytes([out.body[cut] ^ 0x01]) + out.body[cut + 1 :]
    error = _refused(body, out.content_type, alice, bob)
    assert error.code is EbmsCode.FAILED_DECRYPTION
    assert error.ref_to_message_id == out.message_id


def test_action_edited_after_signing(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    body = out.body.replace(b">ImportAuthorization</eb:Action>", b">ExportAuthorization</eb:Action>")
    assert body != out.body
    error = _refused(body, out.content_type, alice, bob)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "changed after signing" in error.detail


def test_unsigned_message_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    start = out.body.index(b"<ds:Signature")
    end = out.body.index(b"</ds:Signature>") + len(b"</ds:Signature>")
    error = _refused(out.body[:start] + out.body[end:], out.content_type, alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "not signed" in error.detail


def test_signed_by_a_certificate_not_pinned(alice: KeyPair, bob: KeyPair, mallory: KeyPair) -> None:
    out = build(mallory, bob, NOW)
    error = _refused(out.body, out.content_type, alice, bob)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "not among the certificates pinned" in error.detail


def test_encrypted_for_someone_else(alice: KeyPair, bob: KeyPair, mallory: KeyPair) -> None:
    out = build(alice, mallory, NOW)
    error = _refused(out.body, out.content_type, alice, bob)
    assert error.code is EbmsCode.FAILED_DECRYPTION


def test_expired_signing_certificate(bob: KeyPair) -> None:
    old = make_key_pair("BE-OLD", not_before=NOW - timedelta(days=400), days=30)
    out = build(old, bob, NOW)
    error = _refused(out.body, out.content_type, old, bob)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "is valid from" in error.detail


def test_duplicate_ids_are_refused(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    messaging_id = out.body.split(b'wsu:Id="', 1)[1].split(b'"', 1)[0]
    body = out.body.replace(b"<env:Body ", b'<env:Body Id="' + messaging_id + b'" ', 1)
    error = _refused(body, out.content_type, alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "more than one element" in error.detail


def test_doctype_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    body = out.body.replace(
        b"<?xml version='1.0' encoding='UTF-8'?>",
        b"<?xml version='1.0' encoding='UTF-8'?><!DOCTYPE x [<!ENTITY a 'b'>]>",
        1,
    )
    assert body != out.body
    error = _refused(body, out.content_type, alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER
    assert "DOCTYPE" in error.detail


def test_timestamp_far_in_the_future(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW + timedelta(hours=1))
    error = _refused(out.body, out.content_type, alice, bob)
    assert error.code is EbmsCode.VALUE_INCONSISTENT


def test_a_comment_inside_a_signed_value_does_not_change_what_is_read(alice: KeyPair, bob: KeyPair) -> None:
    """Canonicalization drops comments, so one inserted in a signed header value leaves the signature valid;
    the value must then be read whole (as signed), not cut at the comment: a new MessageId per replay would
    pass the duplicate check, a cut Action would name another document type."""
    message = user_message(NOW, action="PreExportNotificationResponse")
    out = build_user_message(message, [permit()], sender=alice, recipient_certificate=bob.certificate)
    body = out.body.replace(b"@be-famhp.test</eb:MessageId>", b"@be<!-- -->-famhp.test</eb:MessageId>", 1)
    body = body.replace(b">PreExportNotificationResponse<", b">PreExportNotification<!---->Response<", 1)
    assert body.count(b"<!--") == 2

    received = _parse(body, out.content_type, alice, bob)

    assert received.user_message.message_id == out.message_id
    assert received.user_message.action == "PreExportNotificationResponse"


def test_a_processing_instruction_inside_the_header_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    body = out.body.replace(b"@be-famhp.test</eb:MessageId>", b"@be<?x?>-famhp.test</eb:MessageId>", 1)
    assert body != out.body
    error = _refused(body, out.content_type, alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER
    assert "processing instruction" in error.detail
