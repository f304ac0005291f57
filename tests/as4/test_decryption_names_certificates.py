"""A payload encrypted for a certificate of ours that is no longer loaded was refused naming only its subject,
which a renewed certificate shares: the refusal names its SHA-256 and those of the certificates we decrypt with."""

from __future__ import annotations

import pytest

from gateway.as4 import EbmsCode, EbmsError, KeyPair, parse_incoming
from gateway.as4.wss import fingerprint
from tests.as4.helpers import build, policy_of
from tests.conftest import NOW, make_key_pair


def test_a_payload_for_our_old_certificate_is_refused_naming_both_fingerprints(
    alice: KeyPair, bob: KeyPair
) -> None:
    retired = make_key_pair("CH-SWISSMEDIC")  # bob's certificate before its renewal: the same subject
    out = build(alice, retired, NOW)

    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    error = caught.value

    assert error.code is EbmsCode.FAILED_DECRYPTION
    assert (
        f"the payload is encrypted for 'CN=CH-SWISSMEDIC' (SHA-256 {fingerprint(retired.certificate)[:16]}...), "
        "which is not one of our current keys (the certificates we decrypt with have SHA-256 "
        f"{fingerprint(bob.certificate)[:16]}...); the sender must encrypt for our current certificate"
    ) in error.detail
