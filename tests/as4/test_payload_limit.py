"""The partner's payload limit (profile ``max_payload_bytes``, PMode PayloadProfile.maxSize) on receive."""

from __future__ import annotations

import gzip

import pytest

from gateway.as4 import EbmsCode, EbmsError, KeyPair, parse_incoming
from gateway.as4.model import PartInfo, Property
from tests.as4.helpers import PERMIT, build, hand_built, policy_of, user_message
from tests.conftest import NOW

GZIP = (
    Property(name="MimeType", value="application/xml"),
    Property(name="CompressionType", value="application/gzip"),
)


@pytest.mark.parametrize("compress", [True, False])
def test_a_payload_over_the_limit_is_refused_naming_it(alice: KeyPair, bob: KeyPair, compress: bool) -> None:
    out = build(alice, bob, NOW, compress=compress)

    accepted = parse_incoming(
        out.content_type,
        out.body,
        policy_for=lambda um: policy_of(alice, max_payload_bytes=len(PERMIT)),
        keys=[bob],
        now=NOW,
    )
    assert accepted.payloads[0].data == PERMIT
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            out.content_type,
            out.body,
            policy_for=lambda um: policy_of(alice, max_payload_bytes=len(PERMIT) - 1),
            keys=[bob],
            now=NOW,
        )

    assert caught.value.code is EbmsCode.PROCESSING_MODE_MISMATCH
    assert caught.value.ref_to_message_id == "m-1@be-famhp.test"
    found = "more" if compress else f"{len(PERMIT)} bytes"
    assert caught.value.detail.startswith("payload cid:")
    assert caught.value.detail.endswith(
        f" carries {found} (decompressed); the partner profile allows at most {len(PERMIT) - 1} bytes per payload "
        "(max_payload_bytes)"
    )


@pytest.mark.parametrize("spooled", [False, True])
def test_inflating_stops_at_the_partners_limit(alice: KeyPair, bob: KeyPair, spooled: bool) -> None:
    parts = tuple(PartInfo(href=f"cid:p{i}@x.test", properties=GZIP) for i in range(2))
    small = gzip.compress(b"\0" * 90_000)
    bomb = gzip.compress(b"\0" * 64_000_000)  # 62 KB on the wire, far more than the partner allows
    content_type, body = hand_built(
        alice,
        user_message(NOW, parts=parts),
        attachments=[("p0@x.test", "application/gzip", small), ("p1@x.test", "application/gzip", bomb)],
    )
    policy = policy_of(alice, require_encryption=False, max_payload_bytes=100_000)

    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type,
            body,
            policy_for=lambda um: policy,
            keys=[bob],
            now=NOW,
            spool_threshold=1 if spooled else None,
        )

    assert caught.value.code is EbmsCode.PROCESSING_MODE_MISMATCH
    assert caught.value.detail == (
        "payload cid:p1@x.test carries more (decompressed); the partner profile allows at most 100000 bytes per "
        "payload (max_payload_bytes)"
    )


def test_the_limit_is_per_payload(alice: KeyPair, bob: KeyPair) -> None:
    parts = tuple(PartInfo(href=f"cid:p{i}@x.test", properties=GZIP) for i in range(3))
    each = gzip.compress(b"\0" * 90_000)
    content_type, body = hand_built(
        alice,
        user_message(NOW, parts=parts),
        attachments=[(f"p{i}@x.test", "application/gzip", each) for i in range(3)],
    )
    policy = policy_of(alice, require_encryption=False, max_payload_bytes=90_000)

    event = parse_incoming(content_type, body, policy_for=lambda um: policy, keys=[bob], now=NOW)

    assert [p.size for p in event.payloads] == [90_000] * 3


def test_the_gateways_own_cap_still_applies_below_a_larger_partner_limit(alice: KeyPair, bob: KeyPair) -> None:
    parts = (PartInfo(href="cid:p0@x.test", properties=GZIP),)
    content_type, body = hand_built(
        alice,
        user_message(NOW, parts=parts),
        attachments=[("p0@x.test", "application/gzip", gzip.compress(b"\0" * 2_000_000))],
    )
    policy = policy_of(alice, require_encryption=False, max_payload_bytes=10_000_000)

    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type, body, policy_for=lambda um: policy, keys=[bob], now=NOW, max_payload_bytes=1_000_000
        )

    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert "inflates beyond the limit of 1000000 bytes" in caught.value.detail
