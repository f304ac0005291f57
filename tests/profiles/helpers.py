"""Certificates and profile folders made to measure for the rollover, reload and edit tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair

PROFILE = """\
# {id}: a partner of the tests
id: {id}
authority_name: {name}
country: {country}
party_id: {party}
endpoint: https://as4.{id}.example/as4

security:
  # the partner's certificate
  signing_certificate: {cert}
"""


def default_structlog() -> Iterator[None]:
    """For an autouse fixture: a CLI test run earlier (``demo``) may leave structlog writing to CliRunner's
    closed stream and filtering below ERROR; these tests log and capture logs."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    """A few RSA keys, made once per session (``n`` tells them apart)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(
    common_name: str,
    *,
    key: rsa.RSAPrivateKey,
    not_before: datetime,
    days: float,
    issuer: KeyPair | None = None,
    ca: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer.private_key if issuer else key, hashes.SHA256())


def write_certificate(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def pair(common_name: str, *, key_number: int, not_before: datetime, days: float = 365) -> KeyPair:
    key = rsa_key(key_number)
    return KeyPair(
        private_key=key, certificate=certificate(common_name, key=key, not_before=not_before, days=days)
    )


def profile_text(profile_id: str, cert: str, *, party: str | None = None, country: str = "CH") -> str:
    return PROFILE.format(
        id=profile_id,
        name=f"Authority {profile_id}",
        country=country,
        party=party or profile_id.upper(),
        cert=cert,
    )


def write_revocation_list(path: Path, issuer_key: object, issuer: x509.Name, next_update: datetime) -> None:
    """An empty CRL of ``issuer``, signed with ``issuer_key``, due for renewal at ``next_update``."""
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(next_update - timedelta(days=8))
        .next_update(next_update)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
