"""Certificate expiry: which certificates, ours and the partners', expire soon or have expired.

``check_expiry`` runs at start and daily (node.py): it logs a warning N days ahead, an error once expired,
and sets ``permit_gateway_certificate_expiry_days{owner,purpose,subject}``. An expired certificate is
refused for new messages by ``Partners.usable`` and the keystore, not here; this only warns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from cryptography import x509

from gateway.profiles.certificates import days_to_expiry, fingerprint
from gateway.profiles.metrics import CERTIFICATE_EXPIRY_DAYS
from gateway.profiles.trust import Partners

log = structlog.get_logger("gateway.certificates")
CRL_WARNING = timedelta(days=1)
"""How long before its nextUpdate a revocation list is reported: CAs publish a new one every few days."""

DEFAULT_WARNING_DAYS = 60
OWN = "self"


class Validity(StrEnum):
    VALID = "valid"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateStatus:
    """One certificate as the expiry check saw it; ``owner`` is a partner id or ``self``."""

    owner: str
    purpose: str
    subject: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    days_left: int
    validity: Validity

    def describe(self) -> str:
        what = f"{self._whose()} ({self.subject}, SHA-256 {self.fingerprint[:16]}...)"
        match self.validity:
            case Validity.EXPIRED:
                return f"{what} expired on {self.not_after:%Y-%m-%d}; replace it"
            case Validity.NOT_YET_VALID:
                return f"{what} is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC"
            case Validity.EXPIRING:
                return f"{what} expires in {self.days_left} days, on {self.not_after:%Y-%m-%d}; renew it now"
        return f"{what} is valid until {self.not_after:%Y-%m-%d}"

    def _whose(self) -> str:
        if self.owner == OWN:
            return f"our {self.purpose} certificate"
        if self.purpose == "tls-client":  # ours, named in the partner's profile
            return f"our TLS client certificate for partner {self.owner!r} (tls.client_certificate)"
        if self.purpose == "tls-ca":
            return f"the TLS CA certificate in partner {self.owner!r}'s tls.ca_bundle"
        return f"partner {self.owner!r} {self.purpose} certificate"


OwnCertificate = tuple[str, x509.Certificate]


def certificate_status(
    owner: str, purpose: str, cert: x509.Certificate, *, now: datetime, warning_days: int
) -> CertificateStatus:
    days = days_to_expiry(cert, now=now)
    if now > cert.not_valid_after_utc:
        validity = Validity.EXPIRED
    elif now < cert.not_valid_before_utc:
        validity = Validity.NOT_YET_VALID
    elif days < warning_days:
        validity = Validity.EXPIRING
    else:
        validity = Validity.VALID
    return CertificateStatus(
        owner=owner,
        purpose=purpose,
        subject=cert.subject.rfc4514_string(),
        fingerprint=fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=days,
        validity=validity,
    )


def certificate_statuses(
    partners: Partners, own: Iterable[OwnCertificate] = (), *, now: datetime, warning_days: int
) -> list[CertificateStatus]:
    """Every certificate in use: ours (``(purpose, certificate)`` pairs), then each partner's, with the TLS
    client certificate and the ca_bundle its profile names."""
    found = [certificate_status(OWN, purpose, cert, now=now, warning_days=warning_days) for purpose, cert in own]
    for partner in partners:
        for purpose, cert in partner.certificates.every():
            found.append(certificate_status(partner.profile.id, purpose, cert, now=now, warning_days=warning_days))
    return found


def check_expiry(
    partners: Partners, own: Iterable[OwnCertificate] = (), *, now: datetime, warning_days: int
) -> list[CertificateStatus]:
    """Log every certificate that needs attention and publish the days left of all of them as a metric."""
    statuses = certificate_statuses(partners, own, now=now, warning_days=warning_days)
    CERTIFICATE_EXPIRY_DAYS.clear()
    for (owner, purpose, subject), days_left in _days_shown(statuses).items():
        CERTIFICATE_EXPIRY_DAYS.labels(owner=owner, purpose=purpose, subject=subject).set(days_left)
    for status in statuses:
        _log(status)
    for warning in revocation_list_warnings(partners, now=now):
        log.warning(warning)
    return statuses


def _days_shown(statuses: Iterable[CertificateStatus]) -> dict[tuple[str, str, str], int]:
    """The days left per metric series: a renewed certificate keeps its subject, so several may share one. The
    soonest expiry among those valid now, since the renewal (not valid yet) or the expired one (logged as an
    error) beside it must not hide that the one in use runs out; without any valid now, the soonest of all."""
    in_use: dict[tuple[str, str, str], int] = {}
    other: dict[tuple[str, str, str], int] = {}
    for status in statuses:
        key = (status.owner, status.purpose, status.subject)
        found = in_use if status.validity in (Validity.VALID, Validity.EXPIRING) else other
        found[key] = min(found.get(key, status.days_left), status.days_left)
    return other | in_use


def revocation_list_warnings(partners: Partners, *, now: datetime) -> list[str]:
    """A partner's revocation list due for renewal within ``CRL_WARNING``, or past it (then its CA's
    certificates are refused)."""
    found = []
    for partner in partners:
        crl = partner.certificates.revocation_list
        due = crl.next_update_utc if crl is not None else None
        if due is None or due - now > CRL_WARNING:
            continue
        state = "was due" if due < now else "is due"
        found.append(
            f"partner {partner.profile.id!r}: the revocation list {partner.profile.security.revocation_list} {state} "
            f"for renewal at {due:%Y-%m-%dT%H:%M:%SZ}; replace it with the CA's current list (past that time "
            "every certificate of its CA is refused)"
        )
    return found


def _log(status: CertificateStatus) -> None:
    fields = {"owner": status.owner, "purpose": status.purpose, "subject": status.subject}
    if status.validity is Validity.EXPIRED:
        log.error(status.describe(), days_left=status.days_left, **fields)
    elif status.validity is not Validity.VALID:
        log.warning(status.describe(), days_left=status.days_left, **fields)
