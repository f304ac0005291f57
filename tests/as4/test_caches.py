"""What the receive path keeps between messages (parsed certificates, the KeyUsage verdict of a certificate,
parsed Content-Type headers) never carries a trust decision over: each message is checked on its own."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway.as4 import EbmsCode, EbmsError, KeyPair, Outgoing, SecurityPolicy, UserMessageReceived, parse_incoming
from gateway.as4.mime import parse_content_type
from tests.as4.helpers import PERMIT, build, policy_of
from tests.as4.test_trust import ANCHOR, anchored, leaf, usage
from tests.conftest import NOW, make_key_pair


def _open(out: Outgoing, recipient: KeyPair, policy: SecurityPolicy, now: datetime = NOW) -> UserMessageReceived:
    return parse_incoming(out.content_type, out.body, policy_for=lambda um: policy, keys=[recipient], now=now)


def _refusal(out: Outgoing, recipient: KeyPair, policy: SecurityPolicy, now: datetime = NOW) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        _open(out, recipient, policy, now)
    return caught.value


def test_a_certificate_that_expired_between_two_messages_is_refused(bob: KeyPair) -> None:
    short_lived = make_key_pair("BE-SHORT", not_before=NOW - timedelta(days=1), days=2)
    policy = policy_of(short_lived)
    first = build(short_lived, bob, NOW)
    assert _open(first, bob, policy)  # parsed and cached
    later = NOW + timedelta(days=3)
    second = build(short_lived, bob, later)  # the very same BinarySecurityToken
    error = _refusal(second, bob, policy, later)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "valid from" in error.detail
    assert _open(first, bob, policy)  # and the cache still serves the first moment correctly


def test_a_known_certificate_is_refused_by_a_policy_that_does_not_pin_it(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    assert _open(out, bob, policy_of(alice))
    other = make_key_pair("BE-OTHER")
    error = _refusal(out, bob, policy_of(other))
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "not among the certificates pinned" in error.detail


def test_key_usage_verdict_is_the_same_for_every_message(bob: KeyPair) -> None:
    encryption_only = leaf(ANCHOR, "BE-FAMHP", usage=usage(digital_signature=False))
    for _ in range(2):
        error = _refusal(build(encryption_only, bob, NOW), bob, anchored())
        assert error.code is EbmsCode.FAILED_AUTHENTICATION and "without digitalSignature" in error.detail


def test_a_token_that_is_not_a_certificate_is_refused_every_time(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    signer_token = out.body.rindex(b"<wsse:BinarySecurityToken ")  # the recipient's token comes first
    start = out.body.index(b">", signer_token) + 1
    broken = Outgoing(
        message_id=out.message_id,
        content_type=out.content_type,
        body=out.body[:start] + b"AAAA" + out.body[start + 4 :],
    )
    for _ in range(2):
        error = _refusal(broken, bob, policy_of(alice))
        assert error.code is EbmsCode.FAILED_AUTHENTICATION and "not a certificate" in error.detail
    assert _open(out, bob, policy_of(alice))


def test_parsed_content_types_are_independent_copies() -> None:
    header = 'multipart/related; boundary="b1"; type="application/soap+xml"'
    media_type, params = parse_content_type(header)
    params["boundary"] = "changed"
    assert parse_content_type(header) == (media_type, {"boundary": "b1", "type": "application/soap+xml"})


def test_payload_still_arrives_after_many_messages_from_one_sender(alice: KeyPair, bob: KeyPair) -> None:
    for _ in range(3):
        assert _open(build(alice, bob, NOW), bob, policy_of(alice)).payloads[0].data == PERMIT
