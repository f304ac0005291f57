"""One-Way/Pull in the sans-IO core: routing signals, authorizing PullRequests by signer, EBMS:0006."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.as4 import (
    DEFAULT_MPC,
    EbmsCode,
    EbmsError,
    KeyPair,
    PullRequest,
    build_empty_mpc,
    build_error_signal,
    build_pull_request,
    build_receipt,
    is_empty_mpc,
    mime,
    parse_incoming,
    parse_pull,
    parse_pull_answer,
    peek_signal,
)
from gateway.as4._ns import EB, S12, q
from gateway.as4.envelope import new_draft, parse_envelope
from gateway.as4.header import HEADER_XSD, add_pull_request
from gateway.as4.pull import MAX_SIGNAL_BYTES
from gateway.xmlsafe import load_schema, parse_xml
from tests.as4.helpers import build, policy_of
from tests.conftest import NOW

MPC = "urn:permits:mpc:ch"


def pull_request(key: KeyPair, mpc: str = MPC, message_id: str = "pull-1@ch.test") -> tuple[str, bytes]:
    out = build_pull_request(PullRequest(message_id=message_id, timestamp=NOW, mpc=mpc), key=key)
    return out.content_type, out.body


def test_a_signed_pull_is_attributed_to_the_partner_whose_profile_trusts_the_signer(
    alice: KeyPair, bob: KeyPair, mallory: KeyPair
) -> None:
    # alice and mallory pull on one MPC: the signature, not the MPC, says whose messages a pull gets
    candidates = {"alice-authority": policy_of(alice), "mallory-authority": policy_of(mallory)}
    for key, expected in ((alice, "alice-authority"), (mallory, "mallory-authority")):
        partner, pull = parse_pull(*pull_request(key), candidates=candidates, now=NOW)
        assert partner == expected and pull.mpc == MPC and pull.message_id == "pull-1@ch.test"
        assert pull.signer_certificate_sha256 and len(pull.references) == 2


def test_the_default_mpc_travels_as_no_attribute(alice: KeyPair) -> None:
    content_type, body = pull_request(alice, mpc=DEFAULT_MPC)
    assert b"mpc=" not in body
    _, pull = parse_pull(content_type, body, candidates={"a": policy_of(alice)}, now=NOW)
    assert pull.mpc == DEFAULT_MPC


@pytest.mark.parametrize(
    ("candidates", "code", "detail"),
    [
        (
            "stranger",
            EbmsCode.FAILED_AUTHENTICATION,
            "which no profile of a pulling partner (transport: pull) trusts",
        ),
        ("none", EbmsCode.PROCESSING_MODE_MISMATCH, "this endpoint serves no pull P-Mode"),
        ("twice", EbmsCode.PROCESSING_MODE_MISMATCH, "a pull must identify exactly one partner"),
    ],
)
def test_a_pull_no_single_partner_signed_is_refused(
    alice: KeyPair, bob: KeyPair, candidates: str, code: EbmsCode, detail: str
) -> None:
    policies = {
        "stranger": {"bob-authority": policy_of(bob)},
        "none": {},
        "twice": {"one": policy_of(alice), "two": policy_of(alice, bob)},
    }[candidates]
    with pytest.raises(EbmsError) as caught:
        parse_pull(*pull_request(alice), candidates=policies, now=NOW)
    assert caught.value.code is code and detail in caught.value.detail
    assert caught.value.ref_to_message_id == "pull-1@ch.test"


def test_an_unsigned_pull_is_refused(alice: KeyPair) -> None:
    draft = new_draft()
    add_pull_request(draft.messaging, PullRequest(message_id="pull-2@ch.test", timestamp=NOW, mpc=MPC))
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type="application/soap+xml")
    with pytest.raises(EbmsError) as caught:
        parse_pull(content_type, body, candidates={"a": policy_of(alice)}, now=NOW)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "serves signed PullRequests only" in caught.value.detail


def test_a_soap12_pull_sent_as_text_xml_is_ebms_0007(alice: KeyPair) -> None:
    content_type, body = pull_request(alice)
    with pytest.raises(EbmsError) as caught:
        parse_pull(
            content_type.replace("application/soap+xml", "text/xml"),
            body,
            candidates={"a": policy_of(alice)},
            now=NOW,
        )
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert "the envelope is SOAP 1.2 but is sent as text/xml" in caught.value.detail


def test_a_tampered_pull_fails_its_signature(alice: KeyPair) -> None:
    content_type, body = pull_request(alice)
    forged = body.replace(MPC.encode(), b"urn:permits:mpc:xx")
    with pytest.raises(EbmsError) as caught:
        parse_pull(content_type, forged, candidates={"a": policy_of(alice)}, now=NOW)
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION


def test_a_stale_pull_is_refused_for_its_age(alice: KeyPair) -> None:
    policy = policy_of(alice, max_age=timedelta(hours=1))
    with pytest.raises(EbmsError) as caught:
        parse_pull(*pull_request(alice), candidates={"a": policy}, now=NOW + timedelta(hours=2))
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT and "older than" in caught.value.detail


def test_empty_mpc_is_a_signed_warning_with_http_200(alice: KeyPair, bob: KeyPair) -> None:
    sent = build_pull_request(PullRequest(message_id="pull-3@ch.test", timestamp=NOW, mpc=MPC), key=alice)
    _, pull = parse_pull(sent.content_type, sent.body, candidates={"a": policy_of(alice)}, now=NOW)
    answer = build_empty_mpc(pull, key=bob, message_id="e-1@be.test", now=NOW)
    assert answer.http_status == 200
    incoming = parse_envelope(answer.body)
    assert load_schema(HEADER_XSD).validate(incoming.messaging), load_schema(HEADER_XSD).error_log
    assert parse_xml(answer.body).find(f".//{q(S12, 'Fault')}") is None
    error = incoming.unit.find(q(EB, "Error"))
    assert error is not None and error.get("errorCode") == "EBMS:0006" and error.get("severity") == "warning"
    read = parse_pull_answer(answer.content_type, answer.body, sent=sent, policy=policy_of(bob), now=NOW)
    assert read is not None and read.signed and is_empty_mpc(read) and not read.is_failure
    assert read.ref_to_message_id == "pull-3@ch.test"
    assert MPC in (read.errors[0].detail or "")


def test_a_forged_empty_mpc_answer_is_refused(alice: KeyPair, bob: KeyPair, mallory: KeyPair) -> None:
    sent = build_pull_request(PullRequest(message_id="pull-4@ch.test", timestamp=NOW, mpc=MPC), key=alice)
    _, pull = parse_pull(sent.content_type, sent.body, candidates={"a": policy_of(alice)}, now=NOW)
    answer = build_empty_mpc(pull, key=mallory, message_id="e-2@be.test", now=NOW)
    with pytest.raises(EbmsError):
        parse_pull_answer(answer.content_type, answer.body, sent=sent, policy=policy_of(bob), now=NOW)


def test_a_pulled_user_message_goes_to_the_ordinary_receive_path(alice: KeyPair, bob: KeyPair) -> None:
    sent = build_pull_request(PullRequest(message_id="pull-5@ch.test", timestamp=NOW, mpc=MPC), key=bob)
    message = build(alice, bob, NOW)
    assert (
        parse_pull_answer(message.content_type, message.body, sent=sent, policy=policy_of(alice), now=NOW) is None
    )
    received = parse_incoming(
        message.content_type, message.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW
    )
    receipt = build_receipt(received.message_id, received.references, key=bob, message_id="r-1@ch.test", now=NOW)
    with pytest.raises(EbmsError) as caught:
        parse_pull_answer(receipt.content_type, receipt.body, sent=sent, policy=policy_of(alice), now=NOW)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT and "is a Receipt" in caught.value.detail


def test_peek_routes_signals_and_leaves_everything_else_to_the_receiver(alice: KeyPair, bob: KeyPair) -> None:
    message = build(alice, bob, NOW)
    assert peek_signal(message.content_type, message.body) is None
    assert peek_signal("application/soap+xml", b"<not-xml") is None
    assert peek_signal("text/plain", b"hello") is None
    assert peek_signal("application/soap+xml", b" " * (MAX_SIGNAL_BYTES + 1)) is None
    pulled = peek_signal(*pull_request(alice))
    assert pulled is not None and (pulled.kind, pulled.message_id) == ("PullRequest", "pull-1@ch.test")
    received = parse_incoming(
        message.content_type, message.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW
    )
    receipt = build_receipt(received.message_id, received.references, key=bob, message_id="r-2@ch.test", now=NOW)
    peeked = peek_signal(receipt.content_type, receipt.body)
    assert peeked is not None and (peeked.kind, peeked.ref_to_message_id) == ("Receipt", message.message_id)


def test_a_fault_in_answer_to_a_pull_is_an_error_and_anything_else_is_refused(
    alice: KeyPair, bob: KeyPair
) -> None:
    sent = build_pull_request(PullRequest(message_id="pull-6@ch.test", timestamp=NOW, mpc=MPC), key=bob)
    unreadable = EbmsError(EbmsCode.INVALID_HEADER, "broken", envelope_unreadable=True)
    fault = build_error_signal(unreadable, key=alice, message_id="e-3@be.test", now=NOW)
    read = parse_pull_answer(fault.content_type, fault.body, sent=sent, policy=policy_of(alice), now=NOW)
    assert read is not None and not read.signed and read.errors[0].code == "EBMS:0009" and not is_empty_mpc(read)
    with pytest.raises(EbmsError) as caught:
        parse_pull_answer("text/html", b"<html>503</html>", sent=sent, policy=policy_of(alice), now=NOW)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "holds neither a UserMessage nor an ebMS signal" in caught.value.detail


def test_a_receipt_in_answer_to_a_pull_is_refused_even_where_the_peek_does_not_look(
    alice: KeyPair, bob: KeyPair
) -> None:
    """A receipt with an attachment is not peeked into; it used to reach an ``assert`` (AssertionError, or
    nothing at all under ``python -O``). The partner's valid signature does not make it an answer."""
    sent = build_pull_request(PullRequest(message_id="pull-7@ch.test", timestamp=NOW, mpc=MPC), key=bob)
    receipt = build_receipt(sent.message_id, sent.references, key=alice, message_id="r-7@be.test", now=NOW)
    extra = mime.MimePart.of("extra@be.test", "application/octet-stream", b"\x00" * 16)
    content_type, body = mime.build(mime.parse(receipt.content_type, receipt.body).envelope, [extra])
    with pytest.raises(EbmsError) as caught:
        parse_pull_answer(content_type, body, sent=sent, policy=policy_of(alice), now=NOW)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "is a Receipt; expected a UserMessage or an Error signal" in caught.value.detail
