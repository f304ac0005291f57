"""Hot reload: the profile folder is polled; a valid change is swapped in, an invalid file is held back.

Every ``interval`` seconds the watcher fingerprints the profile files and the certificate files the active
profiles name (modification time, size and SHA-256). When the fingerprint changes it loads the folder into a
new ``Partners``; only when that succeeds does it call ``on_reload``, which swaps the reference in each
service. A message in flight keeps the ``Partner`` it already holds, so none is lost. A file with problems of
its own is held back: its last accepted version stays active (a new file is not loaded), the log names it with
its errors, and the other files' changes take effect (``permit_gateway_profile_reload_total{result="partial"}``,
``permit_gateway_profiles_held_back``). A change that is only such files, or one that brings a conflict between
files (an id or PartyId twice), is refused: the previous set stays active, the log has every error and
``permit_gateway_profile_reload_total{result="refused"}`` counts it; it is tried again only once the files change
again. At a start, a file with problems of its own leaves its partner out (``load_at_start``), loudly, rather
than every partner.

A change is loaded only once it has stood still for ``settle`` seconds (at most 1 s, at most one interval): a
file rewritten in place and caught half-written may itself be a valid profile (its last lines missing), so a
poll that finds files changed within that time waits for the next poll, which loads them if they are unchanged.
An explicit ``reload`` (an edit through the editor) acts at once. Every reload hands the profile files it found
changed, and whether the change became active, to the ``ChangeRecorder`` (the editor's history and audit log);
at a gateway's start, ``record_start`` hands it every profile file as found, to compare with the history, so a
change made while the gateway was stopped is audited too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from types import MappingProxyType
from typing import Protocol

import structlog

from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.profiles.certificates import Passphrase, no_passphrase
from gateway.profiles.loader import HeldBack, is_profile_file, load_profile_folder
from gateway.profiles.metrics import PROFILE_LAST_REFUSAL, PROFILE_RELOADS, PROFILES_ACTIVE, PROFILES_HELD_BACK
from gateway.profiles.model import PartnerProfile
from gateway.profiles.trust import Partners

log = structlog.get_logger("gateway.profiles")

DEFAULT_INTERVAL_SECONDS = 5.0
SETTLE_SECONDS = 1.0
MAX_FILE_BYTES = 64 * 1024 * 1024  # a watched file larger than this is left out, not read whole
START_REASON = "found at start"
WAIT_IN_POLL_SECONDS = 0.05  # a poll waits this long at most for a change to settle, else the next poll takes it

Fingerprint = Mapping[str, tuple[int, int, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileChange:
    """A watched file as the watcher last loaded it and as it found it now: its SHA-256 (None: absent) and, for
    a profile file, its content (certificate files are not kept: the folder may hold keys)."""

    path: Path
    before_sha256: str | None
    after_sha256: str | None
    before: bytes | None = None
    after: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadOutcome:
    """What a reload found changed on disk (profile files, certificate files) and what became of it."""

    profiles: tuple[FileChange, ...]
    certificates: tuple[FileChange, ...]
    activated: bool
    errors: tuple[str, ...]
    reason: str
    at: datetime


class ChangeRecorder(Protocol):
    def record_reload(self, outcome: ReloadOutcome) -> None: ...

    def record_start(self, outcome: ReloadOutcome) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveProfiles:
    """The profile set in use: the partners, the file of each profile, when and why it became active, and the
    files held back for problems of their own (each profile kept at its last accepted version, or left out)."""

    partners: Partners
    files: Mapping[str, Path]
    since: datetime
    reason: str
    held_back: tuple[HeldBack, ...] = ()


def load_partners(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime,
    reason: str,
    max_age: timedelta | None = None,
    tls_passphrase: Passphrase = no_passphrase,
    keep: Mapping[Path, PartnerProfile] | None = None,
) -> ActiveProfiles:
    """Load and check a folder into a new active set, a file with problems of its own held back (``keep``: the
    last accepted profile of each file, which stays in its place); raises ``GatewayError`` naming every problem
    when files conflict or every file is held back with nothing to keep."""
    loaded = load_profile_folder(
        folder,
        certificates_dir=certificates_dir,
        tls_passphrase=tls_passphrase,
        duplicate_window=max_age,
        keep={} if keep is None else keep,
    )
    partners = Partners(loaded.registry, now=now, max_age=max_age)
    return ActiveProfiles(
        partners=partners, files=loaded.files, since=now, reason=reason, held_back=loaded.held_back
    )


HELD_BACK_FIX = (
    "correct the file as its errors say ('permit-gateway profiles check' lists them) or put its last good version "
    "back ('permit-gateway profiles history' and 'rollback'); it is loaded at the next poll once it is valid"
)


def load_at_start(
    folder: Path,
    *,
    certificates_dir: Path,
    now: datetime,
    max_age: timedelta | None = None,
    tls_passphrase: Passphrase = no_passphrase,
) -> ActiveProfiles:
    """The profiles a gateway starts with. A file with problems of its own leaves only its partner out, logged
    as an error with its errors and the fix, so that one broken file among many does not stop every partner;
    a conflict between files, or a folder whose every file is broken, still stops the start."""
    active = load_partners(
        folder,
        certificates_dir=certificates_dir,
        now=now,
        reason="start",
        max_age=max_age,
        tls_passphrase=tls_passphrase,
    )
    for held in active.held_back:
        log.error(
            "partner profile file left out at start: the gateway starts without it; until it is fixed, messages "
            "to its partner wait unsent and its partner's messages are refused as from an unknown partner",
            file=str(held.path),
            errors=list(held.errors),
            fix=HELD_BACK_FIX,
        )
    PROFILES_HELD_BACK.set(len(active.held_back))
    return active


def _errors_of(held_back: Iterable[HeldBack]) -> str | None:
    return "\n".join(line for held in held_back for line in held.errors) or None


def fingerprint(paths: Iterable[Path]) -> Fingerprint:
    """(mtime in ns, size, SHA-256) of each existing file; a missing file is simply absent."""
    return _snapshot(paths, keep=lambda _: False)[0]


def _snapshot(paths: Iterable[Path], *, keep: Callable[[Path], bool]) -> tuple[Fingerprint, Mapping[str, bytes]]:
    """The fingerprint, and the content of each file ``keep`` names, each file read once."""
    found: dict[str, tuple[int, int, str]] = {}
    contents: dict[str, bytes] = {}
    for path in paths:
        try:
            read = _read_regular(path)
        except OSError:
            continue
        if read is None:
            continue
        stat, data = read
        found[str(path)] = (stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest())
        if keep(path):
            contents[str(path)] = data
    return MappingProxyType(found), MappingProxyType(contents)


def _read_regular(path: Path) -> tuple[os.stat_result, bytes] | None:
    """A regular file's status and bytes; None (reported once) for anything else: a FIFO or a device put in
    place of a certificate would block the read, and with it every poll and edit, or never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            _left_out(path, "is not a regular file (a FIFO, a device?); replace it by the file it should be")
            return None
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        _left_out(path, f"is larger than {MAX_FILE_BYTES} bytes, far more than a profile or certificate file")
        return None
    _LEFT_OUT.discard(str(path))
    return stat, data


_LEFT_OUT: set[str] = set()  # reported once, not at every poll


def _left_out(path: Path, why: str) -> None:
    if str(path) not in _LEFT_OUT:
        _LEFT_OUT.add(str(path))
        log.warning(f"a watched file {why}; the profile watch leaves it out meanwhile", file=str(path))


def _sha256(fingerprint: Fingerprint, path: str) -> str | None:
    found = fingerprint.get(path)
    return None if found is None else found[2]


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
        recorder: ChangeRecorder | None = None,
    ) -> None:
        self._folder = folder
        self._tls_passphrase = tls_passphrase
        self._certificates_dir = certificates_dir
        self._clock = clock
        self._on_reload = on_reload
        self._interval = interval
        self._lock = threading.RLock()  # poll and reload run in worker threads, an admin edit's reload too
        self._active = active or load_at_start(
            folder, certificates_dir=certificates_dir, now=clock.now(), tls_passphrase=tls_passphrase
        )
        # a file held back at start makes the watch look at the certificates folder too, as a refusal does
        self._last_error: str | None = _errors_of(self._active.held_back)
        self._seen, self._contents = self._snapshot()
        self._loaded = self._seen  # the files as the last load found them, to tell what the next one changes
        self._pending: Fingerprint | None = None
        self._settle = min(SETTLE_SECONDS, interval)
        self._recorder = recorder
        self._boundary_tried: datetime | None = None
        PROFILES_ACTIVE.set(len(self._active.partners))
        PROFILES_HELD_BACK.set(len(self._active.held_back))

    def record_with(self, recorder: ChangeRecorder) -> None:
        """Hand each change found on disk to ``recorder`` (the editor: its history and audit log)."""
        self._recorder = recorder

    def record_start(self) -> None:
        """Hand the recorder every profile file as this watcher's baseline holds it (what the gateway started
        with), each as a change from nothing: the recorder compares them with its history, and records what
        differs as it records a change found while running."""
        with self._lock:
            if self._recorder is None:
                return
            profiles = tuple(
                FileChange(
                    path=Path(path),
                    before_sha256=None,
                    after_sha256=_sha256(self._loaded, path),
                    after=content,
                )
                for path, content in sorted(self._contents.items())
            )
            at = self._clock.now()
            outcome = ReloadOutcome(
                profiles=profiles, certificates=(), activated=True, errors=(), reason=START_REASON, at=at
            )
            try:
                # a file held back goes first as refused: it is then that file's latest version, not an active one
                for held, change in self._held_back_changes(profiles):
                    self._recorder.record_reload(
                        ReloadOutcome(
                            profiles=(change,),
                            certificates=(),
                            activated=False,
                            errors=held.errors,
                            reason=START_REASON,
                            at=at,
                        )
                    )
                self._recorder.record_start(outcome)
            except Exception:  # the profiles are in use whatever the audit log says: the start goes on
                log.exception("the profiles found at start could not be compared with their history")

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
        """The errors of the last refused change, or of the files the active set holds back, until a change is
        accepted whole."""
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

    def _is_profile(self, path: Path) -> bool:
        return path.parent == self._folder and is_profile_file(path)

    def _snapshot(self) -> tuple[Fingerprint, Mapping[str, bytes]]:
        return _snapshot(self._watched_files(), keep=self._is_profile)

    def poll(self) -> bool | None:
        """Reload when the files changed (and have settled) or a certificate's validity began or ended: True if
        a new set is now active, False if the change was refused, None if there was nothing to do (yet)."""
        with self._lock:
            seen = self._fingerprint()
            if seen != self._seen:
                if not self._settled(seen):
                    return None
                return self.reload("profile files changed", found_on_disk=True)
            changes_at = self._active.partners.changes_at
            if changes_at is not None and changes_at != self._boundary_tried and self._clock.now() >= changes_at:
                self._boundary_tried = changes_at
                return self.reload(f"a certificate became valid or expired at {changes_at:%Y-%m-%d %H:%M} UTC")
            return None

    def _settled(self, seen: Fingerprint) -> bool:
        """True once the change ``seen`` has stood still for the settle time: unchanged since the previous poll,
        or its newest file older than the settle time (waited for here when that is only a moment)."""
        if seen == self._pending:
            return True
        self._pending = seen
        wait = self._settle - (time.time() - self._newest_change(seen))
        if wait <= 0:
            return True
        if wait > WAIT_IN_POLL_SECONDS:
            return False
        time.sleep(wait)
        now = self._fingerprint()
        self._pending = now
        return now == seen

    def _newest_change(self, seen: Fingerprint) -> float:
        """When the newest change of ``seen`` was made (a file's mtime; the folder's for a file removed)."""
        changed = [value[0] for path, value in seen.items() if self._seen.get(path) != value]
        with contextlib.suppress(OSError):
            changed.append(self._folder.stat().st_mtime_ns)
        return max(changed, default=0) / 1e9

    def reload(self, reason: str, *, found_on_disk: bool = False) -> bool:
        """Load the folder now; swap it in when valid, else keep the active set and report the refusal.

        ``found_on_disk`` (a change the poll found, not an edit through the editor): a folder that has lost
        every profile is refused rather than dropping every partner."""
        with self._lock:
            self._pending = None
            # what is loaded is at least this new: a write during the load is seen at the next poll
            before, contents = self._snapshot()
            now = self._clock.now()
            try:
                active = load_partners(
                    self._folder,
                    certificates_dir=self._certificates_dir,
                    now=now,
                    reason=reason,
                    max_age=self._active.partners.max_age,  # the duplicate window stays as started
                    tls_passphrase=self._tls_passphrase,
                    keep=self.last_accepted(),
                )
                if found_on_disk and not active.partners and self._active.partners:
                    raise GatewayError(
                        f"{self._folder} holds no partner profile any more (a deployment half done?); every "
                        f"partner would be dropped and their queued messages fail. Retire partners with "
                        "'permit-gateway profiles' or the admin API instead, or restart the gateway to start empty"
                    )
                if active.held_back and self._only_held_back_changed(before, contents, active.held_back):
                    PROFILES_HELD_BACK.set(len(active.held_back))
                    raise GatewayError(_errors_of(active.held_back) or "")  # nothing else to take effect
            except GatewayError as exc:
                self._refused(str(exc), reason, now)
                self._record(before, contents, activated=False, errors=str(exc), reason=reason, now=now)
                self._seen = self._loaded_since(before)
                return False
            self._activate(active)
            self._record(
                before, contents, activated=True, errors="", reason=reason, now=now, held_back=active.held_back
            )
            self._seen = self._loaded_since(before)
            return True

    def last_accepted(self) -> dict[Path, PartnerProfile]:
        """The profile each file holds in the active set: what a file held back keeps."""
        registry = self._active.partners.registry
        return {path: registry.get(pid) for pid, path in self._active.files.items() if pid in registry}

    def _only_held_back_changed(
        self, found: Fingerprint, contents: Mapping[str, bytes], held_back: Iterable[HeldBack]
    ) -> bool:
        """True when files changed since the last load and every one is a profile file held back: the new set
        would be the active one, so the change is refused as a whole, as it always was. A reload with nothing
        changed on disk (a certificate's validity began or ended) goes ahead."""
        profiles, certificates = self._changes(found, contents)
        held = {held.path for held in held_back}
        return bool(profiles) and not certificates and all(change.path in held for change in profiles)

    def _held_back_changes(self, changes: Iterable[FileChange]) -> list[tuple[HeldBack, FileChange]]:
        held = {held.path: held for held in self._active.held_back}
        return [(held[change.path], change) for change in changes if change.path in held]

    def _changes(
        self, found: Fingerprint, contents: Mapping[str, bytes]
    ) -> tuple[tuple[FileChange, ...], tuple[FileChange, ...]]:
        """The profile files and the certificate files changed since the last load."""
        loaded, before = self._loaded, self._contents
        profiles = tuple(
            FileChange(
                path=Path(path),
                before_sha256=_sha256(loaded, path),
                after_sha256=_sha256(found, path),
                before=before.get(path),
                after=contents.get(path),
            )
            for path in sorted({*before, *contents})
            if before.get(path) != contents.get(path)
        )
        # a certificate watched only now (named for the first time, or after a refusal) or no longer (no
        # profile names it) is no change: only one changed, or removed, while watched is
        certificates = tuple(
            FileChange(path=Path(path), before_sha256=_sha256(loaded, path), after_sha256=_sha256(found, path))
            for path in sorted(loaded)
            if not self._is_profile(Path(path))
            and _sha256(loaded, path) != _sha256(found, path)
            and (path in found or not Path(path).exists())
        )
        return profiles, certificates

    def _record(
        self,
        found: Fingerprint,
        contents: Mapping[str, bytes],
        *,
        activated: bool,
        errors: str,
        reason: str,
        now: datetime,
        held_back: tuple[HeldBack, ...] = (),
    ) -> None:
        """Hand the files changed since the last load to the recorder; an edit the editor made is among them
        (the editor knows its own and skips them), a change made by hand as well. In a set that became active,
        a file held back is handed on its own, as refused with its errors."""
        profiles, certificates = self._changes(found, contents)
        self._loaded, self._contents = found, contents
        if self._recorder is None or not (profiles or certificates):
            return
        held = {item.path: item for item in held_back} if activated else {}
        outcomes = [
            ReloadOutcome(
                profiles=tuple(change for change in profiles if change.path not in held),
                certificates=certificates,
                activated=activated,
                errors=tuple(errors.splitlines()),
                reason=reason,
                at=now,
            )
        ]
        outcomes += [
            ReloadOutcome(
                profiles=(change,),
                certificates=(),
                activated=False,
                errors=held[change.path].errors,
                reason=reason,
                at=now,
            )
            for change in profiles
            if change.path in held
        ]
        for outcome in outcomes:
            if not (outcome.profiles or outcome.certificates):
                continue
            try:
                self._recorder.record_reload(outcome)
            except Exception:  # the change is in force (or refused) whatever the audit log says: it must not stop
                log.exception("a profile change could not be recorded in the history and audit log", reason=reason)

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
        previous = self._active.partners.registry
        before = set(self._active.files)
        self._active = active
        self._last_error = _errors_of(active.held_back)
        self._on_reload(active.partners)
        PROFILE_RELOADS.labels(result="partial" if active.held_back else "ok").inc()
        PROFILES_ACTIVE.set(len(active.partners))
        PROFILES_HELD_BACK.set(len(active.held_back))
        if active.held_back:
            PROFILE_LAST_REFUSAL.set(active.since.timestamp())
        for held in active.held_back:
            kept = "its last accepted version stays active" if held.kept else "it is not loaded (a new file)"
            log.error(
                f"partner profile file held back: {kept}; the other files' changes took effect",
                file=str(held.path),
                profile=held.kept,
                errors=list(held.errors),
                fix=HELD_BACK_FIX,
            )
        log.info(
            "partner profiles reloaded",
            reason=active.reason,
            partners=len(active.partners),
            added=sorted(set(active.files) - before),
            removed=sorted(before - set(active.files)),
            changed=sorted(p.id for p in active.partners.registry if p.id in previous and previous.get(p.id) != p),
            held_back=[str(held.path) for held in active.held_back],
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
