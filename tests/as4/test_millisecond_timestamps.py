"""The eb:Timestamps we write carry at most milliseconds, with a trailing Z, as phase4, Domibus and Holodeck write
them: a clock at 10:00:00.123456 gives 2026-11-28T10:00:00.123Z in a user message, a receipt, an error signal, a
PullRequest and the EmptyMessagePartitionChannel warning, and each still validates against the ebMS header XSD."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    PullRequest,
    build_error_signal,
    build_pull_request,
    build_receipt,
    build_user_message,
    mime,
    parse_incoming,
)
from gateway.as4._ns import EB, q
from gateway.as4.header import HEADER_XSD, format_timestamp
from gateway.as4.pull import build_empty_mpc, parse_pull
from gateway.xmlsafe import load_schema, parse_xml
from tests.as4.helpers import permit, policy_of, user_message

CLOCK = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)
WRITTEN = "2026-11-28T10:00:00.123Z"
_DATETIME = re.compile(rb">(\d{4}-\d\d-\d\dT[^<]*)<")


def _messaging(out: Outgoing) -> etree._Element:
    root = parse_xml(mime.parse(out.content_type, out.body).envelope)
    found = root.find(f".//{q(EB, 'Messaging')}")
    assert found is not None
    return found


def _written(out: Outgoing) -> str:
    """The eb:Timestamp of ``out``, after checking its eb:Messaging against the ebMS header schema and that no
    xsd:dateTime anywhere in its envelope has more than three fraction digits."""
    messaging = _messaging(out)
    schema = load_schema(HEADER_XSD)
    assert schema.validate(messaging), schema.error_log
    envelope = mime.parse(out.content_type, out.body).envelope
    found = _DATETIME.findall(envelope)
    assert found
    for value in found:
        assert re.fullmatch(rb"[-\dT:]+(\.\d{1,3})?Z", value), value
    return messaging.findtext(f".//{q(EB, 'Timestamp')}") or ""


def test_a_timestamp_is_cut_to_the_millisecond_with_z() -> None:
    assert format_timestamp(CLOCK) == WRITTEN
    assert format_timestamp(CLOCK.replace(microsecond=999999)) == "2026-11-28T10:00:00.999Z"  # never rounded up
    assert format_timestamp(CLOCK.replace(microsecond=0)) == "2026-11-28T10:00:00.000Z"
    assert format_timestamp(CLOCK.astimezone(timezone(timedelta(hours=1)))) == WRITTEN
    with pytest.raises(ValueError, match="time zone"):
        format_timestamp(CLOCK.replace(tzinfo=None))


def test_every_signal_and_message_we_build_carries_milliseconds(alice: KeyPair, bob: KeyPair) -> None:
    sent = build_user_message(user_message(CLOCK), [permit()], sender=alice, recipient_certificate=bob.certificate)
    assert _written(sent) == WRITTEN

    received = parse_incoming(
        sent.content_type, sent.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=CLOCK
    )
    assert received.user_message.timestamp == CLOCK.replace(microsecond=123000)  # what the partner reads back
    receipt = build_receipt(sent.message_id, received.references, key=bob, message_id="r-1@ch.test", now=CLOCK)
    assert _written(receipt) == WRITTEN

    error = EbmsError(EbmsCode.FAILED_DECRYPTION, "no key", ref_to_message_id=sent.message_id)
    assert _written(build_error_signal(error, key=bob, message_id="e-1@ch.test", now=CLOCK)) == WRITTEN

    pull = build_pull_request(PullRequest(message_id="p-1@be.test", timestamp=CLOCK), key=alice)
    assert _written(pull) == WRITTEN
    _, asked = parse_pull(pull.content_type, pull.body, candidates={"a": policy_of(alice)}, now=CLOCK)
    empty = build_empty_mpc(asked, key=bob, message_id="w-1@ch.test", now=CLOCK)
    assert _written(empty) == WRITTEN


def test_a_timestamp_of_the_user_message_round_trips_at_millisecond_precision(
    alice: KeyPair, bob: KeyPair
) -> None:
    um = dataclasses.replace(user_message(CLOCK), timestamp=CLOCK + timedelta(microseconds=7))
    sent = build_user_message(um, [permit()], sender=alice, recipient_certificate=bob.certificate)
    event = parse_incoming(
        sent.content_type, sent.body, policy_for=lambda u: policy_of(alice), keys=[bob], now=CLOCK
    )
    assert event.user_message.timestamp == datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC)
