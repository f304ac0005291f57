"""Our own keys: a keystore folder with several keys, each current, next, previous or retired.

Layout: ``keystore.json`` (the index: id, status, when added, how), and per key ``<id>.key.pem`` (PKCS#8,
encrypted with the keystore passphrase, mode 0600), ``<id>.crt.pem`` and, for generated keys, ``<id>.csr.pem``
to send to the CA. The current key signs; current, next and previous all decrypt, so a partner may encrypt for
the next key as soon as it is published and for the previous one until its messages have arrived. Rollover
makes next current, current previous and previous retired (kept on disk, no longer loaded).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair
from gateway.errors import GatewayError, KeyMaterialError
from gateway.profiles.certificates import (
    MIN_RSA_KEY_BITS,
    check_certificate,
    fingerprint,
    load_certificate,
    load_private_key,
)
from gateway.profiles.trust import load_key_pair
from gateway.profiles.watcher import fingerprint as files_fingerprint
from gateway.profiles.watcher import polling
from gateway.settings import KeySettings

log = structlog.get_logger("gateway.keys")

INDEX = "keystore.json"
GENERATED_KEY_BITS = 3072
DEFAULT_VALIDITY_DAYS = 730
BACKDATE = timedelta(hours=1)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """A key as ``keys list`` shows it: its record and its certificate."""

    record: KeyRecord
    certificate: x509.Certificate

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
            KeyRecord(id=k["id"], status=KeyStatus(k["status"]), added=k["added"], origin=k["origin"])
            for k in data["keys"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyMaterialError(f"keystore index {path} is damaged ({exc!r}); restore it from a backup") from None


def _write_index(folder: Path, records: list[KeyRecord]) -> None:
    data = {"keys": [asdict(r) | {"status": r.status.value} for r in records]}
    _write(folder / INDEX, (json.dumps(data, indent=2) + "\n").encode())


def list_keys(folder: Path) -> list[KeyInfo]:
    """Every key with its certificate; needs no passphrase."""
    return [KeyInfo(record=r, certificate=load_certificate(_cert_path(folder, r.id))) for r in read_index(folder)]


class Keystore:
    """The decrypted keys in use: ``signing`` (current) and ``decryption`` (current, next, previous)."""

    def __init__(self, folder: Path, pairs: dict[KeyStatus, KeyPair]) -> None:
        if KeyStatus.CURRENT not in pairs:
            raise KeyMaterialError(
                f"keystore {folder} has no current key; run 'permit-gateway keys generate' or 'keys import' "
                "(the first key becomes current), or 'keys rollover' to make the next key current"
            )
        self.folder = folder
        self._pairs = pairs

    @classmethod
    def open(cls, folder: Path, passphrase: bytes) -> Keystore:
        """Decrypt the current, next and previous keys; each must match its certificate."""
        pairs = {
            record.status: _load_pair(folder, record.id, passphrase)
            for record in read_index(folder)
            if record.status in LOADED
        }
        return cls(folder, pairs)

    @property
    def signing(self) -> KeyPair:
        return self._pairs[KeyStatus.CURRENT]

    @property
    def decryption(self) -> tuple[KeyPair, ...]:
        return tuple(self._pairs[s] for s in LOADED if s in self._pairs)

    @property
    def next(self) -> KeyPair | None:
        return self._pairs.get(KeyStatus.NEXT)

    def check(self, *, now: datetime) -> None:
        """Refuse to run with a current certificate that is not valid now."""
        check_certificate(self.signing.certificate, now=now, purpose=f"our current certificate in {self.folder}")

    def own_certificates(self) -> list[tuple[str, x509.Certificate]]:
        """(purpose, certificate) of the keys whose expiry matters: current and next."""
        return [
            (s.value, self._pairs[s].certificate) for s in (KeyStatus.CURRENT, KeyStatus.NEXT) if s in self._pairs
        ]


def _load_pair(folder: Path, key_id: str, passphrase: bytes) -> KeyPair:
    key = load_private_key(_key_path(folder, key_id), passphrase)
    certificate = load_certificate(_cert_path(folder, key_id))
    return _pair(key, certificate, what=f"key {key_id} in {folder}")


def _pair(key: object, certificate: x509.Certificate, *, what: str) -> KeyPair:
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_KEY_BITS:
        raise KeyMaterialError(f"{what}: eDelivery AS4 1.15 needs an RSA key of at least {MIN_RSA_KEY_BITS} bits")
    if key.public_key() != certificate.public_key():
        raise KeyMaterialError(f"{what}: the certificate does not belong to the private key")
    return KeyPair(private_key=key, certificate=certificate)


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnKeys:
    """The keys a gateway uses: one signs, several decrypt; from a keystore or a key/certificate file pair."""

    signing: KeyPair
    decryption: tuple[KeyPair, ...]
    keystore: Keystore | None = None

    @classmethod
    def of(cls, keystore: Keystore) -> OwnKeys:
        return cls(signing=keystore.signing, decryption=keystore.decryption, keystore=keystore)

    def own_certificates(self) -> list[tuple[str, x509.Certificate]]:
        if self.keystore is not None:
            return self.keystore.own_certificates()
        return [(KeyStatus.CURRENT.value, self.signing.certificate)]


def load_own_keys(settings: KeySettings, *, now: datetime) -> OwnKeys:
    """``[keys].keystore`` when set (its passphrase is required), else the ``private_key``/``certificate`` pair."""
    if settings.keystore is not None:
        keystore = Keystore.open(settings.keystore, settings.keystore_passphrase())
        keystore.check(now=now)
        return OwnKeys.of(keystore)
    pair = load_key_pair(settings.private_key, settings.certificate, settings.passphrase(), now=now)
    return OwnKeys(signing=pair, decryption=(pair,))


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


def _new_status(records: list[KeyRecord], wanted: KeyStatus | None) -> KeyStatus:
    statuses = {r.status for r in records}
    status = wanted or (KeyStatus.NEXT if KeyStatus.CURRENT in statuses else KeyStatus.CURRENT)
    if status not in (KeyStatus.CURRENT, KeyStatus.NEXT):
        raise KeyMaterialError(f"a new key can be current or next, not {status.value}")
    if status in statuses:
        holder = next(r.id for r in records if r.status is status)
        raise KeyMaterialError(
            f"the keystore has a {status.value} key already ({holder}); "
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
) -> KeyInfo:
    key_id = f"{pair.certificate.not_valid_before_utc:%Y%m%d}-{fingerprint(pair.certificate)[:12]}"
    if any(r.id == key_id for r in records):
        raise KeyMaterialError(f"the keystore holds this key already, as {key_id}")
    encrypted = pair.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    _write(_key_path(folder, key_id), encrypted, private=True)
    _write(_cert_path(folder, key_id), pair.certificate.public_bytes(serialization.Encoding.PEM))
    record = KeyRecord(id=key_id, status=status, added=now.isoformat(), origin=origin)
    _write_index(folder, [*records, record])
    log.info("key added to the keystore", key=key_id, status=status.value, origin=origin)
    return KeyInfo(record=record, certificate=pair.certificate)


def generate_key(
    folder: Path,
    passphrase: bytes,
    *,
    subject: x509.Name,
    now: datetime,
    status: KeyStatus | None = None,
    days: int = DEFAULT_VALIDITY_DAYS,
) -> KeyInfo:
    """A new RSA-3072 key with a self-signed certificate (development) and a CSR (for the real CA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_KEY_BITS)
    certificate = _self_signed(key, subject, now, days)
    with _locked(folder) as records:
        info = _store(
            folder,
            records,
            KeyPair(private_key=key, certificate=certificate),
            passphrase,
            status=_new_status(records, status),
            now=now,
            origin="generated",
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        _write(folder / f"{info.record.id}.csr.pem", csr.public_bytes(serialization.Encoding.PEM))
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
) -> KeyInfo:
    """Add an existing key and its certificate; the key is stored encrypted with the keystore passphrase."""
    certificate = load_certificate(certificate_file)
    pair = _pair(
        load_private_key(key_file, key_passphrase), certificate, what=f"{key_file} with {certificate_file}"
    )
    if now > certificate.not_valid_after_utc:
        check_certificate(certificate, now=now, purpose=f"certificate {certificate_file}")
    with _locked(folder) as records:
        return _store(
            folder, records, pair, passphrase, status=_new_status(records, status), now=now, origin="imported"
        )


def rollover(folder: Path, passphrase: bytes, *, now: datetime) -> Keystore:
    """Next becomes current, current previous (still decrypts), previous retired; returns the new keystore."""
    with _locked(folder) as records:
        by_status = {r.status: r for r in records if r.status in LOADED}
        upcoming = by_status.get(KeyStatus.NEXT)
        if upcoming is None:
            raise KeyMaterialError(
                f"keystore {folder} has no next key; add one with 'keys generate' or 'keys import'"
            )
        pair = _load_pair(folder, upcoming.id, passphrase)
        check_certificate(pair.certificate, now=now, purpose=f"the next key's certificate ({upcoming.id})")
        moves = {
            KeyStatus.NEXT: KeyStatus.CURRENT,
            KeyStatus.CURRENT: KeyStatus.PREVIOUS,
            KeyStatus.PREVIOUS: KeyStatus.RETIRED,
        }
        updated = [
            KeyRecord(id=r.id, status=moves.get(r.status, r.status), added=r.added, origin=r.origin)
            for r in records
        ]
        _write_index(folder, updated)
    previous = by_status.get(KeyStatus.CURRENT)
    log.info("key rollover", current=upcoming.id, previous=previous.id if previous else None)
    return Keystore.open(folder, passphrase)


def _self_signed(key: rsa.RSAPrivateKey, subject: x509.Name, now: datetime, days: int) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


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
            signing=fingerprint(keystore.signing.certificate)[:16],
            decryption=[fingerprint(k.certificate)[:16] for k in keystore.decryption],
        )
        return True

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Poll in a background task while the context is open."""
        return polling(self.poll, interval=self._interval, name="keystore-watcher")
