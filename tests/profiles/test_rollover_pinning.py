"""Every signing certificate of a profile is pinned, whatever its validity when the partner set is built: a
certificate that becomes valid during a rollover is trusted from that moment, not from the next reload, and
one that is not valid when a message comes is refused naming its validity, never as unpinned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    UserMessage,
    build_user_message,
    parse_incoming,
)
from gateway.as4.wss import trust_certificate
from gateway.profiles import DevPki, load_profiles
from gateway.profiles.trust import Partners, load_key_pair

from .conftest import MINIMAL, NOW
from .helpers import certificate, rsa_key, write_certificate

WriteProfile = Callable[..., Path]
BUILT = NOW - timedelta(seconds=1)  # the partner set is built (start or reload) a second before the rollover


@pytest.fixture
def rollover(pki: DevPki, tmp_path: Path) -> tuple[Path, dict[str, x509.Certificate]]:
    """The dev PKI (the partner's current certificate), an expired certificate, and the next one, valid from NOW."""
    folder = tmp_path / "certs"
    folder.mkdir()
    for source in pki.folder.glob("*.crt.pem"):
        (folder / source.name).write_bytes(source.read_bytes())
    made = {
        "old": certificate("CH-OLD", key=rsa_key(1), not_before=NOW - timedelta(days=400), days=399),
        "next": certificate("CH-NEXT", key=rsa_key(2), not_before=NOW, days=400),
    }
    for name, cert in made.items():
        write_certificate(folder / f"{name}.pem", cert)
    return folder, made


def _partners(write_profile: WriteProfile, certs: Path) -> Partners:
    text = MINIMAL.replace(
        "  signing_certificate: ch-swissmedic.crt.pem\n",
        "  signing_certificates: [ch-swissmedic.crt.pem, old.pem, next.pem]\n",
    )
    assert "old.pem" in text
    path = write_profile(text, name="ch-swissmedic.yaml")
    return Partners(load_profiles(path.parent, certificates_dir=certs), now=BUILT)


def test_a_certificate_becoming_valid_after_the_build_is_trusted_without_a_reload(
    rollover: tuple[Path, dict[str, x509.Certificate]], write_profile: WriteProfile
) -> None:
    certs, made = rollover
    partners = _partners(write_profile, certs)
    policy = partners.get("ch-swissmedic").policy

    assert made["next"] in policy.signing_certificates and made["old"] in policy.signing_certificates
    trust_certificate(made["next"], policy, NOW + timedelta(seconds=3))


def test_a_pinned_certificate_not_valid_when_a_message_comes_is_refused_for_its_validity(
    rollover: tuple[Path, dict[str, x509.Certificate]], write_profile: WriteProfile
) -> None:
    certs, made = rollover
    policy = _partners(write_profile, certs).get("ch-swissmedic").policy

    for name, at in (("next", BUILT), ("old", NOW)):
        with pytest.raises(EbmsError) as caught:
            trust_certificate(made[name], policy, at)
        assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION
        detail = caught.value.detail
        cert = made[name]
        assert f"signing certificate '{cert.subject.rfc4514_string()}' is valid from " in detail
        assert (
            f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
            in detail
        )
        assert f"not at {at:%Y-%m-%dT%H:%M:%SZ}" in detail
        assert "pinned" not in detail


def _signed_with_next(pki: DevPki, cert: x509.Certificate, at: datetime) -> tuple[Outgoing, KeyPair]:
    files = pki.files_for("BE-FAMHP")
    us = load_key_pair(files.key, files.certificate, None, now=NOW)
    message = UserMessage(
        message_id="rollover-1@ch-swissmedic.test",
        timestamp=at,
        from_party=Party(party_ids=(PartyId(value="CH-SWISSMEDIC"),), role=ROLE_INITIATOR),
        to_party=Party(party_ids=(PartyId(value="BE-FAMHP"),), role=ROLE_RESPONDER),
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        conversation_id="c",
    )
    payload = Payload(content_id="p@test", mime_type="application/xml", data=b"<ImportAuthorization/>")
    sender = KeyPair(private_key=rsa_key(2), certificate=cert)
    return build_user_message(message, [payload], sender=sender, recipient_certificate=us.certificate), us


def test_a_message_signed_with_the_next_certificate_is_received_once_it_is_valid(
    pki: DevPki, rollover: tuple[Path, dict[str, x509.Certificate]], write_profile: WriteProfile
) -> None:
    certs, made = rollover
    policy = _partners(write_profile, certs).get("ch-swissmedic").policy
    at = NOW + timedelta(seconds=3)
    sent, us = _signed_with_next(pki, made["next"], at)

    received = parse_incoming(sent.content_type, sent.body, policy_for=lambda _: policy, keys=(us,), now=at)

    assert received.payloads[0].data == b"<ImportAuthorization/>"
    early, _ = _signed_with_next(pki, made["next"], BUILT)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(early.content_type, early.body, policy_for=lambda _: policy, keys=(us,), now=BUILT)
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION
    assert "'CN=CH-NEXT' is valid from" in caught.value.detail and "pinned" not in caught.value.detail
