"""What we require of a partner's messages, derived from its profile; strict unless the profile says otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.as4.algorithms import DataEncryption, DigestMethod, KeyTransport, MaskGeneration, SignatureMethod


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPair:
    """One of our keys with its certificate: signs what we send, decrypts what was encrypted for it."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityPolicy:
    """A partner's pinned certificates and the algorithms we accept from it (eDelivery AS4 1.15 by default).

    There is no "trust any CA" mode: a signature verifies only against a certificate listed here.
    """

    signing_certificates: tuple[x509.Certificate, ...]
    signature_methods: frozenset[SignatureMethod] = frozenset({SignatureMethod.RSA_SHA256})
    digest_methods: frozenset[DigestMethod] = frozenset({DigestMethod.SHA256})
    data_encryption: frozenset[DataEncryption] = frozenset({DataEncryption.AES128_GCM})
    key_transport: frozenset[KeyTransport] = frozenset({KeyTransport.RSA_OAEP})
    mask_generation: frozenset[MaskGeneration] = frozenset({MaskGeneration.MGF1_SHA256})
    require_signature: bool = True
    require_encryption: bool = True
    clock_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.require_signature and not self.signing_certificates:
            raise ValueError("a SecurityPolicy that requires signatures needs at least one pinned certificate")
