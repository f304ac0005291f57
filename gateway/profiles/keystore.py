"""Our own keys: a keystore folder with several keys per security suite, each current, next, previous or retired.

Layout: ``keystore.json`` (the index: id, suite, status, when added, how), and per key ``<id>.key.pem``
(PKCS#8, encrypted with the keystore passphrase, mode 0600), ``<id>.crt.pem`` and, for generated keys,
``<id>.csr.pem`` to send to the CA. An eDelivery AS4 2.0 key (EXPERIMENTAL) also has its agreement key,
``<id>.agreement.key.pem`` and ``<id>.agreement.crt.pem``, which partners encrypt for.

Each suite (``edelivery-as4-1.15``, the default and the only suite of older index files; ``edelivery-as4-2.0``;
``edelivery-as4-2.0-ecc``) has its own current, next and previous key. The current key signs; current, next and
previous all decrypt, so a partner may encrypt for the next key as soon as it is published and for the previous
one until its messages have arrived. Rollover (per suite) makes next current, current previous and previous
retired (kept on disk, no longer loaded).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair, Suite
from gateway.errors import GatewayError, KeyMaterialError
from gateway.profiles.certificates import check_certificate, fingerprint, load_certificate, load_private_key
from gateway.profiles.suitekeys import SUITE_KEYS, generate, suite_pair
from gateway.profiles.trust import load_key_pair
from gateway.profiles.watcher import fingerprint as files_fingerprint
from gateway.profiles.watcher import polling
from gateway.settings import KeySettings, SuiteKeyFiles

log = structlog.get_logger("gateway.keys")

INDEX = "keystore.json"
GENERATED_KEY_BITS = 3072
DEFAULT_VALIDITY_DAYS = 730
DEFAULT_SUITE = Suite.EDELIVERY_1_15


class KeyStatus(StrEnum):
    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"


LOADED = (KeyStatus.CURRENT, KeyStatus.NEXT, KeyStatus.PREVIOUS)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One line of the index."""

    id: str
    status: KeyStatus
    added: str
    origin: str
    suite: Suite = DEFAULT_SUITE


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """A key as ``keys list`` shows it: its record and its certificate."""

    record: KeyRecord
    certificate: x509.Certificate
    agreement_certificate: x509.Certificate | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


def _key_path(folder: Path, key_id: str) -> Path:
    return folder / f"{key_id}.key.pem"


def _cert_path(folder: Path, key_id: str) -> Path:
    return folder / f"{key_id}.crt.pem"


def _agreement_key_path(folder: Path, key_id: str) -> Path:
    return folder / f"{key_id}.agreement.key.pem"


def _agreement_cert_path(folder: Path, key_id: str) -> Path:
    return folder / f"{key_id}.agreement.crt.pem"


def read_index(folder: Path) -> list[KeyRecord]:
    path = folder / INDEX
    if not folder.is_dir():
        raise KeyMaterialError(
            f"keystore folder {folder} not found; create a key with 'permit-gateway keys generate'"
        )
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            KeyRecord(
                id=k["id"],
                status=KeyStatus(k["status"]),
                added=k["added"],
                origin=k["origin"],
                suite=Suite(k.get("suite", DEFAULT_SUITE)),
            )
            for k in data["keys"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyMaterialError(f"keystore index {path} is damaged ({exc!r}); restore it from a backup") from None


def _write_index(folder: Path, records: list[KeyRecord]) -> None:
    data = {"keys": [asdict(r) | {"status": r.status.value, "suite": r.suite.value} for r in records]}
    _write(folder / INDEX, (json.dumps(data, indent=2) + "\n").encode())


def list_keys(folder: Path) -> list[KeyInfo]:
    """Every key with its certificates; needs no passphrase."""
    return [
        KeyInfo(
            record=r,
            certificate=load_certificate(_cert_path(folder, r.id)),
            agreement_certificate=(
                None if r.suite is Suite.EDELIVERY_1_15 else load_certificate(_agreement_cert_path(folder, r.id))
            ),
        )
        for r in read_index(folder)
    ]


def _generate_hint(suite: Suite) -> str:
    option = "" if suite is DEFAULT_SUITE else f" --suite {suite.value}"
    return f"'permit-gateway keys generate{option}' or 'keys import{option}'"


class Keystore:
    """The decrypted keys in use, per suite: the current one signs; current, next and previous decrypt."""

    def __init__(self, folder: Path, pairs: dict[Suite, dict[KeyStatus, KeyPair]]) -> None:
        if not pairs:
            raise KeyMaterialError(
                f"keystore {folder} has no current key; run {_generate_hint(DEFAULT_SUITE)} "
                "(the first key becomes current), or 'keys rollover' to make the next key current"
            )
        for suite, by_status in pairs.items():
            if KeyStatus.CURRENT not in by_status:
                option = "" if suite is DEFAULT_SUITE else f" --suite {suite.value}"
                raise KeyMaterialError(
                    f"keystore {folder} has no current {suite.value} key; run 'permit-gateway keys rollover{option}' "
                    "to make the next key current"
                )
        self.folder = folder
        self._pairs = pairs

    @classmethod
    def open(cls, folder: Path, passphrase: bytes) -> Keystore:
        """Decrypt the current, next and previous keys of every suite; each must match its certificate."""
        return cls.of_records(folder, read_index(folder), passphrase)

    @classmethod
    def of_records(cls, folder: Path, records: list[KeyRecord], passphrase: bytes) -> Keystore:
        """The keystore ``records`` would make, checked as ``open`` checks it (before they are written)."""
        pairs: dict[Suite, dict[KeyStatus, KeyPair]] = {}
        for record in records:
            if record.status in LOADED:
                pairs.setdefault(record.suite, {})[record.status] = _load_pair(folder, record, passphrase)
        return cls(folder, pairs)

    @property
    def suites(self) -> tuple[Suite, ...]:
        return tuple(s for s in Suite if s in self._pairs)

    def signing_for(self, suite: Suite) -> KeyPair:
        try:
            return self._pairs[suite][KeyStatus.CURRENT]
        except KeyError:
            raise KeyMaterialError(
                f"keystore {self.folder} has no {suite.value} key; run {_generate_hint(suite)}"
            ) from None

    def decryption_for(self, suite: Suite) -> tuple[KeyPair, ...]:
        found = self._pairs.get(suite, {})
        return tuple(found[s] for s in LOADED if s in found)

    def next_for(self, suite: Suite) -> KeyPair | None:
        return self._pairs.get(suite, {}).get(KeyStatus.NEXT)

    @property
    def signing(self) -> KeyPair:
        """The current eDelivery AS4 1.15 (RSA) key."""
        return self.signing_for(DEFAULT_SUITE)

    @property
    def decryption(self) -> tuple[KeyPair, ...]:
        """The eDelivery AS4 1.15 (RSA) keys that decrypt: current, next, previous."""
        return self.decryption_for(DEFAULT_SUITE)

    @property
    def next(self) -> KeyPair | None:
        return self.next_for(DEFAULT_SUITE)

    def check(self, *, now: datetime) -> None:
        """Refuse to run with a current certificate (signing or agreement) that is not valid now."""
        for suite in self.suites:
            for purpose, certificate in _certificates(self.signing_for(suite)):
                which = "current" if suite is DEFAULT_SUITE else f"current {suite.value} {purpose}"
                check_certificate(certificate, now=now, purpose=f"our {which} certificate in {self.folder}")

    def own_certificates(self) -> list[tuple[str, x509.Certificate]]:
        """(purpose, certificate) of the keys whose expiry matters: current and next, of every suite."""
        found = []
        for suite in self.suites:
            for status in (KeyStatus.CURRENT, KeyStatus.NEXT):
                pair = self._pairs[suite].get(status)
                if pair is not None:
                    found += [(_purpose(suite, status.value, p), c) for p, c in _certificates(pair)]
        return found


def _certificates(pair: KeyPair) -> list[tuple[str, x509.Certificate]]:
    found = [("signing", pair.certificate)]
    if pair.agreement_certificate is not None:
        found.append(("agreement", pair.agreement_certificate))
    return found


def _purpose(suite: Suite, status: str, purpose: str) -> str:
    """``current`` for the 1.15 key (as before suites existed), ``current edelivery-as4-2.0 agreement`` etc."""
    return status if suite is DEFAULT_SUITE else f"{status} {suite.value} {purpose}"


def _load_pair(folder: Path, record: KeyRecord, passphrase: bytes) -> KeyPair:
    what = f"key {record.id} in {folder}"
    key = load_private_key(_key_path(folder, record.id), passphrase)
    certificate = load_certificate(_cert_path(folder, record.id))
    if record.suite is Suite.EDELIVERY_1_15:
        return suite_pair(record.suite, key, certificate, what=what)
    agreement_key = load_private_key(_agreement_key_path(folder, record.id), passphrase)
    agreement_certificate = load_certificate(_agreement_cert_path(folder, record.id))
    return suite_pair(record.suite, key, certificate, agreement_key, agreement_certificate, what=what)


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteKeys:
    """Our keys of one suite: the one that signs, and every one that decrypts (current, next, previous)."""

    signing: KeyPair
    decryption: tuple[KeyPair, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnKeys:
    """The keys a gateway uses, per eDelivery AS4 suite; from a keystore or from key/certificate files."""

    suites: Mapping[Suite, SuiteKeys]
    keystore: Keystore | None = None

    def __post_init__(self) -> None:
        if not self.suites:
            raise KeyMaterialError("the gateway has no key of any suite")

    @classmethod
    def of(cls, keystore: Keystore) -> OwnKeys:
        suites = {
            s: SuiteKeys(signing=keystore.signing_for(s), decryption=keystore.decryption_for(s))
            for s in keystore.suites
        }
        return cls(suites=suites, keystore=keystore)

    @classmethod
    def single(cls, pair: KeyPair, suite: Suite = DEFAULT_SUITE) -> OwnKeys:
        return cls(suites={suite: SuiteKeys(signing=pair, decryption=(pair,))})

    def signing_for(self, suite: Suite, *, partner: str | None = None) -> KeyPair:
        """Our signing key of ``suite``; ``KeyMaterialError`` naming the fix when we have none."""
        found = self.suites.get(suite)
        if found is None:
            whose = f"partner {partner!r} uses" if partner else "the message needs"
            fix = (
                _generate_hint(suite)
                if self.keystore is not None
                else f"set [keys.{_settings_key(suite)}] in the configuration or use a keystore"
            )
            raise KeyMaterialError(
                f"{whose} security suite {suite.value}, and this gateway has no {suite.value} key "
                f"({SUITE_KEYS[suite]}); add one: {fix}"
            )
        return found.signing

    @property
    def decryption(self) -> dict[Suite, tuple[KeyPair, ...]]:
        """Per suite, the keys that may decrypt a partner's message of that suite."""
        return {suite: keys.decryption for suite, keys in self.suites.items()}

    @property
    def default_suite(self) -> Suite:
        """The suite of answers to a sender we could not identify: 1.15 when we have it, else another."""
        return DEFAULT_SUITE if DEFAULT_SUITE in self.suites else next(iter(self.suites))

    @property
    def signing(self) -> KeyPair:
        """Our current key of ``default_suite``."""
        return self.suites[self.default_suite].signing

    def answering(self, suite: Suite | None) -> tuple[Suite, KeyPair]:
        """The suite and key that sign an answer to a partner of ``suite`` (None: not identified): that suite's
        when we hold a key of it, so the partner can verify the answer; else our default suite's."""
        chosen = suite if suite is not None and suite in self.suites else self.default_suite
        return chosen, self.suites[chosen].signing

    def own_certificates(self) -> list[tuple[str, x509.Certificate]]:
        if self.keystore is not None:
            return self.keystore.own_certificates()
        return [
            (_purpose(suite, KeyStatus.CURRENT.value, purpose), certificate)
            for suite, keys in self.suites.items()
            for purpose, certificate in _certificates(keys.signing)
        ]


_SETTINGS_KEYS = {Suite.EDELIVERY_2_0: "edelivery_2_0", Suite.EDELIVERY_2_0_ECC: "edelivery_2_0_ecc"}


def _settings_key(suite: Suite) -> str:
    return _SETTINGS_KEYS.get(suite, "keys")


def load_own_keys(settings: KeySettings, *, now: datetime) -> OwnKeys:
    """``[keys].keystore`` when set (its passphrase is required), else the ``private_key``/``certificate`` pair
    (eDelivery AS4 1.15) and the ``[keys.edelivery_2_0]`` / ``[keys.edelivery_2_0_ecc]`` files, if set."""
    if settings.keystore is not None:
        keystore = Keystore.open(settings.keystore, settings.keystore_passphrase())
        keystore.check(now=now)
        return OwnKeys.of(keystore)
    passphrase = settings.passphrase()
    pair = load_key_pair(settings.private_key, settings.certificate, passphrase, now=now)
    suites = {DEFAULT_SUITE: SuiteKeys(signing=pair, decryption=(pair,))}
    for suite, key in _SETTINGS_KEYS.items():
        files = getattr(settings, key)
        if files is not None:
            loaded = _load_suite_files(suite, files, passphrase, now=now)
            suites[suite] = SuiteKeys(signing=loaded, decryption=(loaded,))
    return OwnKeys(suites=suites)


def _load_suite_files(suite: Suite, files: SuiteKeyFiles, passphrase: bytes | None, *, now: datetime) -> KeyPair:
    pair = suite_pair(
        suite,
        load_private_key(files.private_key, passphrase),
        load_certificate(files.certificate),
        load_private_key(files.agreement_key, passphrase),
        load_certificate(files.agreement_certificate),
        what=f"[keys.{_settings_key(suite)}] {files.private_key}",
    )
    for purpose, certificate in _certificates(pair):
        check_certificate(certificate, now=now, purpose=f"our {suite.value} {purpose} certificate")
    return pair


# --- changing the keystore -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[list[KeyRecord]]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield read_index(folder)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_status(records: list[KeyRecord], wanted: KeyStatus | None, suite: Suite) -> KeyStatus:
    """Current for a suite's first key, else next; statuses are counted within the suite."""
    same = [r for r in records if r.suite is suite]
    statuses = {r.status for r in same}
    status = wanted or (KeyStatus.NEXT if KeyStatus.CURRENT in statuses else KeyStatus.CURRENT)
    if status not in (KeyStatus.CURRENT, KeyStatus.NEXT):
        raise KeyMaterialError(f"a new key can be current or next, not {status.value}")
    if status is KeyStatus.NEXT and KeyStatus.CURRENT not in statuses:
        raise KeyMaterialError(
            f"the keystore has no current {suite.value} key, so a next one would leave the suite without a key to "
            "sign with (and the keystore would no longer open); add this key as current (leave out the status)"
        )
    if status in statuses:
        holder = next(r.id for r in same if r.status is status)
        raise KeyMaterialError(
            f"the keystore has a {status.value} key already ({holder}, suite {suite.value}); "
            + (
                "run 'keys rollover' first"
                if status is KeyStatus.NEXT
                else "add the new key as next, then roll over"
            )
        )
    return status


def _store(
    folder: Path,
    records: list[KeyRecord],
    pair: KeyPair,
    passphrase: bytes,
    *,
    status: KeyStatus,
    now: datetime,
    origin: str,
    suite: Suite,
) -> KeyInfo:
    key_id = f"{pair.certificate.not_valid_before_utc:%Y%m%d}-{fingerprint(pair.certificate)[:12]}"
    if any(r.id == key_id for r in records):
        raise KeyMaterialError(f"the keystore holds this key already, as {key_id}")
    _write(_key_path(folder, key_id), _encrypted(pair.private_key, passphrase), private=True)
    _write(_cert_path(folder, key_id), pair.certificate.public_bytes(serialization.Encoding.PEM))
    if pair.agreement_key is not None and pair.agreement_certificate is not None:
        _write(_agreement_key_path(folder, key_id), _encrypted(pair.agreement_key, passphrase), private=True)
        _write(
            _agreement_cert_path(folder, key_id),
            pair.agreement_certificate.public_bytes(serialization.Encoding.PEM),
        )
    record = KeyRecord(id=key_id, status=status, added=now.isoformat(), origin=origin, suite=suite)
    _write_index(folder, [*records, record])
    log.info("key added to the keystore", key=key_id, suite=suite.value, status=status.value, origin=origin)
    return KeyInfo(record=record, certificate=pair.certificate, agreement_certificate=pair.agreement_certificate)


def _encrypted(key: object, passphrase: bytes) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def generate_key(
    folder: Path,
    passphrase: bytes,
    *,
    subject: x509.Name,
    now: datetime,
    status: KeyStatus | None = None,
    days: int = DEFAULT_VALIDITY_DAYS,
    suite: Suite = DEFAULT_SUITE,
) -> KeyInfo:
    """New keys of ``suite`` (1.15: RSA-3072) with a self-signed certificate (development) and CSRs (for the
    real CA). A 2.0 suite's agreement certificate is issued by its signing key: an X25519 key cannot sign."""
    new = generate(suite, subject, now=now, validity=timedelta(days=days), rsa_bits=GENERATED_KEY_BITS)
    with _locked(folder) as records:
        info = _store(
            folder,
            records,
            new.pair,
            passphrase,
            status=_new_status(records, status, suite),
            now=now,
            origin="generated",
            suite=suite,
        )
        for purpose, request in new.requests.items():
            name = f"{info.record.id}.csr.pem" if purpose == "signing" else f"{info.record.id}.{purpose}.csr.pem"
            _write(folder / name, request.public_bytes(serialization.Encoding.PEM))
    return info


def import_key(
    folder: Path,
    passphrase: bytes,
    *,
    key_file: Path,
    certificate_file: Path,
    key_passphrase: bytes | None,
    now: datetime,
    status: KeyStatus | None = None,
    suite: Suite = DEFAULT_SUITE,
    agreement_key_file: Path | None = None,
    agreement_certificate_file: Path | None = None,
) -> KeyInfo:
    """Add an existing key and its certificate (for a 2.0 suite also the agreement key and its certificate);
    the keys are stored encrypted with the keystore passphrase."""
    certificate = load_certificate(certificate_file)
    agreement = (
        (load_private_key(agreement_key_file, key_passphrase), load_certificate(agreement_certificate_file))
        if agreement_key_file is not None and agreement_certificate_file is not None
        else (None, None)
    )
    pair = suite_pair(
        suite,
        load_private_key(key_file, key_passphrase),
        certificate,
        *agreement,
        what=f"{key_file} with {certificate_file}",
    )
    for purpose, cert in _certificates(pair):
        if now > cert.not_valid_after_utc:
            check_certificate(cert, now=now, purpose=f"the {purpose} certificate")
    with _locked(folder) as records:
        return _store(
            folder,
            records,
            pair,
            passphrase,
            status=_new_status(records, status, suite),
            now=now,
            origin="imported",
            suite=suite,
        )


def rollover(folder: Path, passphrase: bytes, *, now: datetime, suite: Suite = DEFAULT_SUITE) -> Keystore:
    """Within ``suite``: next becomes current, current previous (still decrypts), previous retired; the other
    suites' keys stay as they are. Returns the new keystore."""
    with _locked(folder) as records:
        by_status = {r.status: r for r in records if r.status in LOADED and r.suite is suite}
        upcoming = by_status.get(KeyStatus.NEXT)
        if upcoming is None:
            option = "" if suite is DEFAULT_SUITE else f" --suite {suite.value}"
            raise KeyMaterialError(
                f"keystore {folder} has no next key for suite {suite.value}; add one with 'keys generate{option}' "
                f"or 'keys import{option}'"
            )
        pair = _load_pair(folder, upcoming, passphrase)
        for purpose, cert in _certificates(pair):
            which = "certificate" if purpose == "signing" else f"{purpose} certificate"
            check_certificate(cert, now=now, purpose=f"the next key's {which} ({upcoming.id})")
        moves = {
            KeyStatus.NEXT: KeyStatus.CURRENT,
            KeyStatus.CURRENT: KeyStatus.PREVIOUS,
            KeyStatus.PREVIOUS: KeyStatus.RETIRED,
        }
        updated = [
            dataclasses.replace(r, status=moves.get(r.status, r.status)) if r.suite is suite else r
            for r in records
        ]
        keystore = Keystore.of_records(folder, updated, passphrase)  # refused here leaves the index unchanged
        _write_index(folder, updated)
    previous = by_status.get(KeyStatus.CURRENT)
    log.info("key rollover", suite=suite.value, current=upcoming.id, previous=previous.id if previous else None)
    return keystore


def retire(folder: Path, key_id: str) -> KeyRecord:
    """Retire a key that is not current (a next key imported by mistake, a previous one no partner encrypts for
    any more): kept on disk, no longer loaded. Returns the record as it was."""
    if not (folder / INDEX).is_file():
        raise KeyMaterialError(
            f"no keystore at {folder} ([keys].keystore); 'keys generate' or 'keys import' creates one"
        )
    with _locked(folder) as records:
        found = next((r for r in records if r.id == key_id), None)
        if found is None:
            known = ", ".join(f"{r.id} ({r.status.value})" for r in records) or "none"
            raise KeyMaterialError(f"keystore {folder} has no key {key_id!r}; its keys: {known} ('keys list')")
        if found.status is KeyStatus.CURRENT:
            raise KeyMaterialError(
                f"key {key_id} is the current {found.suite.value} key, which signs what we send; add a next key "
                "and 'keys rollover' first, then retire this one once no partner encrypts for it"
            )
        if found.status is not KeyStatus.RETIRED:
            updated = [dataclasses.replace(r, status=KeyStatus.RETIRED) if r.id == key_id else r for r in records]
            _write_index(folder, updated)
            log.info("key retired", key=key_id, was=found.status.value, suite=found.suite.value)
    return found


def subject_name(party_id: str, authority_name: str, country: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, party_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority_name),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
        ]
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


# --- a running gateway follows the keystore --------------------------------------------------------------


class KeystoreWatcher:
    """Polls the keystore index; after a rollover (or a new next key) it reopens it and calls ``on_change``."""

    def __init__(
        self,
        keystore: Keystore,
        passphrase: bytes,
        *,
        on_change: Callable[[Keystore], None],
        interval: float = 5.0,
    ) -> None:
        self._keystore = keystore
        self._passphrase = passphrase
        self._on_change = on_change
        self._interval = interval
        self._seen = files_fingerprint([keystore.folder / INDEX])

    @property
    def keystore(self) -> Keystore:
        return self._keystore

    def poll(self) -> bool | None:
        """True: the new keys are in use; False: the keystore could not be opened (old keys stay); None: no change."""
        seen = files_fingerprint([self._keystore.folder / INDEX])
        if seen == self._seen:
            return None
        self._seen = seen
        try:
            keystore = Keystore.open(self._keystore.folder, self._passphrase)
        except GatewayError as exc:
            log.error("keystore change refused; the previous keys stay in use", error=str(exc))
            return False
        self._keystore = keystore
        self._on_change(keystore)
        log.info(
            "keystore reloaded",
            signing={s.value: fingerprint(keystore.signing_for(s).certificate)[:16] for s in keystore.suites},
            decryption={
                s.value: [fingerprint(k.certificate)[:16] for k in keystore.decryption_for(s)]
                for s in keystore.suites
            },
        )
        return True

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Poll in a background task while the context is open."""
        return polling(self.poll, interval=self._interval, name="keystore-watcher")
