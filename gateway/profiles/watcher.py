"""Hot reload: the profile folder is polled; a valid change is swapped in whole, an invalid one is refused.

Every ``interval`` seconds the watcher fingerprints the profile files and the certificate files the active
profiles name (modification time, size and SHA-256). When the fingerprint changes it loads the whole folder
into a new ``Partners``; only when that succeeds does it call ``on_reload``, which swaps the reference in each
service. A message in flight keeps the ``Partner`` it already holds, so none is lost. A refused change
leaves the previous set active, is logged with every error and counted in
``permit_gateway_profile_reload_total{result="refused"}``; it is tried again only once the files change again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import structlog

from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.profiles.certificates import Passphrase, no_passphrase
from gateway.profiles.loader import is_profile_file, load_profile_folder
from gateway.profiles.metrics import PROFILE_LAST_REFUSAL, PROFILE_RELOADS, PROFILES_ACTIVE
from gateway.profiles.trust import Partners

log = structlog.get_logger("gateway.profiles")

DEFAULT_INTERVAL_SECONDS = 5.0

Fingerprint = Mapping[str, tuple[int, int, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveProfiles:
    """The profile set in use: the partners, the file of each profile, when and why it became active."""

    partners: Partners
    files: Mapping[str, Path]
    since: datetime
    reason: str


def load_partners(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime,
    reason: str,
    max_age: timedelta | None = None,
    tls_passphrase: Passphrase = no_passphrase,
) -> ActiveProfiles:
    """Load and check a whole folder into a new active set; raises ``GatewayError`` naming every problem."""
    loaded = load_profile_folder(folder, certificates_dir=certificates_dir, tls_passphrase=tls_passphrase)
    partners = Partners(loaded.registry, now=now, max_age=max_age)
    return ActiveProfiles(partners=partners, files=loaded.files, since=now, reason=reason)


def fingerprint(paths: Iterable[Path]) -> Fingerprint:
    """(mtime in ns, size, SHA-256) of each existing file; a missing file is simply absent."""
    found: dict[str, tuple[int, int, str]] = {}
    for path in paths:
        try:
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        found[str(path)] = (stat.st_mtime_ns, stat.st_size, digest)
    return MappingProxyType(found)


class ProfileWatcher:
    """Polls a profile folder and swaps a new ``Partners`` in through ``on_reload`` when a change is valid."""

    def __init__(
        self,
        folder: Path,
        *,
        certificates_dir: Path,
        clock: Clock,
        on_reload: Callable[[Partners], None],
        active: ActiveProfiles | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        tls_passphrase: Passphrase = no_passphrase,
    ) -> None:
        self._folder = folder
        self._tls_passphrase = tls_passphrase
        self._certificates_dir = certificates_dir
        self._clock = clock
        self._on_reload = on_reload
        self._interval = interval
        self._lock = threading.RLock()  # poll and reload run in worker threads, an admin edit's reload too
        self._active = active or load_partners(
            folder,
            certificates_dir=certificates_dir,
            now=clock.now(),
            reason="start",
            tls_passphrase=tls_passphrase,
        )
        self._last_error: str | None = None
        self._seen = self._fingerprint()
        self._boundary_tried: datetime | None = None
        PROFILES_ACTIVE.set(len(self._active.partners))

    @property
    def active(self) -> ActiveProfiles:
        return self._active

    @property
    def partners(self) -> Partners:
        return self._active.partners

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def last_error(self) -> str | None:
        """The errors of the last refused change, until a change is accepted."""
        return self._last_error

    def _watched_files(self) -> list[Path]:
        files: set[Path] = set()
        with contextlib.suppress(OSError):
            files |= {path for path in self._folder.iterdir() if is_profile_file(path)}
        for partner in self._active.partners:
            security, tls = partner.profile.security, partner.profile.tls
            named = (
                *security.pinned_certificates,
                *security.encryption_candidates,
                security.trust_anchor,
                security.revocation_list,
            )
            files |= {
                path
                for path in (*named, tls.ca_bundle, tls.client_certificate, tls.client_key)
                if path is not None
            }
        if self._last_error is not None:  # a refused set may wait for a certificate no active profile names
            with contextlib.suppress(OSError):
                files |= {path for path in self._certificates_dir.iterdir() if path.is_file()}
        return sorted(files)

    def _fingerprint(self) -> Fingerprint:
        return fingerprint(self._watched_files())

    def poll(self) -> bool | None:
        """Reload when the files changed or a certificate's validity began or ended: True if a new set is now
        active, False if the change was refused, None if there was nothing to do."""
        with self._lock:
            seen = self._fingerprint()
            if seen != self._seen:
                self._seen = seen
                return self.reload("profile files changed", found_on_disk=True)
            changes_at = self._active.partners.changes_at
            if changes_at is not None and changes_at != self._boundary_tried and self._clock.now() >= changes_at:
                self._boundary_tried = changes_at
                return self.reload(f"a certificate became valid or expired at {changes_at:%Y-%m-%d %H:%M} UTC")
            return None

    def reload(self, reason: str, *, found_on_disk: bool = False) -> bool:
        """Load the folder now; swap it in when valid, else keep the active set and report the refusal.

        ``found_on_disk`` (a change the poll found, not an edit through the editor): a folder that has lost
        every profile is refused rather than dropping every partner."""
        with self._lock:
            before = self._fingerprint()  # what is loaded is at least this new: a write during the load is seen
            now = self._clock.now()
            try:
                active = load_partners(
                    self._folder,
                    certificates_dir=self._certificates_dir,
                    now=now,
                    reason=reason,
                    max_age=self._active.partners.max_age,  # the duplicate window stays as started
                    tls_passphrase=self._tls_passphrase,
                )
                if found_on_disk and not active.partners and self._active.partners:
                    raise GatewayError(
                        f"{self._folder} holds no partner profile any more (a deployment half done?); every "
                        f"partner would be dropped and their queued messages fail. Retire partners with "
                        "'permit-gateway profiles' or the admin API instead, or restart the gateway to start empty"
                    )
            except GatewayError as exc:
                self._refused(str(exc), reason, now)
                self._seen = self._loaded_since(before)
                return False
            self._activate(active)
            self._seen = self._loaded_since(before)
            return True

    def _loaded_since(self, before: Fingerprint) -> Fingerprint:
        """What a load that began at ``before`` saw: files watched only now (a certificate a profile names for
        the first time, the certificates folder after a refusal) as they are, any other file as it was at
        ``before``, so that one written or a profile removed while loading differs at the next poll."""
        after = self._fingerprint()
        kept = {path: before.get(path, value) for path, value in after.items()}
        gone = {
            path: value
            for path, value in before.items()
            if path not in after and Path(path).parent == self._folder
        }
        return MappingProxyType(kept | gone)

    def _activate(self, active: ActiveProfiles) -> None:
        before = set(self._active.files)
        self._active = active
        self._last_error = None
        self._on_reload(active.partners)
        PROFILE_RELOADS.labels(result="ok").inc()
        PROFILES_ACTIVE.set(len(active.partners))
        log.info(
            "partner profiles reloaded",
            reason=active.reason,
            partners=len(active.partners),
            added=sorted(set(active.files) - before),
            removed=sorted(before - set(active.files)),
        )

    def _refused(self, error: str, reason: str, now: datetime) -> None:
        self._last_error = error
        PROFILE_RELOADS.labels(result="refused").inc()
        PROFILE_LAST_REFUSAL.set(now.timestamp())
        log.error(
            "partner profile change refused; the previous profiles stay active",
            reason=reason,
            errors=error.splitlines(),
            active_since=self._active.since.isoformat(),
        )

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Poll in a background task while the context is open."""
        return polling(self.poll, interval=self._interval, name="profile-watcher")


async def _poll_forever(poll: Callable[[], object], *, interval: float, name: str) -> None:
    """Each poll runs in a worker thread: hashing the files and loading a changed folder (YAML, certificates)
    take long enough with many partners to stall the AS4 endpoint if they ran on the event loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(poll)
        except Exception:
            log.exception("poll failed; polling continues", task=name)


@contextlib.asynccontextmanager
async def polling(poll: Callable[[], object], *, interval: float, name: str) -> AsyncIterator[None]:
    """Call ``poll`` every ``interval`` seconds in a background task while the context is open."""
    task = asyncio.create_task(_poll_forever(poll, interval=interval, name=name), name=name)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
