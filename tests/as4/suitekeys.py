"""Key pairs for the eDelivery AS4 2.0 suites, made for a test: Ed25519 with X25519, and ECC P-256."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair, Suite
from tests.conftest import NOW


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, public_key: object, issuer_key: object, issuer: str | None = None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer or cn))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
    )
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)  # type: ignore[arg-type]


def ed_x_pair(cn: str) -> KeyPair:
    """An Ed25519 signing certificate and an X25519 certificate issued by it (it signs, X25519 cannot)."""
    signing = ed25519.Ed25519PrivateKey.generate()
    agreement = x25519.X25519PrivateKey.generate()
    return KeyPair(
        private_key=signing,
        certificate=_cert(cn, signing.public_key(), signing),
        agreement_key=agreement,
        agreement_certificate=_cert(f"{cn} encryption", agreement.public_key(), signing, issuer=cn),
    )


def ecc_pair(cn: str) -> KeyPair:
    """One P-256 key for ECDSA and ECDH-ES (a separate agreement key works too)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private_key=key, certificate=_cert(cn, key.public_key(), key))


SUITE_PAIRS = {Suite.EDELIVERY_2_0: ed_x_pair, Suite.EDELIVERY_2_0_ECC: ecc_pair}
