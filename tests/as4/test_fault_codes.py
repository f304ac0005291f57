"""Who is at fault, as the SOAP Fault of an error signal says it, and the HTTP status that follows.

A mustUnderstand header block addressed to us that we do not process is an env:MustUnderstand fault (SOAP 1.2
Part 1 section 2.6) with one env:NotUnderstood header block per such block (section 5.4.8), HTTP 500 (Part 2
section 7.5.1.2), the signed EBMS:0008 inside naming the message when its MessageId can be read. An error that
is ours to fix (our decryption key missing) is env:Receiver, HTTP 500, so the sender may send the same message
again; bad input stays env:Sender, HTTP 400."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from lxml import etree

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    KeyPair,
    Outgoing,
    build_error_signal,
    build_user_message,
    mime,
    parse_incoming,
    parse_response,
    signals,
)
from gateway.as4._ns import EB, S11, S12, SoapVersion, q
from gateway.xmlsafe import parse_xml
from tests.as4.helpers import build, permit, policy_of, user_message
from tests.conftest import NOW

_NS = {"env": S12, "eb": EB}
ROUTING = "{urn:x}Routing"


def _with_header_blocks(
    out: Outgoing,
    names: Sequence[str],
    *,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    message_id: str | None = None,
    timestamp: str | None = None,
) -> tuple[str, bytes]:
    """``out`` with header blocks marked mustUnderstand (for the next node: us) added to its SOAP Header, and
    optionally its MessageId or Timestamp text replaced; the signature is left as it is."""
    package = mime.parse(out.content_type, out.body)
    root = parse_xml(package.envelope)
    soap_ns = soap_version.value
    header = root.find(q(soap_ns, "Header"))
    assert header is not None
    flag = "true" if soap_version is SoapVersion.SOAP12 else "1"
    for name in names:
        etree.SubElement(header, name, {q(soap_ns, "mustUnderstand"): flag}, nsmap={"x": "urn:x"})
    info = header.find(f"{q(EB, 'Messaging')}/*/{q(EB, 'MessageInfo')}")
    assert info is not None
    if message_id is not None:
        info.find(q(EB, "MessageId")).text = message_id  # type: ignore[union-attr]
    if timestamp is not None:
        info.find(q(EB, "Timestamp")).text = timestamp  # type: ignore[union-attr]
    envelope = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return mime.build(
        envelope, list(package.attachments.values()), envelope_content_type=soap_version.content_type
    )


def _refused(content_type: str, body: bytes, sender: KeyPair, recipient: KeyPair, **kw: object) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type, body, policy_for=lambda um: policy_of(sender, **kw), keys=[recipient], now=NOW
        )
    return caught.value


def _envelope(answer: Outgoing) -> etree._Element:
    return parse_xml(mime.parse(answer.content_type, answer.body).envelope)


def _not_understood(root: etree._Element) -> list[str]:
    """The qname of each env:NotUnderstood block in the env:Header, resolved to Clark notation."""
    names = []
    for block in root.findall("env:Header/env:NotUnderstood", _NS):
        prefix, _, local = block.get("qname", "").rpartition(":")
        names.append(f"{{{block.nsmap[prefix]}}}{local}" if prefix else local)
    return names


# --- mustUnderstand ------------------------------------------------------------------------------------------


def test_a_must_understand_header_we_do_not_process_is_a_must_understand_fault(
    alice: KeyPair, bob: KeyPair
) -> None:
    sent = build(alice, bob, NOW)
    error = _refused(*_with_header_blocks(sent, [ROUTING]), alice, bob)
    assert error.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING

    answer = build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW)

    assert answer.http_status == 500
    root = _envelope(answer)
    assert root.findtext("env:Body/env:Fault/env:Code/env:Value", namespaces=_NS) == "env:MustUnderstand"
    assert _not_understood(root) == [ROUTING]
    assert root.findtext(
        "env:Header/eb:Messaging/eb:SignalMessage/eb:MessageInfo/eb:RefToMessageId", namespaces=_NS
    ) == (sent.message_id)
    # the sender reads it as the signed ebMS error it is, naming the header and the fix
    received = parse_response(answer.content_type, answer.body, sent=sent, policy=policy_of(bob), now=NOW)
    assert isinstance(received, ErrorReceived) and received.signed
    assert received.ref_to_message_id == sent.message_id
    (detail,) = received.errors
    assert detail.code == "EBMS:0008" and detail.ref_to_message_in_error == sent.message_id
    assert detail.detail is not None and ROUTING in detail.detail and 'mustUnderstand="false"' in detail.detail
    assert error.not_understood == (ROUTING,)


def test_every_header_block_not_understood_gets_its_not_understood_block(alice: KeyPair, bob: KeyPair) -> None:
    names = [ROUTING, "{urn:y}Trace", "Unqualified"]
    error = _refused(*_with_header_blocks(build(alice, bob, NOW), names), alice, bob)
    assert all(name in error.detail for name in names)

    root = _envelope(build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW))

    assert _not_understood(root) == names


def test_the_message_id_is_left_out_when_it_cannot_be_read(alice: KeyPair, bob: KeyPair) -> None:
    error = _refused(*_with_header_blocks(build(alice, bob, NOW), [ROUTING], message_id="no msg id"), alice, bob)
    assert error.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING and error.ref_to_message_id is None

    answer = build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW)

    assert answer.http_status == 500
    root = _envelope(answer)
    assert root.find(".//eb:RefToMessageId", _NS) is None
    assert root.find(".//eb:Error", _NS).get("refToMessageInError") is None  # type: ignore[union-attr]


def test_a_bad_timestamp_does_not_hide_a_readable_message_id(alice: KeyPair, bob: KeyPair) -> None:
    sent = build(alice, bob, NOW)
    error = _refused(*_with_header_blocks(sent, [ROUTING], timestamp="yesterday"), alice, bob)
    assert error.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING
    assert error.ref_to_message_id == sent.message_id


def test_soap11_must_understand_is_fault_code_must_understand_with_500(alice: KeyPair, bob: KeyPair) -> None:
    sent = build_user_message(
        user_message(NOW),
        [permit()],
        sender=alice,
        recipient_certificate=bob.certificate,
        soap_version=SoapVersion.SOAP11,
    )
    content_type, body = _with_header_blocks(sent, [ROUTING], soap_version=SoapVersion.SOAP11)
    error = _refused(content_type, body, alice, bob, accept_soap11=True)
    assert error.ref_to_message_id == sent.message_id

    answer = build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW, soap_version=SoapVersion.SOAP11)

    assert answer.http_status == 500
    root = _envelope(answer)
    assert root.findtext(f"{q(S11, 'Body')}/{q(S11, 'Fault')}/faultcode") == "env:MustUnderstand"
    assert (
        root.find(f".//{q(S12, 'NotUnderstood')}") is None and root.find(f".//{q(S11, 'NotUnderstood')}") is None
    )
    assert error.not_understood == (ROUTING,)


# --- errors that are ours ------------------------------------------------------------------------------------


def test_our_missing_decryption_key_is_a_receiver_fault(alice: KeyPair, bob: KeyPair) -> None:
    sent = build(alice, bob, NOW)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(sent.content_type, sent.body, policy_for=lambda um: policy_of(alice), keys=[], now=NOW)
    error = caught.value
    assert error.code is EbmsCode.FAILED_DECRYPTION and "holds no" in error.detail

    answer = build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW)

    assert answer.http_status == 500
    root = _envelope(answer)
    assert root.findtext("env:Body/env:Fault/env:Code/env:Value", namespaces=_NS) == "env:Receiver"
    received = parse_response(answer.content_type, answer.body, sent=sent, policy=policy_of(bob), now=NOW)
    assert isinstance(received, ErrorReceived) and received.signed
    assert [e.code for e in received.errors] == ["EBMS:0102"] and received.ref_to_message_id == sent.message_id
    assert error.fault == "Receiver" and signals.fault_of(error) == "Receiver"


def test_bad_input_stays_a_sender_fault(alice: KeyPair, bob: KeyPair) -> None:
    error = EbmsError(EbmsCode.FAILED_DECRYPTION, "the payload failed AES-GCM authentication")
    assert error.fault is None and signals.fault_of(error) == "Sender"
    answer = build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW)
    assert answer.http_status == 400
    assert _envelope(answer).findtext("env:Body/env:Fault/env:Code/env:Value", namespaces=_NS) == "env:Sender"


def test_who_is_at_fault_survives_the_copies_of_an_error() -> None:
    error = EbmsError(EbmsCode.FAILED_DECRYPTION, "no key of ours", fault="Receiver", not_understood=(ROUTING,))
    for copy in (error.with_ref("m-1@be.test"), error.unreadable(), error.with_ref("m-1@be.test").unreadable()):
        assert copy.fault == "Receiver" and copy.not_understood == (ROUTING,)


def test_a_receiver_fault_without_a_readable_envelope_is_500_too() -> None:
    error = EbmsError(EbmsCode.FAILED_DECRYPTION, "no key of ours", fault="Receiver", envelope_unreadable=True)
    answer = build_error_signal(error, key=None, message_id="e-1@ch.test", now=NOW)
    assert answer.http_status == 500
    assert _envelope(answer).findtext("env:Body/env:Fault/env:Code/env:Value", namespaces=_NS) == "env:Receiver"
