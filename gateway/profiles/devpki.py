"""A development PKI for the demo and the tests: one CA and one key + certificate per authority.

Never for production: the private keys are written unencrypted (the folder's README.txt says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from gateway.as4 import Suite
from gateway.errors import KeyMaterialError
from gateway.profiles.certificates import load_certificate, load_private_key
from gateway.profiles.suitekeys import Usage, issue

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
                                      one RSA certificate per authority, issued by the CA (valid 2 years):
                                      eDelivery AS4 1.15
  <party-id>.ed25519.*.pem, <party-id>.x25519.*.pem
                                      signing and key agreement certificates for eDelivery AS4 2.0
                                      (EXPERIMENTAL), issued by the CA
  <party-id>.ecdsa.*.pem, <party-id>.ecdh.*.pem
                                      the same for eDelivery AS4 2.0 ECC (P-256, EXPERIMENTAL)

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
class DevSuiteFiles:
    """An authority's eDelivery AS4 2.0 keys: the signing key and the key agreement key, each certified."""

    key: Path
    certificate: Path
    agreement_key: Path
    agreement_certificate: Path


@dataclass(frozen=True, slots=True)
class DevPartyFiles:
    """The RSA key (eDelivery AS4 1.15) and, per 2.0 suite, the signing and agreement keys."""

    key: Path
    certificate: Path
    suites: Mapping[Suite, DevSuiteFiles]

    def certificates(self, suite: Suite) -> tuple[Path, Path]:
        """(signing, encryption) certificate of ``suite``, as a partner's profile names them."""
        if suite is Suite.EDELIVERY_1_15:
            return self.certificate, self.certificate
        files = self.suites[suite]
        return files.certificate, files.agreement_certificate


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
        assert isinstance(existing[0], rsa.RSAPrivateKey)
        return existing[0], existing[1]
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
    stem = authority.file_stem
    key, certificate = folder / f"{stem}.key.pem", folder / f"{stem}.crt.pem"
    if not _reusable(key, certificate, authority, ca_certificate, now, _is_rsa):
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        _write_pair(key, certificate, rsa_key, _leaf_certificate(authority, rsa_key, ca_key, ca_certificate, now))
    suites = {
        suite: _ensure_suite(folder, stem, suite, authority, ca_key, ca_certificate, now) for suite in _SUITE_KEYS
    }
    return DevPartyFiles(key=key, certificate=certificate, suites=suites)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)


_KeyKind = tuple[str, Callable[[], PrivateKeyTypes], Callable[[object], bool]]
_SUITE_KEYS: dict[Suite, tuple[_KeyKind, _KeyKind]] = {
    Suite.EDELIVERY_2_0: (
        ("ed25519", ed25519.Ed25519PrivateKey.generate, lambda k: isinstance(k, ed25519.Ed25519PrivateKey)),
        ("x25519", x25519.X25519PrivateKey.generate, lambda k: isinstance(k, x25519.X25519PrivateKey)),
    ),
    Suite.EDELIVERY_2_0_ECC: (("ecdsa", _p256, _is_p256), ("ecdh", _p256, _is_p256)),
}


def _ensure_suite(
    folder: Path,
    stem: str,
    suite: Suite,
    authority: DevAuthority,
    ca_key: rsa.RSAPrivateKey,
    ca_certificate: x509.Certificate,
    now: datetime,
) -> DevSuiteFiles:
    """The signing and agreement keys of a 2.0 suite, both certified by the development CA."""
    paths = []
    usages = (Usage(signature=True), Usage(key_agreement=True))
    for (name, make, fits), usage in zip(_SUITE_KEYS[suite], usages, strict=True):
        key_path, cert_path = folder / f"{stem}.{name}.key.pem", folder / f"{stem}.{name}.crt.pem"
        if not _reusable(key_path, cert_path, authority, ca_certificate, now, fits):
            key = make()
            certificate = issue(
                authority.subject(),
                key.public_key(),
                issuer=ca_certificate.subject,
                issuer_key=ca_key,
                now=now,
                validity=LEAF_VALIDITY,
                usage=usage,
            )
            _write_pair(key_path, cert_path, key, certificate)
        paths += [key_path, cert_path]
    return DevSuiteFiles(*paths)


def _is_rsa(key: object) -> bool:
    return isinstance(key, rsa.RSAPrivateKey) and key.key_size >= RSA_KEY_BITS


def _reusable(
    key_path: Path,
    certificate_path: Path,
    authority: DevAuthority,
    ca_certificate: x509.Certificate,
    now: datetime,
    fits: Callable[[object], bool],
) -> bool:
    """Files still good: they load and belong together, the key type fits, the certificate is valid and ours."""
    existing = _load_pair(key_path, certificate_path)
    return (
        existing is not None
        and fits(existing[0])
        and _valid_at(existing[1], now)
        and existing[1].subject == authority.subject()
        and _issued_by(existing[1], ca_certificate)
    )


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


def _load_pair(key_path: Path, certificate_path: Path) -> tuple[PrivateKeyTypes, x509.Certificate] | None:
    """The key and certificate when both load and belong together, else None (they will be replaced)."""
    try:
        key = load_private_key(key_path, None)
        certificate = load_certificate(certificate_path)
    except KeyMaterialError:
        return None
    if _spki(key.public_key()) != _spki(certificate.public_key()):
        return None
    return key, certificate


def _spki(public_key: object) -> bytes:
    der: bytes = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_pair(key_path: Path, certificate_path: Path, key: PrivateKeyTypes, cert: x509.Certificate) -> None:
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
