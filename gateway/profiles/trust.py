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
    """Load a profile's certificates and derive its security policy (encrypting for the certificate valid at
    ``now``).

    ``max_age`` is the duplicate-detection window: a message older than it is refused (EBMS:0003), since it
    could no longer be recognized as a duplicate. A profile whose time to live, with the clock skew and the
    transit margin, is not below it is refused here (start, hot reload and every edit), so a retry within its
    time to live is never refused for its age.
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


CLOCK_SKEW = timedelta(minutes=5)
"""How far a partner's clock may run ahead of ours: its eb:Timestamps up to this far in our future are accepted."""

TRANSIT_MARGIN = timedelta(minutes=5)
"""Time a last attempt may take from the sender's time-to-live check to the receiver's clock check: more than
the dispatcher's lease ([outbound].lease_seconds, 2 minutes by default), within which an attempt is sent."""


def check_time_to_live(profile: PartnerProfile, duplicate_window: timedelta) -> None:
    """Refuse a time to live that leaves no room below the duplicate window (``time_to_live_problem``)."""
    problem = time_to_live_problem(profile.reception_awareness.time_to_live_hours, duplicate_window)
    if problem is not None:
        raise ConfigError(f"partner {profile.id!r}: reception_awareness.{problem}")


def time_to_live_problem(ttl_hours: float, duplicate_window: timedelta) -> str | None:
    """Why ``ttl_hours`` is too long for ``duplicate_window``, or None.

    A last retry is sent up to the time to live after its eb:Timestamp, arrives up to ``TRANSIT_MARGIN``
    later, at a receiver whose clock may run up to ``CLOCK_SKEW`` ahead; all of that must stay below the
    window, or the receiver refuses the retry as too old (EBMS:0003) instead of recognizing it as a duplicate.
    """
    window_hours = duplicate_window.total_seconds() / 3600
    room_hours = (CLOCK_SKEW + TRANSIT_MARGIN).total_seconds() / 3600
    if ttl_hours + room_hours < window_hours:  # in hours: a time to live beyond timedelta's range is refused too
        return None
    return (
        f"time_to_live_hours = {ttl_hours:g} is not below [inbound].duplicate_window_hours = {window_hours:g} "
        f"less the clock skew a receiver allows ({_minutes(CLOCK_SKEW)}) and the transit margin of a last attempt "
        f"({_minutes(TRANSIT_MARGIN)}); a retry late in its time to live could no longer be recognized as a "
        f"duplicate. Lower time_to_live_hours below {window_hours - room_hours:g} or raise "
        f"duplicate_window_hours above {ttl_hours + room_hours:g}"
    )


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} min"


def security_policy(
    certificates: PartnerCertificates,
    *,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    suite: SecuritySuite = SecuritySuite.EDELIVERY_AS4_1_15,
    max_payload_bytes: int | None = None,
) -> SecurityPolicy:
    """The AS4 policy: every signing certificate of the profile pinned, the trust anchor, and the most payload
    bytes a message may carry (the profile's ``max_payload_bytes``).

    All are pinned, whatever their validity when the policy is built: each message checks the validity of its
    certificate at its own time, so a certificate that becomes valid during a rollover is trusted from that
    moment, not from the next reload, and one that is not valid is refused naming its validity
    (``Partners.usable`` refuses a partner without a valid one for sending first). A profile
    with ``trust_anchor`` also trusts certificates the anchor issued whose subject fully matches ``subject``.
    The encryption certificate is known too: a signature may name it by SubjectKeyIdentifier or IssuerSerial
    without carrying it (eDelivery AS4 1.15 signs with the key it decrypts with; Domibus sends no token), and
    it is then trusted only as the pinned certificates or the anchor would trust it.
    """
    del now  # validity is checked per message, at its time (wss.trust_certificate), not when this is built
    pinned = certificates.signing
    anchor = certificates.trust_anchor
    return SecurityPolicy.for_suite(
        Suite(suite.value),
        signing_certificates=pinned,
        known_certificates=() if certificates.encryption in pinned else (certificates.encryption,),
        trust_anchors=() if anchor is None else (anchor,),
        subject_pattern=None if anchor is None else certificates.subject,
        revocation_lists=() if certificates.revocation_list is None else (certificates.revocation_list,),
        clock_skew=CLOCK_SKEW,
        max_age=max_age,
        max_payload_bytes=max_payload_bytes,
    )


class Partners:
    """The partners we exchange with, their certificates loaded once per registry.

    Immutable: a reload builds a new ``Partners`` and swaps it in whole. ``changes_at`` is the next moment a
    certificate becomes valid or expires, after which a rebuild chooses the encryption certificate again.
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
