"""What we require of a partner's messages, derived from its profile; strict unless the profile says otherwise."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from gateway.as4.algorithms import (
    DataEncryption,
    DigestMethod,
    KeyAgreement,
    KeyTransport,
    KeyWrap,
    MaskGeneration,
    SignatureMethod,
    Suite,
)

SigningKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
AgreementKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPair:
    """One of our keys with its certificate: signs what we send, decrypts what was encrypted for it.

    eDelivery AS4 1.15 uses one RSA key for both. In 2.0 the signing key (Ed25519, or ECDSA P-256) cannot
    decrypt: ``agreement_key`` (X25519, or ECDH P-256) with ``agreement_certificate`` is the key partners
    encrypt for. An EC ``private_key`` without a separate agreement key also serves for ECDH-ES.
    """

    private_key: SigningKey = field(repr=False)
    certificate: x509.Certificate
    agreement_key: AgreementKey | None = field(default=None, repr=False)
    agreement_certificate: x509.Certificate | None = None

    def __post_init__(self) -> None:
        if (self.agreement_key is None) != (self.agreement_certificate is None):
            raise ValueError("agreement_key and agreement_certificate go together")

    @property
    def encryption_certificate(self) -> x509.Certificate:
        """The certificate partners encrypt for."""
        return self.agreement_certificate or self.certificate


@dataclass(frozen=True, slots=True)
class SuiteAlgorithms:
    """What a suite signs and encrypts with: the sender's choices and the receiver's default expectations."""

    signature: SignatureMethod
    key_transport: frozenset[KeyTransport]
    key_agreement: frozenset[KeyAgreement]
    key_wrap: frozenset[KeyWrap]


SUITES: dict[Suite, SuiteAlgorithms] = {
    Suite.EDELIVERY_1_15: SuiteAlgorithms(
        SignatureMethod.RSA_SHA256, frozenset({KeyTransport.RSA_OAEP}), frozenset(), frozenset()
    ),
    Suite.EDELIVERY_2_0: SuiteAlgorithms(
        SignatureMethod.ED25519, frozenset(), frozenset({KeyAgreement.X25519}), frozenset({KeyWrap.KW_AES128})
    ),
    Suite.EDELIVERY_2_0_ECC: SuiteAlgorithms(
        SignatureMethod.ECDSA_SHA256,
        frozenset(),
        frozenset({KeyAgreement.ECDH_ES}),
        frozenset({KeyWrap.KW_AES128}),
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityPolicy:
    """A partner's trusted certificates and the algorithms we accept from it (eDelivery AS4 1.15 by default).

    There is no "trust any CA" mode. A signing certificate is accepted when it is one of
    ``signing_certificates`` (pinned), or, only when ``trust_anchors`` is set, when it was issued directly by
    one of the anchors and its subject, as an RFC 4514 string (most specific attribute first, as in
    ``CN=BE-FAMHP AS4 2027,O=FAMHP,C=BE``), fully matches the regular expression ``subject_pattern``. Either way it
    must be valid at the time of the check and, if it has a KeyUsage extension, allow digitalSignature.

    A signature's KeyInfo names its certificate by SubjectKeyIdentifier or IssuerSerial instead of carrying it
    in a BinarySecurityToken (Domibus's default). Such a reference is looked up among the pinned certificates
    and ``known_certificates``: other certificates of the partner that we hold, its encryption certificate
    (in eDelivery AS4 1.15 the partner signs with the key it decrypts with). Knowing a certificate does not
    trust it: it passes the same checks as one sent in a token.

    ``suite`` is what we answer this partner with (receipts, errors); ``for_suite`` also sets the algorithms
    accepted from it. Key agreement (``key_agreement`` with ``key_wrap``) is eDelivery AS4 2.0, experimental.

    ``max_age`` refuses messages whose eb:Timestamp is older than that (EBMS:0003); duplicate detection over
    a longer window is the store's job. ``accept_soap11`` admits SOAP 1.1 envelopes (AS4 uses SOAP 1.2).
    ``max_payload_bytes`` caps each decompressed payload of a message from the partner (the profile's
    ``max_payload_bytes``); decompression stops as soon as it is passed.
    """

    signing_certificates: tuple[x509.Certificate, ...]
    known_certificates: tuple[x509.Certificate, ...] = ()
    signature_methods: frozenset[SignatureMethod] = frozenset({SignatureMethod.RSA_SHA256})
    digest_methods: frozenset[DigestMethod] = frozenset({DigestMethod.SHA256})
    data_encryption: frozenset[DataEncryption] = frozenset({DataEncryption.AES128_GCM})
    key_transport: frozenset[KeyTransport] = frozenset({KeyTransport.RSA_OAEP})
    mask_generation: frozenset[MaskGeneration] = frozenset({MaskGeneration.MGF1_SHA256})
    oaep_digests: frozenset[DigestMethod] = frozenset({DigestMethod.SHA256})
    key_agreement: frozenset[KeyAgreement] = frozenset()
    key_wrap: frozenset[KeyWrap] = frozenset()
    suite: Suite = Suite.EDELIVERY_1_15
    require_signature: bool = True
    require_encryption: bool = True
    clock_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta | None = None
    trust_anchors: tuple[x509.Certificate, ...] = ()
    subject_pattern: str | None = None
    revocation_lists: tuple[x509.CertificateRevocationList, ...] = ()
    accept_soap11: bool = False
    max_payload_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.require_signature and not (self.signing_certificates or self.trust_anchors):
            raise ValueError(
                "a SecurityPolicy that requires signatures needs at least one pinned certificate or trust anchor"
            )
        if self.trust_anchors and not self.subject_pattern:
            raise ValueError(
                "trust_anchors need a subject_pattern: an anchor alone would trust every certificate it issued"
            )
        if self.subject_pattern is not None:
            try:
                re.compile(self.subject_pattern)
            except re.error as exc:
                raise ValueError(
                    f"subject_pattern {self.subject_pattern!r} is not a regular expression: {exc}"
                ) from None
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        if self.max_payload_bytes is not None and self.max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be positive")
        if self.clock_skew < timedelta(0):
            raise ValueError("clock_skew must not be negative")
        for name in ("signature_methods", "digest_methods", "data_encryption", "mask_generation", "oaep_digests"):
            if not getattr(self, name):
                raise ValueError(f"{name} must allow at least one algorithm")
        if not (self.key_transport or self.key_agreement):
            raise ValueError("key_transport must allow at least one algorithm (or key_agreement one)")
        if bool(self.key_agreement) != bool(self.key_wrap):
            raise ValueError("key_agreement and key_wrap go together: an agreed key only wraps the content key")

    @classmethod
    def for_suite(cls, suite: Suite, **fields: object) -> SecurityPolicy:
        """A policy expecting ``suite``'s algorithms; ``fields`` set the rest (and may widen the sets)."""
        algorithms = SUITES[suite]
        defaults: dict[str, object] = {
            "suite": suite,
            "signature_methods": frozenset({algorithms.signature}),
            "key_transport": algorithms.key_transport,
            "key_agreement": algorithms.key_agreement,
            "key_wrap": algorithms.key_wrap,
        }
        return cls(**(defaults | fields))  # type: ignore[arg-type]

    @property
    def key_reference_candidates(self) -> tuple[x509.Certificate, ...]:
        """What a SubjectKeyIdentifier or IssuerSerial may name: the pinned certificates, then the known ones."""
        if not (self.known_certificates and self.signing_certificates):
            return self.signing_certificates or self.known_certificates
        known = tuple(c for c in self.known_certificates if c not in self.signing_certificates)
        return self.signing_certificates + known

    def subject_matches(self, subject: str) -> bool:
        return self.subject_pattern is not None and re.fullmatch(self.subject_pattern, subject) is not None
