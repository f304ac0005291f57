"""``profiles check``: everything wrong with a profile folder now, and everything about to go wrong.

Errors: what a reload would refuse (every file, every field), and any enabled profile without a currently
valid certificate for a purpose (it cannot send). Warnings: certificates that expire within the warning
window, expired certificates beside a valid one, certificates not valid yet, disabled profiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gateway.errors import GatewayError, ProfileError
from gateway.profiles.certificates import Passphrase, no_passphrase
from gateway.profiles.expiry import Validity, certificate_statuses, revocation_list_warnings
from gateway.profiles.loader import load_profile, load_profile_folder
from gateway.profiles.trust import Partners


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
) -> FolderCheck:
    """What a reload would say of the folder; ``duplicate_window`` is ``[inbound]``'s, which every partner's
    time to live must stay under."""
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
    return FolderCheck(errors=errors, warnings=warnings, partners=partners)
