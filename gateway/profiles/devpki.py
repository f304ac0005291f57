"""A development PKI for the demo and the tests: one CA and one key + certificate per authority.

Never for production: the private keys are written unencrypted (the folder's README.txt says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.errors import KeyMaterialError
from gateway.profiles.certificates import load_certificate, load_private_key

RSA_KEY_BITS = 2048
CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=730)
# Back-dating lets a partner whose clock runs a little behind ours accept a certificate issued just now.
BACKDATE = timedelta(hours=1)
CA_CERTIFICATE = "ca.crt.pem"
CA_KEY = "ca.key.pem"
CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "Permit Gateway Development CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Permit Gateway (development only)"),
    ]
)

README = """\
Development PKI of Permit Gateway - NOT FOR PRODUCTION

Written by gateway.profiles.devpki for the demo and the tests.

  ca.crt.pem, ca.key.pem              the development CA (valid 10 years)
  <party-id>.crt.pem, <party-id>.key.pem
                                      one certificate per authority, issued by the CA (valid 2 years)

The private keys (*.key.pem) are NOT encrypted: whoever can read this folder can sign and decrypt as
these authorities. Running the generator again keeps the files that are still valid and replaces the
others; delete the folder to start over. In production each authority uses a certificate from its own
or the eDelivery PKI, and keeps its private key encrypted.
"""


@dataclass(frozen=True, slots=True)
class DevAuthority:
    """An authority to issue a development certificate for: CN = PartyId, O = name, C = country."""

    party_id: str
    authority_name: str
    country: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.party_id) <= 64 or not self.authority_name:
            raise ValueError(f"{self}: party_id needs 1 to 64 characters and authority_name must not be empty")
        if not re.fullmatch(r"[A-Z]{2}", self.country):
            raise ValueError(f"{self}: country must be an ISO 3166-1 alpha-2 code such as 'BE'")

    @property
    def file_stem(self) -> str:
        """The PartyId, lower-cased and safe as a file name: ``BE-FAMHP`` gives ``be-famhp``."""
        return re.sub(r"[^a-z0-9._-]+", "-", self.party_id.lower()).strip("-.")

    def subject(self) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, self.party_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.authority_name),
                x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
            ]
        )


@dataclass(frozen=True, slots=True)
class DevPartyFiles:
    key: Path
    certificate: Path


@dataclass(frozen=True, slots=True)
class DevPki:
    folder: Path
    ca_certificate: Path
    ca_key: Path
    parties: Mapping[str, DevPartyFiles]

    def files_for(self, party_id: str) -> DevPartyFiles:
        try:
            return self.parties[party_id]
        except KeyError:
            known = ", ".join(sorted(self.parties)) or "(none)"
            raise KeyMaterialError(
                f"the development PKI in {self.folder} has no certificate for PartyId {party_id!r}; "
                f"it has: {known}"
            ) from None


def generate_dev_pki(folder: Path, authorities: Sequence[DevAuthority], *, now: datetime) -> DevPki:
    """Create (or reuse, when still valid at ``now``) the development CA and one certificate per authority."""
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (use gateway.clock)")
    _check_distinct(authorities)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_certificate = _ensure_ca(folder, now)
    parties = {
        authority.party_id: _ensure_leaf(folder, authority, ca_key, ca_certificate, now)
        for authority in authorities
    }
    readme = folder / "README.txt"
    if not readme.is_file() or readme.read_text(encoding="utf-8") != README:
        _write(readme, README.encode())
    return DevPki(folder, folder / CA_CERTIFICATE, folder / CA_KEY, parties)


def _check_distinct(authorities: Sequence[DevAuthority]) -> None:
    stems: dict[str, DevAuthority] = {}
    for authority in authorities:
        if authority.file_stem in ("", "ca"):
            raise ValueError(
                f"{authority}: PartyId gives the file name {authority.file_stem!r}, which is reserved"
            )
        other = stems.setdefault(authority.file_stem, authority)
        if other is not authority:
            raise ValueError(f"{other} and {authority} would share the files {authority.file_stem}.*.pem")


def _ensure_ca(folder: Path, now: datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    existing = _load_pair(folder / CA_KEY, folder / CA_CERTIFICATE)
    if existing is not None and _valid_at(existing[1], now) and _issued_by(existing[1], existing[1]):
        return existing
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    certificate = _ca_certificate(key, now)
    _write_pair(folder / CA_KEY, folder / CA_CERTIFICATE, key, certificate)
    return key, certificate


def _ensure_leaf(
    folder: Path,
    authority: DevAuthority,
    ca_key: rsa.RSAPrivateKey,
    ca_certificate: x509.Certificate,
    now: datetime,
) -> DevPartyFiles:
    files = DevPartyFiles(
        key=folder / f"{authority.file_stem}.key.pem",
        certificate=folder / f"{authority.file_stem}.crt.pem",
    )
    existing = _load_pair(files.key, files.certificate)
    if (
        existing is not None
        and _valid_at(existing[1], now)
        and existing[1].subject == authority.subject()
        and _issued_by(existing[1], ca_certificate)
    ):
        return files
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    _write_pair(files.key, files.certificate, key, _leaf_certificate(authority, key, ca_key, ca_certificate, now))
    return files


def _ca_certificate(key: rsa.RSAPrivateKey, now: datetime) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    authority: DevAuthority,
    key: rsa.RSAPrivateKey,
    ca_key: rsa.RSAPrivateKey,
    ca_certificate: x509.Certificate,
    now: datetime,
) -> x509.Certificate:
    public = key.public_key()
    # AS4 signs messages and receipts (digitalSignature) and transports the symmetric payload key with
    # RSA-OAEP (keyEncipherment); payloads are never encrypted with RSA itself, so no dataEncipherment.
    return (
        x509.CertificateBuilder()
        .subject_name(authority.subject())
        .issuer_name(ca_certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, key_cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_pair(key_path: Path, certificate_path: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate] | None:
    """The key and certificate when both load and belong together, else None (they will be replaced)."""
    try:
        key = load_private_key(key_path, None)
        certificate = load_certificate(certificate_path)
    except KeyMaterialError:
        return None
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != certificate.public_key():
        return None
    return key, certificate


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_pair(key_path: Path, certificate_path: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, key_pem, private=True)
    _write(certificate_path, cert.public_bytes(serialization.Encoding.PEM))


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a key behind."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
