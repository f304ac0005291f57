"""Trust in use: each partner's loaded certificates and AS4 security policy, and our own key pair.

``Partners`` wraps one immutable ``ProfileRegistry``; a reload swaps the registry whole, so a message in
flight keeps the partner it started with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.as4 import KeyPair, SecurityPolicy, Suite
from gateway.errors import ConfigError, KeyMaterialError, ProfileError
from gateway.profiles.certificates import (
    MIN_RSA_KEY_BITS,
    PartnerCertificates,
    check_certificate,
    load_certificate,
    load_private_key,
    resolve_certificates,
)
from gateway.profiles.model import PartnerProfile, SecuritySuite
from gateway.profiles.registry import ProfileRegistry

log = structlog.get_logger("gateway.profiles")


@dataclass(frozen=True, slots=True)
class Partner:
    profile: PartnerProfile
    certificates: PartnerCertificates
    policy: SecurityPolicy


def partner_of(
    profile: PartnerProfile, *, now: datetime | None = None, max_age: timedelta | None = None
) -> Partner:
    """Load a profile's certificates and derive its security policy (the certificates valid at ``now``).

    ``max_age`` is the duplicate-detection window: a message older than it is refused (EBMS:0003), since it
    could no longer be recognized as a duplicate. A profile whose time to live is not below it is refused
    here (start, hot reload and every edit), so a retry within its time to live is never refused for its age.
    """
    if max_age is not None:
        check_time_to_live(profile, max_age)
    certificates = resolve_certificates(profile, now=now)
    policy = security_policy(
        certificates,
        now=now,
        max_age=max_age,
        suite=profile.security.suite,
        max_payload_bytes=profile.max_payload_bytes,
    )
    if profile.security.suite.experimental:
        log.warning(
            "partner profile uses an EXPERIMENTAL security suite: eDelivery AS4 2.0 has not yet been exchanged "
            "with another implementation; confirm it with the partner by 'permit-gateway profiles ping'",
            partner=profile.id,
            suite=profile.security.suite.value,
        )
    return Partner(profile=profile, certificates=certificates, policy=policy)


def check_time_to_live(profile: PartnerProfile, duplicate_window: timedelta) -> None:
    """Refuse a time to live that reaches the duplicate window: the partner's clock may run ahead of ours,
    so a last retry at exactly the window's age could already look too old."""
    ttl_hours = profile.reception_awareness.time_to_live_hours
    if timedelta(hours=ttl_hours) >= duplicate_window:
        raise ConfigError(
            f"partner {profile.id!r}: reception_awareness.time_to_live_hours = {ttl_hours:g} is not below "
            f"[inbound].duplicate_window_hours = {duplicate_window.total_seconds() / 3600:g}; a retry within its "
            "time to live could no longer be recognized as a duplicate. Lower the one or raise the other"
        )


def security_policy(
    certificates: PartnerCertificates,
    *,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    suite: SecuritySuite = SecuritySuite.EDELIVERY_AS4_1_15,
    max_payload_bytes: int | None = None,
) -> SecurityPolicy:
    """The AS4 policy: the pinned certificates valid at ``now`` (all without it), the trust anchor, and the
    most payload bytes a message may carry (the profile's ``max_payload_bytes``).

    When no pinned certificate is valid the policy still pins them all, so a message is refused naming the
    certificate and its validity (``Partners.usable`` refuses such a partner for sending first). A profile
    with ``trust_anchor`` also trusts certificates the anchor issued whose subject fully matches ``subject``.
    The encryption certificate is known too: a signature may name it by SubjectKeyIdentifier or IssuerSerial
    without carrying it (eDelivery AS4 1.15 signs with the key it decrypts with; Domibus sends no token), and
    it is then trusted only as the pinned certificates or the anchor would trust it.
    """
    pinned = (certificates.signing if now is None else certificates.valid_signing(now)) or certificates.signing
    anchor = certificates.trust_anchor
    return SecurityPolicy.for_suite(
        Suite(suite.value),
        signing_certificates=pinned,
        known_certificates=() if certificates.encryption in pinned else (certificates.encryption,),
        trust_anchors=() if anchor is None else (anchor,),
        subject_pattern=None if anchor is None else certificates.subject,
        revocation_lists=() if certificates.revocation_list is None else (certificates.revocation_list,),
        max_age=max_age,
        max_payload_bytes=max_payload_bytes,
    )


class Partners:
    """The partners we exchange with, their certificates loaded once per registry.

    Immutable: a reload builds a new ``Partners`` and swaps it in whole. ``changes_at`` is the next moment a
    certificate becomes valid or expires, after which a rebuild chooses certificates again.
    """

    def __init__(
        self, registry: ProfileRegistry, *, now: datetime | None = None, max_age: timedelta | None = None
    ) -> None:
        self._registry = registry
        self._max_age = max_age
        self._partners = {p.id: partner_of(p, now=now, max_age=max_age) for p in registry}
        moments = [p.certificates.changes_at(now) for p in self._partners.values()] if now is not None else []
        self._changes_at = min((m for m in moments if m is not None), default=None)

    @property
    def changes_at(self) -> datetime | None:
        return self._changes_at

    @property
    def max_age(self) -> timedelta | None:
        """The duplicate-detection window the policies were built with (None: no age limit)."""
        return self._max_age

    @property
    def registry(self) -> ProfileRegistry:
        return self._registry

    def __iter__(self) -> Iterator[Partner]:
        return (self._partners[profile.id] for profile in self._registry)

    def __len__(self) -> int:
        return len(self._partners)

    def get(self, profile_id: str) -> Partner:
        return self._partners[self._registry.get(profile_id).id]

    def by_party(self, party_id: str, party_id_type: str | None = None) -> Partner:
        return self._partners[self._registry.by_party(party_id, party_id_type).id]

    def for_country(self, country: str, *, exclude_party: str | None = None) -> list[Partner]:
        return [
            p
            for p in self._partners.values()
            if p.profile.country == country and p.profile.party_id != exclude_party
        ]

    def usable(self, partner: Partner, now: datetime) -> None:
        """Refuse a partner that is suspended or whose certificates are not valid now."""
        if not partner.profile.enabled:
            raise ProfileError(f"partner {partner.profile.id!r} is suspended (enabled: false in its profile)")
        partner.certificates.check(now=now)


def load_key_pair(private_key: Path, certificate: Path, passphrase: bytes | None, *, now: datetime) -> KeyPair:
    """Our signing and decryption key with its certificate; both must match and be valid now."""
    key = load_private_key(private_key, passphrase)
    cert = load_certificate(certificate)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_KEY_BITS:
        found = f"a {key.key_size}-bit RSA key" if isinstance(key, rsa.RSAPrivateKey) else "not an RSA key"
        raise KeyMaterialError(
            f"{private_key}: eDelivery AS4 1.15 needs an RSA private key of at least {MIN_RSA_KEY_BITS} bits; "
            f"this is {found}. Generate one with 'permit-gateway keys generate'"
        )
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise KeyMaterialError(
            f"{certificate} does not belong to the private key {private_key}: configure the matching pair"
        )
    check_certificate(cert, now=now, purpose=f"our certificate {certificate}")
    return KeyPair(private_key=key, certificate=cert)
