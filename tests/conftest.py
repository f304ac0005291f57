"""Shared fixtures: a small development PKI made once per session (real RSA keys, real certificates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_key_pair(common_name: str, *, not_before: datetime | None = None, days: int = 365) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or NOW - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(private_key=key, certificate=cert)


@pytest.fixture(scope="session")
def alice() -> KeyPair:
    return make_key_pair("BE-FAMHP")


@pytest.fixture(scope="session")
def bob() -> KeyPair:
    return make_key_pair("CH-SWISSMEDIC")


@pytest.fixture(scope="session")
def mallory() -> KeyPair:
    return make_key_pair("MALLORY")
