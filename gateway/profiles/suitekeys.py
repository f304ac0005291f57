"""Our own key material per eDelivery AS4 security suite: what each suite needs, checked; new keys issued.

* ``edelivery-as4-1.15``: one RSA key signs (rsa-sha256) and decrypts (RSA-OAEP).
* ``edelivery-as4-2.0`` (EXPERIMENTAL): an Ed25519 key signs; partners encrypt for a separate X25519 key (key
  agreement). An X25519 key cannot sign, so its certificate is issued by the Ed25519 key (or a CA).
* ``edelivery-as4-2.0-ecc`` (EXPERIMENTAL): an ECDSA P-256 key signs; a separate ECDH P-256 key agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gateway.as4 import KeyPair, Suite
from gateway.errors import KeyMaterialError
from gateway.profiles.certificates import MIN_RSA_KEY_BITS

BACKDATE = timedelta(hours=1)
"""Back-dating lets a partner whose clock runs a little behind ours accept a certificate issued just now."""

SUITE_KEYS = {
    Suite.EDELIVERY_1_15: f"an RSA key of at least {MIN_RSA_KEY_BITS} bits (signs and decrypts)",
    Suite.EDELIVERY_2_0: "an Ed25519 signing key and an X25519 agreement key",
    Suite.EDELIVERY_2_0_ECC: "an ECDSA P-256 signing key and a separate ECDH P-256 agreement key",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """The KeyUsage of a certificate we issue."""

    signature: bool = False
    key_encipherment: bool = False
    key_agreement: bool = False
    certificate_signing: bool = False

    def extension(self) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=self.signature,
            content_commitment=False,
            key_encipherment=self.key_encipherment,
            data_encipherment=False,
            key_agreement=self.key_agreement,
            key_cert_sign=self.certificate_signing,
            crl_sign=self.certificate_signing,
            encipher_only=False,
            decipher_only=False,
        )


def issue(
    subject: x509.Name,
    public_key: object,
    *,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    now: datetime,
    validity: timedelta,
    usage: Usage,
    ca: bool = False,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``issuer_key`` (itself for a self-signed one)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage.extension(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
    )
    if issuer != subject or not ca:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, _hash_for(issuer_key))


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """EdDSA signs without a separate hash; RSA and ECDSA certificates use SHA-256."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass(frozen=True, slots=True)
class NewKeys:
    """Freshly generated keys of one suite, with their (self-issued) certificates and CSRs for a real CA."""

    pair: KeyPair
    requests: dict[str, x509.CertificateSigningRequest]


def generate(suite: Suite, subject: x509.Name, *, now: datetime, validity: timedelta, rsa_bits: int) -> NewKeys:
    """New keys for ``suite``: the signing certificate is self-signed, the agreement certificate issued by the
    signing key. The CSRs (``signing``, and ``agreement`` where the key can sign one) go to the real CA."""
    signing_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    match suite:
        case Suite.EDELIVERY_1_15:
            signing_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        case Suite.EDELIVERY_2_0:
            signing_key = ed25519.Ed25519PrivateKey.generate()
        case Suite.EDELIVERY_2_0_ECC:
            signing_key = ec.generate_private_key(ec.SECP256R1())
    rsa_usage = Usage(signature=True, key_encipherment=True)
    certificate = issue(
        subject,
        signing_key.public_key(),
        issuer=subject,
        issuer_key=signing_key,
        now=now,
        validity=validity,
        usage=rsa_usage if suite is Suite.EDELIVERY_1_15 else Usage(signature=True),
    )
    requests = {"signing": _csr(subject, signing_key)}
    if suite is Suite.EDELIVERY_1_15:
        return NewKeys(KeyPair(private_key=signing_key, certificate=certificate), requests)
    agreement_key = (
        x25519.X25519PrivateKey.generate()
        if suite is Suite.EDELIVERY_2_0
        else ec.generate_private_key(ec.SECP256R1())
    )
    agreement_certificate = issue(
        subject,
        agreement_key.public_key(),
        issuer=subject,
        issuer_key=signing_key,
        now=now,
        validity=validity,
        usage=Usage(key_agreement=True),
    )
    if isinstance(agreement_key, ec.EllipticCurvePrivateKey):
        requests["agreement"] = _csr(subject, agreement_key)
    pair = KeyPair(
        private_key=signing_key,
        certificate=certificate,
        agreement_key=agreement_key,
        agreement_certificate=agreement_certificate,
    )
    return NewKeys(pair, requests)


def _csr(
    subject: x509.Name, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
) -> x509.CertificateSigningRequest:
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, _hash_for(key))


def suite_pair(
    suite: Suite,
    key: object,
    certificate: x509.Certificate,
    agreement_key: object | None = None,
    agreement_certificate: x509.Certificate | None = None,
    *,
    what: str,
) -> KeyPair:
    """Our key pair for ``suite``, after checking every key's type and that each certificate belongs to its key."""
    needs = f"{what}: suite {suite.value} needs {SUITE_KEYS[suite]}"
    if suite is Suite.EDELIVERY_1_15:
        if agreement_key is not None or agreement_certificate is not None:
            raise KeyMaterialError(f"{needs}; it has no separate agreement key")
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_KEY_BITS:
            raise KeyMaterialError(f"{needs}; the signing key is {_describe(key)}")
        _belongs(key, certificate, what=what)
        return KeyPair(private_key=key, certificate=certificate)
    if agreement_key is None or agreement_certificate is None:
        raise KeyMaterialError(f"{needs}; the agreement key or its certificate is missing")
    signing_ok, agreement_ok = _fits(suite, key, agreement_key)
    if not signing_ok:
        raise KeyMaterialError(f"{needs}; the signing key is {_describe(key)}")
    if not agreement_ok:
        raise KeyMaterialError(f"{needs}; the agreement key is {_describe(agreement_key)}")
    _belongs(key, certificate, what=what)
    _belongs(agreement_key, agreement_certificate, what=f"{what} (agreement key)")
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    assert isinstance(agreement_key, x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey)
    return KeyPair(
        private_key=key,
        certificate=certificate,
        agreement_key=agreement_key,
        agreement_certificate=agreement_certificate,
    )


def _fits(suite: Suite, key: object, agreement_key: object) -> tuple[bool, bool]:
    if suite is Suite.EDELIVERY_2_0:
        return isinstance(key, ed25519.Ed25519PrivateKey), isinstance(agreement_key, x25519.X25519PrivateKey)
    return _is_p256(key), _is_p256(agreement_key)


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)


def _public_der(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    der: bytes = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _belongs(key: object, certificate: x509.Certificate, *, what: str) -> None:
    if _public_der(key) != _public_der(certificate.public_key()):
        raise KeyMaterialError(f"{what}: the certificate does not belong to the private key")


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an elliptic-curve key ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    if isinstance(key, x25519.X25519PrivateKey):
        return "an X25519 key"
    return f"a {type(key).__name__}"
