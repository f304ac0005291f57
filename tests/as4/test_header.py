"""The eb:Messaging header: every UserMessage field round-trips, generated headers validate, MessageIds are
RFC 2822 msg-ids on both sides, and signals (PullRequest, Receipt, Error) parse."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from gateway.as4 import (
    DEFAULT_MPC,
    EbmsCode,
    EbmsError,
    KeyPair,
    PartInfo,
    PartSchema,
    Party,
    PartyId,
    Payload,
    Property,
    PullRequest,
    PullRequestReceived,
    UserMessage,
    build_pull_request,
    build_user_message,
    is_message_id,
    message_id_for,
    parse_incoming,
    parse_request,
)
from gateway.as4._ns import EB, q
from gateway.as4.envelope import new_draft, parse_envelope
from gateway.as4.header import HEADER_XSD, add_user_message, format_timestamp, parse_user_message
from gateway.xmlsafe import load_schema
from tests.as4.helpers import PARTY_TYPE, build, permit, policy_of, user_message
from tests.conftest import NOW

FULL = UserMessage(
    message_id="5b0f2c3e-1d4e-4f6a-9b7c-0d1e2f3a4b5c@be-famhp.permit-gateway",
    timestamp=datetime(2026, 11, 26, 11, 59, 58, 123000, tzinfo=UTC),
    ref_to_message_id="a1b2c3d4@ch-swissmedic.permit-gateway",
    from_party=Party(
        party_ids=(
            PartyId(value="BE-FAMHP", type=PARTY_TYPE),
            PartyId(value="0208:0123456789", type="urn:oasis:names:tc:ebcore:partyid-type:iso6523:0208"),
        ),
        role="http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator",
    ),
    to_party=Party(party_ids=(PartyId(value="CH-SWISSMEDIC"),), role="urn:permit-gateway:roles:authority"),
    service="urn:permit-gateway:services:controlled-substances-trade",
    service_type="urn:permit-gateway:service-types",
    action="ImportAuthorization",
    conversation_id="conv-BE-IA-2026-0001",
    agreement_ref="urn:permit-gateway:agreements:be-ch",
    agreement_ref_type="urn:permit-gateway:agreement-types",
    agreement_ref_pmode="be-famhp--ch-swissmedic",
    mpc="urn:permit-gateway:mpc:permits",
    properties=(
        Property(
            name="originalSender", value="urn:oasis:names:tc:ebcore:partyid-type:unregistered:C1", type="urn:t"
        ),
        Property(
            name="finalRecipient", value="urn:oasis:names:tc:ebcore:partyid-type:unregistered:C4", type="urn:t"
        ),
        Property(name="documentNumber", value="BE-IA-2026-0001"),
    ),
    parts=(
        PartInfo(
            href="cid:permit@be-famhp.test",
            properties=(
                Property(name="MimeType", value="application/xml"),
                Property(name="CharacterSet", value="utf-8"),
                Property(name="CompressionType", value="application/gzip"),
            ),
            schemas=(PartSchema(location="urn:permit-gateway:cs-permits:1", version="1.0", namespace="urn:x"),),
            description="the import authorization",
            description_lang="en",
        ),
        PartInfo(href=None, properties=(Property(name="MimeType", value="application/xml"),)),
    ),
)


def _header(um: UserMessage) -> etree._Element:
    draft = new_draft()
    add_user_message(draft.messaging, um)
    return draft.messaging


def test_every_user_message_field_round_trips_through_the_header() -> None:
    messaging = _header(FULL)
    parsed = parse_user_message(messaging.find(q(EB, "UserMessage")))  # type: ignore[arg-type]
    assert parsed == FULL
    assert parsed.original_sender is not None and parsed.original_sender.type == "urn:t"
    assert parsed.final_recipient is not None
    assert parsed.parts[0].content_id == "permit@be-famhp.test"


def test_a_message_of_a_shape_seen_before_carries_its_own_ids_time_conversation_and_hrefs() -> None:
    first = dataclasses.replace(FULL, parts=(FULL.parts[0],))
    second = dataclasses.replace(
        first,
        message_id="second@be-famhp.permit-gateway",
        timestamp=FULL.timestamp + timedelta(seconds=1, microseconds=7000),
        ref_to_message_id="other@ch-swissmedic.permit-gateway",
        conversation_id="",
        parts=(dataclasses.replace(FULL.parts[0], href="cid:another@be-famhp.test"),),
    )
    for um in (first, second, first):
        assert parse_user_message(_header(um).find(q(EB, "UserMessage"))) == um  # type: ignore[arg-type]
    listed = dataclasses.replace(first, properties=list(first.properties))  # type: ignore[arg-type]
    parsed = parse_user_message(_header(listed).find(q(EB, "UserMessage")))  # type: ignore[arg-type]
    assert parsed == first


def test_generated_headers_validate_against_the_ebms_header_schema(alice: KeyPair, bob: KeyPair) -> None:
    schema = load_schema(HEADER_XSD)
    for um in (
        FULL,
        user_message(NOW),
        dataclasses.replace(
            FULL, parts=(), properties=(), agreement_ref=None, agreement_ref_type=None, agreement_ref_pmode=None
        ),
    ):
        assert schema.validate(_header(um)), schema.error_log
    # and the header of a complete signed, encrypted message
    out = build(alice, bob, NOW)
    incoming = parse_envelope(out.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--MIMEBoundary", 1)[0])
    assert schema.validate(incoming.messaging), schema.error_log


def test_default_mpc_is_omitted_and_read_back() -> None:
    messaging = _header(user_message(NOW))
    assert messaging.find(q(EB, "UserMessage")).get("mpc") is None  # type: ignore[union-attr]
    assert parse_user_message(messaging.find(q(EB, "UserMessage"))).mpc == DEFAULT_MPC  # type: ignore[arg-type]


def test_full_message_round_trips_through_sign_and_encrypt(alice: KeyPair, bob: KeyPair) -> None:
    payloads = [
        permit(
            character_set="utf-8",
            properties=(Property(name="documentType", value="IA", type="urn:t"),),
            schemas=(PartSchema(location="urn:permit-gateway:cs-permits:1", version="1.0"),),
            description="the permit",
        ),
        Payload(content_id="scan@be-famhp.test", mime_type="application/pdf", data=b"%PDF-1.7 scan"),
    ]
    message = dataclasses.replace(FULL, timestamp=NOW, parts=())
    out = build_user_message(message, payloads, sender=alice, recipient_certificate=bob.certificate)
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    got = event.user_message
    assert dataclasses.replace(got, parts=()) == message
    assert [p.get_property("CompressionType") for p in got.parts] == ["application/gzip"] * 2
    assert got.parts[0].get_property("CharacterSet") == "utf-8"
    assert got.parts[0].schemas == payloads[0].schemas and got.parts[0].description == "the permit"
    assert [(p.content_id, p.mime_type, p.data) for p in event.payloads] == [
        (p.content_id, p.mime_type, p.data) for p in payloads
    ]
    assert event.payloads[0].properties == payloads[0].properties
    assert event.payloads[0].character_set == "utf-8"


def test_timestamps_are_utc_with_z_and_millisecond_precision() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "2026-01-02T03:04:05.006Z"
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 6007, tzinfo=UTC)) == "2026-01-02T03:04:05.006Z"
    plus_one = datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=1))
    )
    assert format_timestamp(plus_one) == "2026-01-02T04:04:05.000Z"
    with pytest.raises(ValueError, match="time zone"):
        format_timestamp(datetime(2026, 1, 2))


# --- MessageId: RFC 2822 msg-id -------------------------------------------------------------------------

VALID_IDS = [
    "5b0f2c3e-1d4e-4f6a-9b7c-0d1e2f3a4b5c@sender.example",
    "UUID-2@receiver.example.com",
    "eb6ef7a7-4a5e-4c11-a187-c51ca1ef1444@10.0.0.4",
    "a.b!c#d$e%f&g'h*i+j/k=l?m^n_o`p{q|r}s~t@x",
    "left@[192.168.0.1]",
]
INVALID_IDS = [
    "<5b0f@sender.example>",
    "no-at-sign",
    "two@at@signs",
    "space in@left.example",
    "left@right:colon",
    "left.@right",
    "@right",
    "left@",
    "{{RefToMessageId}}",
]


@pytest.mark.parametrize("value", VALID_IDS)
def test_valid_message_ids(value: str) -> None:
    assert is_message_id(value)
    user_message(NOW, message_id=value)


@pytest.mark.parametrize("value", INVALID_IDS)
def test_invalid_message_ids_are_refused_on_build(value: str) -> None:
    assert not is_message_id(value)
    with pytest.raises(ValueError, match="RFC 2822 msg-id"):
        user_message(NOW, message_id=value)
    with pytest.raises(ValueError, match="RefToMessageId"):
        user_message(NOW, ref_to_message_id=value)


@pytest.mark.parametrize("value", ["<m-1@be-famhp.test>", "m 1@be-famhp.test", "no-at-sign"])
def test_invalid_message_ids_are_refused_on_receipt_as_ebms_0009(alice: KeyPair, bob: KeyPair, value: str) -> None:
    out = build(alice, bob, NOW)
    body = out.body.replace(
        b">m-1@be-famhp.test</eb:MessageId>",
        b">" + value.replace("<", "&lt;").replace(">", "&gt;").encode() + b"</eb:MessageId>",
    )
    assert body != out.body
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.INVALID_HEADER
    assert "eb:MessageId" in caught.value.detail and "RFC 2822" in caught.value.detail


def test_ids_longer_than_domibus_and_our_store_accept_are_refused_on_build_and_on_receipt(
    alice: KeyPair, bob: KeyPair
) -> None:
    """255 characters for a MessageId or ConversationId, 100 for a MIME type: longer ones were stored on SQLite
    and failed PostgreSQL's columns with an HTTP 500, so the sender retried until its time to live."""
    longest = "m" * (255 - len("@be-famhp.test")) + "@be-famhp.test"
    user_message(NOW, message_id=longest, conversation_id="c" * 255)
    with pytest.raises(ValueError, match="has 256 characters; at most 255"):
        user_message(NOW, message_id="m" + longest)
    with pytest.raises(ValueError, match=r"ConversationId 'ccc.*has 256 characters; at most 255"):
        user_message(NOW, conversation_id="c" * 256)
    Payload(content_id="a@b", mime_type="application/" + "x" * 88, data=b"")
    with pytest.raises(ValueError, match=r"MIME type 'application/xx.*has 101 characters; at most 100"):
        Payload(content_id="a@b", mime_type="application/" + "x" * 89, data=b"")
    out = build(alice, bob, NOW)
    for old, new, element in (
        (b">m-1@be-famhp.test</eb:MessageId>", b">m" + longest.encode() + b"</eb:MessageId>", "eb:MessageId"),
        (b">conv-1</eb:ConversationId>", b">" + b"c" * 256 + b"</eb:ConversationId>", "ConversationId"),
    ):
        body = out.body.replace(old, new)
        assert body != out.body
        with pytest.raises(EbmsError) as caught:
            parse_incoming(out.content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
        assert caught.value.code is EbmsCode.INVALID_HEADER
        assert element in caught.value.detail and "at most 255" in caught.value.detail


@pytest.mark.parametrize(
    ("party_id", "expected"),
    [
        ("BE-FAMHP", "u-1@be-famhp.permit-gateway"),
        ("0088:5798000000001", "u-1@0088-5798000000001.permit-gateway"),
        ("urn:oasis:names:tc:ebcore:partyid-type:unregistered:BE FAMHP", None),
        ("..", "u-1@permit-gateway"),
        ("x." * 200, None),
    ],
)
def test_our_message_ids_are_msg_ids_whatever_our_party_id(party_id: str, expected: str | None) -> None:
    """eDelivery PartyIds hold ':' and more, which a msg-id may not: every receipt, error signal and permit
    we sent from such a gateway failed to build (an HTTP 500 to every partner)."""
    made = message_id_for(party_id, "u-1")
    assert is_message_id(made), made
    assert made == expected or expected is None
    user_message(NOW, message_id=made)


def test_invalid_ref_to_message_id_is_refused_on_receipt(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, ref_to_message_id="earlier@ch.test")
    out = build_user_message(message, [permit()], sender=alice, recipient_certificate=bob.certificate)
    body = out.body.replace(b">earlier@ch.test<", b">earlier at ch<")
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.INVALID_HEADER
    assert "eb:RefToMessageId" in caught.value.detail
    assert caught.value.ref_to_message_id == "m-1@be-famhp.test"


def test_model_refuses_what_the_schema_cannot_carry() -> None:
    with pytest.raises(ValueError, match="time zone"):
        user_message(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="AgreementRef"):
        user_message(NOW, agreement_ref_pmode="p")
    with pytest.raises(ValueError, match="Content-ID"):
        Payload(content_id="a b", mime_type="application/xml", data=b"")
    with pytest.raises(ValueError, match="MIME type"):
        Payload(content_id="a@b", mime_type="xml\r\nX-Evil: 1", data=b"")
    with pytest.raises(ValueError, match="set by the MSH"):
        Payload(content_id="a@b", mime_type="application/xml", properties=(Property(name="MimeType", value="x"),))
    with pytest.raises(ValueError, match="Content-ID"):
        build_user_message(user_message(NOW), [permit(), permit()], sender=None, recipient_certificate=None)  # type: ignore[arg-type]


# --- PullRequest -------------------------------------------------------------------------------------------


def test_pull_request_round_trip(alice: KeyPair, bob: KeyPair) -> None:
    pull = PullRequest(message_id="pull-1@ch.test", timestamp=NOW, mpc="urn:permit-gateway:mpc:permits")
    out = build_pull_request(pull, key=bob)
    event = parse_request(
        out.content_type,
        out.body,
        policy_for=lambda um: pytest.fail("not a user message"),
        pull_policy_for=lambda pr: policy_of(bob),
        keys=[alice],
        now=NOW,
    )
    assert isinstance(event, PullRequestReceived)
    assert (event.mpc, event.message_id, event.timestamp) == (pull.mpc, pull.message_id, NOW)
    assert event.pull_request == pull
    assert len(event.references) == 2


def test_pull_request_is_refused_where_no_pull_pmode_exists(alice: KeyPair, bob: KeyPair) -> None:
    out = build_pull_request(PullRequest(message_id="pull-2@ch.test", timestamp=NOW), key=bob)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(bob), keys=[alice], now=NOW)
    assert caught.value.code is EbmsCode.PROCESSING_MODE_MISMATCH
    assert caught.value.ref_to_message_id == "pull-2@ch.test"
    assert "pull" in caught.value.detail.lower()


def test_pull_request_signed_by_a_stranger_is_refused(alice: KeyPair, bob: KeyPair, mallory: KeyPair) -> None:
    out = build_pull_request(PullRequest(message_id="pull-3@ch.test", timestamp=NOW), key=mallory)
    with pytest.raises(EbmsError) as caught:
        parse_request(
            out.content_type,
            out.body,
            policy_for=lambda um: policy_of(bob),
            pull_policy_for=lambda pr: policy_of(bob),
            keys=[alice],
            now=NOW,
        )
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION


def test_a_receipt_sent_as_a_request_is_a_pmode_mismatch(alice: KeyPair, bob: KeyPair) -> None:
    from gateway.as4 import build_receipt

    out = build(alice, bob, NOW)
    event = parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    receipt = build_receipt(out.message_id, event.references, key=bob, message_id="r-9@ch.test", now=NOW)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            receipt.content_type, receipt.body, policy_for=lambda um: policy_of(bob), keys=[alice], now=NOW
        )
    assert caught.value.code is EbmsCode.PROCESSING_MODE_MISMATCH
    assert "Receipt" in caught.value.detail
