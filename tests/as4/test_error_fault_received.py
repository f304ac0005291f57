"""The SOAP Fault Code of an error signal we receive, read from its Body (under the signature of a signed one):
Receiver (SOAP 1.1: Server) says the problem is on the partner's side and may go away, so the sending side may
retry a final code (``gateway.outbound.dispatch``); Sender (SOAP 1.1: Client) says the message itself is wrong."""

from __future__ import annotations

import pytest

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    KeyPair,
    Outgoing,
    SoapVersion,
    build_error_signal,
    mime,
    parse_response,
)
from gateway.as4.errors import Fault
from tests.as4.helpers import build, policy_of
from tests.conftest import NOW


def _answer(fault: Fault, bob: KeyPair | None, soap_version: SoapVersion, *, unreadable: bool = False) -> Outgoing:
    error = EbmsError(
        EbmsCode.FAILED_DECRYPTION,
        "no private key for the certificate",
        fault=fault,
        envelope_unreadable=unreadable,
    )
    return build_error_signal(error, key=bob, message_id="e-1@ch.test", now=NOW, soap_version=soap_version)


@pytest.mark.parametrize(
    ("fault", "soap_version", "wire"),
    [
        ("Receiver", SoapVersion.SOAP12, b">env:Receiver<"),
        ("Sender", SoapVersion.SOAP12, b">env:Sender<"),
        ("Receiver", SoapVersion.SOAP11, b">env:Server<"),
        ("Sender", SoapVersion.SOAP11, b">env:Client<"),
    ],
    ids=["soap12-receiver", "soap12-sender", "soap11-server", "soap11-client"],
)
def test_a_signed_error_signal_carries_the_fault_code_of_its_body(
    alice: KeyPair, bob: KeyPair, fault: Fault, soap_version: SoapVersion, wire: bytes
) -> None:
    sent = build(alice, bob, NOW)
    answer = _answer(fault, bob, soap_version)
    assert wire in mime.parse(answer.content_type, answer.body).envelope

    policy = policy_of(bob, accept_soap11=True)
    received = parse_response(answer.content_type, answer.body, sent=sent, policy=policy, now=NOW)

    assert isinstance(received, ErrorReceived) and received.signed
    assert received.fault == fault and received.receiver_fault is (fault == "Receiver")
    assert [e.code for e in received.errors] == ["EBMS:0102"]


def test_the_fault_code_of_a_signed_error_is_under_its_signature(alice: KeyPair, bob: KeyPair) -> None:
    """A Sender fault turned into a Receiver one on the way (to have a final error retried) is not verified."""
    sent = build(alice, bob, NOW)
    answer = _answer("Sender", bob, SoapVersion.SOAP12)
    body = answer.body.replace(b">env:Sender<", b">env:Receiver<")
    assert body != answer.body

    with pytest.raises(EbmsError) as caught:
        parse_response(answer.content_type, body, sent=sent, policy=policy_of(bob), now=NOW)
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION and "changed after signing" in caught.value.detail


def test_a_bare_soap_fault_keeps_its_code_and_stays_unsigned(alice: KeyPair, bob: KeyPair) -> None:
    sent = build(alice, bob, NOW)
    answer = _answer("Receiver", None, SoapVersion.SOAP12, unreadable=True)

    received = parse_response(answer.content_type, answer.body, sent=sent, policy=policy_of(bob), now=NOW)

    assert isinstance(received, ErrorReceived) and not received.signed and received.fault == "Receiver"


def test_a_fault_code_outside_the_soap_namespace_is_no_fault_code(alice: KeyPair, bob: KeyPair) -> None:
    """``x:Receiver`` in another namespace is an application's code, not SOAP's (SOAP 1.2 Part 1 section 5.4.6
    allows only its own five as Code/Value)."""
    sent = build(alice, bob, NOW)
    answer = _answer("Receiver", None, SoapVersion.SOAP12, unreadable=True)
    envelope = mime.parse(answer.content_type, answer.body).envelope
    code = b"<env:Value>env:Receiver</env:Value>"
    assert code in envelope
    envelope = envelope.replace(code, b'<env:Value xmlns:x="urn:x">x:Receiver</env:Value>')

    received = parse_response("application/soap+xml", envelope, sent=sent, policy=policy_of(bob), now=NOW)

    assert isinstance(received, ErrorReceived) and received.fault is None
