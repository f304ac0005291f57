"""Who may sign: pinned certificates, or a trust anchor plus a subject constraint; validity at ``now``; key
usage; and the clock checks on eb:Timestamp (future beyond the skew, older than ``max_age``)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    SecurityPolicy,
    UserMessageReceived,
    build_user_message,
    parse_incoming,
)
from tests.as4.helpers import PERMIT, build, permit, policy_of, user_message
from tests.conftest import NOW

_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _key(name: str) -> rsa.RSAPrivateKey:
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca(cn: str = "Permit Gateway Test CA", *, days: int = 3650) -> KeyPair:
    key = _key(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(private_key=key, certificate=cert)


def leaf(
    issuer: KeyPair, cn: str, *, usage: x509.KeyUsage | None = None, start: int = -1, days: int = 365
) -> KeyPair:
    key = _key(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=start))
        .not_valid_after(NOW + timedelta(days=start + days))
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return KeyPair(private_key=key, certificate=builder.sign(issuer.private_key, hashes.SHA256()))


def usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=not digital_signature,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


ANCHOR = ca()
PATTERN = r"CN=BE-FAMHP( AS4 \d{4})?,C=BE"  # RFC 4514: most specific first


def anchored() -> SecurityPolicy:
    return SecurityPolicy(signing_certificates=(), trust_anchors=(ANCHOR.certificate,), subject_pattern=PATTERN)


def _receive(sender: KeyPair, recipient: KeyPair, policy: SecurityPolicy) -> UserMessageReceived:
    out = build(sender, recipient, NOW)
    return parse_incoming(out.content_type, out.body, policy_for=lambda um: policy, keys=[recipient], now=NOW)


def _refused(sender: KeyPair, recipient: KeyPair, policy: SecurityPolicy) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        _receive(sender, recipient, policy)
    return caught.value


def test_certificate_issued_by_the_anchor_with_a_matching_subject_is_accepted(bob: KeyPair) -> None:
    renewed = leaf(ANCHOR, "BE-FAMHP AS4 2027", usage=usage(digital_signature=True))
    event = _receive(renewed, bob, anchored())
    assert event.payloads[0].data == PERMIT
    assert event.signer_certificate_sha256 == renewed.certificate.fingerprint(hashes.SHA256()).hex()


def test_anchor_alone_is_not_enough_the_subject_must_match(bob: KeyPair) -> None:
    other = leaf(ANCHOR, "NL-CIBG", usage=usage(digital_signature=True))
    error = _refused(other, bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "does not match the partner profile's subject pattern" in error.detail


def test_certificate_from_another_ca_is_refused(bob: KeyPair) -> None:
    rogue = leaf(ca("Rogue CA"), "BE-FAMHP", usage=usage(digital_signature=True))
    error = _refused(rogue, bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "neither pinned nor issued directly" in error.detail


def test_same_issuer_name_but_not_signed_by_the_anchor_is_refused(bob: KeyPair) -> None:
    impostor_ca = KeyPair(
        private_key=_key("impostor"), certificate=ANCHOR.certificate
    )  # the anchor's name, another key
    forged = leaf(impostor_ca, "BE-FAMHP", usage=usage(digital_signature=True))
    error = _refused(forged, bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "neither pinned nor issued directly" in error.detail


def test_only_direct_issuance_counts(bob: KeyPair) -> None:
    intermediate_key = _key("Intermediate")
    intermediate = KeyPair(
        private_key=intermediate_key,
        certificate=leaf(ANCHOR, "Intermediate").certificate,
    )
    grandchild = leaf(intermediate, "BE-FAMHP", usage=usage(digital_signature=True))
    error = _refused(grandchild, bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION


def test_anchored_certificate_must_be_valid_now(bob: KeyPair) -> None:
    expired = leaf(ANCHOR, "BE-FAMHP", usage=usage(digital_signature=True), start=-400, days=30)
    error = _refused(expired, bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "is valid from" in error.detail
    future = leaf(ANCHOR, "BE-FAMHP AS4 2030", usage=usage(digital_signature=True), start=30)
    assert _refused(future, bob, anchored()).code is EbmsCode.FAILED_AUTHENTICATION


def test_expired_anchor_is_refused(bob: KeyPair) -> None:
    old_anchor = ca("Old CA", days=-1)
    signer = leaf(old_anchor, "BE-FAMHP", usage=usage(digital_signature=True))
    policy = SecurityPolicy(
        signing_certificates=(), trust_anchors=(old_anchor.certificate,), subject_pattern=PATTERN
    )
    error = _refused(signer, bob, policy)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "trust anchor" in error.detail


def test_key_usage_without_digital_signature_is_refused_for_signing(bob: KeyPair) -> None:
    encryption_only = leaf(ANCHOR, "BE-FAMHP", usage=usage(digital_signature=False))
    for policy in (anchored(), SecurityPolicy(signing_certificates=(encryption_only.certificate,))):
        error = _refused(encryption_only, bob, policy)
        assert error.code is EbmsCode.FAILED_AUTHENTICATION and "without digitalSignature" in error.detail


def test_certificate_without_key_usage_extension_may_sign(alice: KeyPair, bob: KeyPair) -> None:
    assert _receive(alice, bob, policy_of(alice)).payloads  # the conftest PKI has no KeyUsage extension


def test_pinned_certificate_is_still_checked_for_validity(bob: KeyPair) -> None:
    from tests.conftest import make_key_pair

    not_yet = make_key_pair("BE-FUTURE", not_before=NOW + timedelta(days=2))
    error = _refused(not_yet, bob, policy_of(not_yet))
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "not at 2026-11-26T12:00:00Z" in error.detail


def test_policy_construction_refuses_loose_settings() -> None:
    with pytest.raises(ValueError, match="pinned certificate or trust anchor"):
        SecurityPolicy(signing_certificates=())
    with pytest.raises(ValueError, match="subject_pattern"):
        SecurityPolicy(signing_certificates=(), trust_anchors=(ANCHOR.certificate,))
    with pytest.raises(ValueError, match="not a regular expression"):
        SecurityPolicy(signing_certificates=(), trust_anchors=(ANCHOR.certificate,), subject_pattern="(")
    with pytest.raises(ValueError, match="max_age"):
        SecurityPolicy(signing_certificates=(ANCHOR.certificate,), max_age=timedelta(0))
    with pytest.raises(ValueError, match="signature_methods"):
        SecurityPolicy(signing_certificates=(ANCHOR.certificate,), signature_methods=frozenset())
    SecurityPolicy(signing_certificates=(), require_signature=False)  # explicit, never the default


# --- clock checks -------------------------------------------------------------------------------------------


def test_timestamp_beyond_the_clock_skew_is_refused_within_it_accepted(alice: KeyPair, bob: KeyPair) -> None:
    policy = policy_of(alice, clock_skew=timedelta(minutes=5))
    for ahead, accepted in ((timedelta(minutes=4), True), (timedelta(minutes=6), False)):
        out = build_user_message(
            user_message(NOW + ahead), [permit()], sender=alice, recipient_certificate=bob.certificate
        )
        if accepted:
            parse_incoming(out.content_type, out.body, policy_for=lambda um: policy, keys=[bob], now=NOW)
            continue
        with pytest.raises(EbmsError) as caught:
            parse_incoming(out.content_type, out.body, policy_for=lambda um: policy, keys=[bob], now=NOW)
        assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
        assert (
            "2026-11-26T12:06:00.000Z" in caught.value.detail and "2026-11-26T12:00:00.000Z" in caught.value.detail
        )


def test_message_older_than_max_age_is_refused_with_both_times(alice: KeyPair, bob: KeyPair) -> None:
    out = build_user_message(
        user_message(NOW - timedelta(days=3)), [permit()], sender=alice, recipient_certificate=bob.certificate
    )
    lenient = policy_of(alice)  # max_age defaults to None: the store's duplicate window decides
    parse_incoming(out.content_type, out.body, policy_for=lambda um: lenient, keys=[bob], now=NOW)
    strict = policy_of(alice, max_age=timedelta(days=2))
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, out.body, policy_for=lambda um: strict, keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "2026-11-23T12:00:00.000Z" in caught.value.detail  # the message's time
    assert "2026-11-26T12:00:00.000Z" in caught.value.detail  # ours
    assert "2 days" in caught.value.detail
    assert caught.value.ref_to_message_id == out.message_id


def test_a_ca_certificate_under_the_anchor_may_not_sign_even_with_a_matching_subject(bob: KeyPair) -> None:
    """A sub-CA the anchor issued (or the anchor itself) is not the partner's gateway: only end-entity
    certificates sign under a trust anchor."""
    key = _key("BE-FAMHP AS4 2028")
    sub_ca = (
        x509.CertificateBuilder()
        .subject_name(_name("BE-FAMHP AS4 2028"))
        .issuer_name(ANCHOR.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ANCHOR.private_key, hashes.SHA256())
    )
    error = _refused(KeyPair(private_key=key, certificate=sub_ca), bob, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "is a CA certificate" in error.detail
    own_anchor = ca("BE-FAMHP")  # self-issued, its subject matching the pattern
    policy = SecurityPolicy(
        signing_certificates=(), trust_anchors=(own_anchor.certificate,), subject_pattern=PATTERN
    )
    assert "is a CA certificate" in _refused(own_anchor, bob, policy).detail


def revocation_list(
    issuer: KeyPair, *revoked: x509.Certificate, next_update: timedelta = timedelta(days=7)
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(NOW - timedelta(days=1))
        .next_update(NOW + next_update)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(NOW - timedelta(hours=2))
            .build()
        )
    return builder.sign(issuer.private_key, hashes.SHA256())


def test_a_certificate_its_cas_revocation_list_names_is_refused(bob: KeyPair) -> None:
    revoked = leaf(ANCHOR, "BE-FAMHP AS4 2025", usage=usage(digital_signature=True))
    current = leaf(ANCHOR, "BE-FAMHP AS4 2026", usage=usage(digital_signature=True))
    crl = revocation_list(ANCHOR, revoked.certificate)
    policy = dataclasses.replace(anchored(), revocation_lists=(crl,))

    error = _refused(revoked, bob, policy)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert f"(serial {revoked.certificate.serial_number:x}) was revoked by its CA at" in error.detail
    assert _receive(current, bob, policy).payloads[0].data == PERMIT
    pinned = dataclasses.replace(policy, signing_certificates=(revoked.certificate,))
    assert "was revoked" in _refused(revoked, bob, pinned).detail  # pinning does not outlive a revocation


def test_past_its_next_update_a_revocation_list_refuses_every_certificate_of_its_ca(bob: KeyPair) -> None:
    """A stale list cannot tell whether a certificate was revoked since: fail closed."""
    current = leaf(ANCHOR, "BE-FAMHP AS4 2026", usage=usage(digital_signature=True))
    stale = revocation_list(ANCHOR, next_update=-timedelta(minutes=1))
    error = _refused(current, bob, dataclasses.replace(anchored(), revocation_lists=(stale,)))
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "was due for renewal at" in error.detail and "security.revocation_list" in error.detail
    other_ca = dataclasses.replace(
        anchored(), revocation_lists=(revocation_list(ca("Other CA"), next_update=-timedelta(1)),)
    )
    assert _receive(current, bob, other_ca).payloads[0].data == PERMIT  # another CA's list says nothing of it
