"""``profiles check``: everything wrong with a profile folder now, and everything about to go wrong.

Errors: what a reload would refuse (every file, every field), and any enabled profile without a currently
valid certificate for a purpose (it cannot send). Warnings: certificates that expire within the warning
window, expired certificates beside a valid one, certificates not valid yet, disabled profiles, and a profile
that names ourselves (our PartyId, or pins our own certificate). Naming ourselves is a warning, not an error:
the demo and the tests run two gateways from one folder that holds both authorities' profiles. A delivery folder
the delivery refuses (inside a guarded folder other than through the inbox) is an error: a profile on disk was
never under the edit rule, and every permit received from that partner would wait, retried, until it is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from cryptography import x509

from gateway.errors import GatewayError, ProfileError
from gateway.profiles.certificates import Passphrase, fingerprint, load_certificate, no_passphrase
from gateway.profiles.expiry import Validity, certificate_statuses, revocation_list_warnings
from gateway.profiles.loader import LoadedProfiles, load_profile, load_profile_folder, profile_files
from gateway.profiles.model import PartnerProfile
from gateway.profiles.trust import Partners
from gateway.settings import INBOX_KEY, GuardedFolder, guarding, real_path

log = structlog.get_logger("gateway.profiles")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ourselves:
    """Who this gateway is ([identity], and our certificates with the setting each comes from), so that a
    profile naming us instead of a partner is pointed out."""

    party_id: str
    party_id_type: str
    certificates: tuple[tuple[str, x509.Certificate], ...] = ()
    endpoints: tuple[str, ...] = ()
    """Our own AS4 endpoint URLs (``[http]``: public_url, and http://HOST:PORT/as4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderCheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partners: Partners | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def check_folder(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime,
    warning_days: int,
    duplicate_window: timedelta | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    ourselves: Ourselves | None = None,
    guarded: Sequence[GuardedFolder] = (),
) -> FolderCheck:
    """What a reload would say of the folder; ``duplicate_window`` is ``[inbound]``'s, which every partner's
    time to live must stay under; with ``ourselves``, also a profile that names us; with ``guarded``
    (``gateway.settings.guarded_folders``), also a delivery folder the delivery would refuse."""
    try:
        loaded = load_profile_folder(
            folder,
            certificates_dir=certificates_dir,
            tls_passphrase=tls_passphrase,
            duplicate_window=duplicate_window,
        )
        partners = Partners(loaded.registry, now=now, max_age=duplicate_window)
    except GatewayError as exc:
        return FolderCheck(errors=str(exc).splitlines())
    errors: list[str] = []
    for profile_id, path in loaded.files.items():
        if loaded.registry.get(profile_id).enabled:
            try:
                load_profile(path, certificates_dir=certificates_dir, now=now, tls_passphrase=tls_passphrase)
            except ProfileError as exc:
                errors += str(exc).splitlines()
    errors += [
        f"partner {p.id!r} ({loaded.files[p.id]}): {problem}"
        for p in loaded.registry
        if (problem := delivery_folder_problem(p.delivery.folder, guarded)) is not None
    ]
    warnings = [
        status.describe()
        for status in certificate_statuses(partners, now=now, warning_days=warning_days)
        if status.validity is not Validity.VALID
    ]
    warnings += [
        f"partner {p.id!r} is disabled (enabled: false in {loaded.files[p.id]})"
        for p in loaded.registry
        if not p.enabled
    ]
    warnings += [
        f"partner {p.id!r} ({loaded.files[p.id]}): {loose}"
        for p in loaded.registry
        if (loose := p.security.subject_warning()) is not None
    ]
    warnings += revocation_list_warnings(partners, now=now)
    if ourselves is not None:
        warnings += naming_ourselves(loaded, ourselves)
    return FolderCheck(errors=errors, warnings=warnings, partners=partners)


def naming_ourselves(loaded: LoadedProfiles, ourselves: Ourselves) -> list[str]:
    """A warning for each profile whose PartyId is ours, and for each certificate field that pins one of ours."""
    found = []
    for profile in loaded.registry:
        where = f"partner {profile.id!r} ({loaded.files[profile.id]})"
        if (profile.party_id, profile.party_id_type) == (ourselves.party_id, ourselves.party_id_type):
            found.append(
                f"{where}: party_id {profile.party_id!r} is our own PartyId ([identity].party_id), and a "
                "partner profile names another authority; set party_id to the partner's PartyId, or remove the "
                "file if it is our own profile (the demo's folder holds the profiles of both its gateways)"
            )
        ours = (profile.party_id, profile.party_id_type) == (ourselves.party_id, ourselves.party_id_type)
        if not ours and is_own_endpoint(profile.endpoint, ourselves.endpoints):
            found.append(
                f"{where}: endpoint {profile.endpoint} is this gateway's own AS4 endpoint ([http] host and "
                "port, or public_url): what we send the partner would come back to us, and be refused as from an "
                "unknown partner naming our own PartyId; set endpoint to the URL the partner's administrator gives"
            )
        for name, path in _certificate_fields(profile):
            certificate = _readable(path)
            found += [
                f"{where}: security.{name} {path} is our own certificate ({setting}, SHA-256 "
                f"{fingerprint(ours)[:16]}...); name the partner's certificate there: the partner's signatures "
                "do not verify against ours, and what we encrypt for it only we could read"
                for setting, ours in ourselves.certificates
                if certificate is not None and certificate == ours
            ]
    return found


def refusing_folder(folder: Path | None, guarded: Sequence[GuardedFolder]) -> GuardedFolder | None:
    """The guarded folder that makes the delivery refuse ``folder`` (as ``FolderDelivery`` does): the deepest
    one holding it, unless that is the inbox; None for no delivery folder or one the delivery takes."""
    if folder is None:
        return None
    owner = guarding(folder, guarded)
    return None if owner is None or owner.key == INBOX_KEY else owner


def delivery_folder_problem(folder: Path | None, guarded: Sequence[GuardedFolder]) -> str | None:
    """What is wrong with a profile's ``delivery.folder`` that the delivery refuses, with the rule and the fix."""
    owner = refusing_folder(folder, guarded)
    if folder is None or owner is None:
        return None
    held = real_path(owner.path)
    place = owner.label if real_path(folder) == held else f"inside {owner.label} ({held})"
    return (
        f"delivery.folder {folder} is {place}; received permits go only to the inbox or a folder inside it, "
        "never into another of the gateway's folders (data folder, profiles, certificates, keystore, outbox, "
        "rejected), so every delivery from this partner fails and is retried until it is fixed: "
        f"{_DELIVERY_FOLDER_FIX}"
    )


_DELIVERY_FOLDER_FIX = (
    "set delivery.folder in the profile to the inbox ([folders].inbox) or a folder inside it, or leave it out "
    "(received permits then go to the inbox)"
)


def warn_refused_delivery_folders(partners: Partners, guarded: Sequence[GuardedFolder], folder: Path) -> None:
    """A warning for each profile (of the profile ``folder``) whose delivery folder the delivery refuses: one
    written on disk, where no edit rule applied, whose deliveries fail, retried, until it is fixed."""
    refused = [
        (p.profile, owner) for p in partners if (owner := refusing_folder(p.profile.delivery.folder, guarded))
    ]
    if not refused:
        return
    files = _files_of(folder)  # read only when there is something to say: the start should not pay for it
    for profile, owner in refused:
        log.warning(
            "a partner's delivery folder is inside one of the gateway's own folders, where received permits must "
            "not go: every delivery from it fails and is retried until the profile is fixed",
            partner=profile.id,
            file=str(files[profile.id]) if profile.id in files else None,
            delivery_folder=str(profile.delivery.folder),
            inside=f"{owner.label} ({real_path(owner.path)})",
            fix=_DELIVERY_FOLDER_FIX,
        )


def _files_of(folder: Path) -> Mapping[str, Path]:
    try:
        return profile_files(folder)
    except OSError:  # the folder went away since the load: the warning names no file
        return {}


_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}  # noqa: S104  # names compared, not bound


def is_own_endpoint(url: str | None, ours: tuple[str, ...]) -> bool:
    """``url`` is one of ``ours`` (scheme, port and path alike; the loopback names and the any-address one host)."""
    if url is None:
        return False
    try:
        return _endpoint_key(url) in {_endpoint_key(own) for own in ours}
    except ValueError:  # a URL urllib cannot read (a port that is no number): not known to be ours
        return False


def _endpoint_key(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, "loopback" if host in _LOOPBACK else host, port, parts.path.rstrip("/"))


def _certificate_fields(profile: PartnerProfile) -> list[tuple[str, Path]]:
    security = profile.security
    fields = [("signing_certificate", path) for path in (security.signing_certificate,) if path is not None]
    fields += [("signing_certificates", path) for path in security.signing_certificates]
    if security.encryption_certificate is not None:
        fields.append(("encryption_certificate", security.encryption_certificate))
    return fields


def _readable(path: Path) -> x509.Certificate | None:
    try:
        return load_certificate(path)
    except GatewayError:  # an unreadable certificate is reported as an error already
        return None
