"""Partner certificates and our private key: loading, validity and fitness for a profile's security suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes

from gateway.as4 import readable_certificate
from gateway.errors import GatewayError, KeyMaterialError
from gateway.profiles.model import PartnerProfile, SecuritySuite

MIN_RSA_KEY_BITS = 2048


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(f"{what} file {path} not found") from None
    except OSError as exc:
        raise KeyMaterialError(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None


def load_certificate(path: Path) -> x509.Certificate:
    """Read an X.509 certificate, PEM or DER."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion):
        raise KeyMaterialError(
            f"certificate file {path} holds no X.509 certificate; expected one in PEM or DER form"
        ) from None
    try:
        return readable_certificate(cert)
    except ValueError as exc:
        raise KeyMaterialError(f"certificate file {path} holds a malformed X.509 certificate: {exc}") from None


def load_certificate_bundle(path: Path) -> tuple[x509.Certificate, ...]:
    """Read a CA bundle: one or more PEM certificates."""
    data = _read(path, "CA bundle")
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise KeyMaterialError(f"CA bundle {path} holds no PEM certificates; expected one or more") from None


def _not_a_key(data: bytes) -> str:
    """Why a private key file did not load, as far as its content tells."""
    if b"-----BEGIN CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data:
        return (
            "it holds a certificate, not a private key; name the key file (the one whose PEM starts with "
            "-----BEGIN PRIVATE KEY----- or -----BEGIN ENCRYPTED PRIVATE KEY-----), and the certificate where the "
            "configuration asks for a certificate"
        )
    if b"ENCRYPTED PRIVATE KEY-----" in data:
        return "wrong passphrase (the key is encrypted; check the passphrase the configuration names)"
    return "wrong passphrase, or not a PEM/DER private key"


def load_private_key(path: Path, passphrase: bytes | None) -> PrivateKeyTypes:
    """Read a private key, PEM or DER (PKCS#8 or traditional), decrypting it with ``passphrase`` if given."""
    data = _read(path, "private key")
    load = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    try:
        return load(data, password=passphrase)
    except TypeError:
        needs = (
            "is not encrypted, so give no passphrase"
            if passphrase is not None
            else "is encrypted and needs a passphrase"
        )
        raise KeyMaterialError(f"private key file {path} {needs}") from None
    except (ValueError, InternalError):  # OpenSSL's own error for some damaged encrypted keys
        raise KeyMaterialError(f"private key file {path} cannot be loaded: {_not_a_key(data)}") from None
    except UnsupportedAlgorithm as exc:
        raise KeyMaterialError(
            f"private key file {path} holds a key of a type the gateway cannot use ({exc}); eDelivery AS4 uses RSA "
            "(1.15), Ed25519 with X25519 (2.0) or EC P-256 (2.0 ECC)"
        ) from None


def require_own_key_files(private_key: Path, certificate: Path) -> None:
    """Our ``[keys].private_key`` and ``certificate`` must exist; a missing one is refused saying how to make a
    key pair or where to put an existing one, since a fresh installation has neither."""
    for key, path in (("private_key", private_key), ("certificate", certificate)):
        if not path.exists():
            raise KeyMaterialError(
                f"{key.replace('_', ' ')} file {path} ([keys].{key}) not found. To create our key pair, set [keys].keystore "
                '(e.g. keystore = "../var/keystore") and [keys].passphrase_env or passphrase_file (the keystore '
                "encrypts its keys with that passphrase), then run 'permit-gateway keys generate --config "
                "CONFIG'. To use an existing key, put it at [keys].private_key as PEM or DER (PKCS#8 or "
                "traditional RSA, at least 2048 bits; if encrypted, set [keys].passphrase_env or passphrase_file) "
                "and its X.509 certificate (PEM or DER) at [keys].certificate"
            )


def load_revocation_list(path: Path, anchor: x509.Certificate) -> x509.CertificateRevocationList:
    """Read a CRL, PEM or DER, that ``anchor`` issued and signed."""
    data = _read(path, "revocation list")
    try:
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise KeyMaterialError(
            f"revocation list file {path} holds no X.509 CRL; expected the trust anchor's CRL in PEM or DER form"
        ) from None
    issuer = anchor.subject.rfc4514_string()
    try:  # a CA's key signs; a key that cannot (X25519) signed nothing
        signed = crl.issuer == anchor.subject and crl.is_signature_valid(anchor.public_key())  # type: ignore[arg-type]
    except TypeError:
        signed = False
    if not signed:
        raise KeyMaterialError(
            f"revocation list {path} is not signed by the trust anchor {issuer!r} (it names "
            f"{crl.issuer.rfc4514_string()!r}); expected the CRL that CA publishes"
        )
    return crl


def check_revocation_list(crl: x509.CertificateRevocationList, *, now: datetime, purpose: str) -> None:
    """A list past its nextUpdate cannot tell whether a certificate was revoked since."""
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise KeyMaterialError(
            f"{purpose} was due for renewal at {next_update:%Y-%m-%dT%H:%M:%SZ}; replace it with the CA's current "
            "list, or every certificate of that CA is refused"
        )


Passphrase = Callable[[], bytes | None]
"""The ``[keys]`` passphrase, asked for only where a key is encrypted: reading it may fail (an unset variable)."""


def no_passphrase() -> None:
    return None


def check_tls_client_key(key_path: Path, certificate: x509.Certificate, passphrase: Passphrase) -> None:
    """The TLS client key must open as TLS will open it (unencrypted, or with the ``[keys]`` passphrase) and be
    the key of ``certificate``; ``KeyMaterialError`` naming the fix otherwise."""
    try:
        key = load_private_key(key_path, None)
    except KeyMaterialError as exc:
        try:
            secret = passphrase()
        except GatewayError as unreadable:
            raise KeyMaterialError(f"{exc}; TLS opens it with the [keys] passphrase: {unreadable}") from None
        if secret is None:
            raise KeyMaterialError(
                f"{exc}; TLS opens it with the [keys] passphrase, and none is configured: set [keys].passphrase_env "
                "or passphrase_file, or store the key unencrypted (mode 0600)"
            ) from None
        key = load_private_key(key_path, secret)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise KeyMaterialError(
            f"private key file {key_path} is not the key of TLS client certificate "
            f"{certificate.subject.rfc4514_string()!r}; name the key that certificate was issued for"
        )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime (use gateway.clock)")


def days_to_expiry(cert: x509.Certificate, *, now: datetime) -> int:
    """Whole days left before ``cert`` expires; negative once it has expired."""
    _require_aware(now)
    return (cert.not_valid_after_utc - now).days


def check_certificate(cert: x509.Certificate, *, now: datetime, purpose: str) -> None:
    """Refuse a certificate that is not valid at ``now``; ``purpose`` says what it is for, in the message."""
    _require_aware(now)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if start <= now <= end:  # checked before every message sent or received: the subject only for an error
        return
    subject = cert.subject.rfc4514_string()
    if now < start:
        raise KeyMaterialError(
            f"{purpose} ({subject}) is not valid before {start:%Y-%m-%d %H:%M} UTC "
            f"(it is now {now:%Y-%m-%d %H:%M} UTC); check this host's clock or wait until then"
        )
    raise KeyMaterialError(
        f"{purpose} ({subject}) expired on {end:%Y-%m-%d %H:%M} UTC "
        f"(valid from {start:%Y-%m-%d}, it is now {now:%Y-%m-%d %H:%M} UTC); "
        "obtain the renewed certificate and replace the file"
    )


def check_suite_key(cert: x509.Certificate, suite: SecuritySuite, *, purpose: str, use: str | None = None) -> None:
    """Refuse a certificate whose key the suite's algorithms cannot use; ``use`` (``signing`` or ``encryption``)
    narrows it to that use: in eDelivery AS4 2.0 the signing key is Ed25519 and the encryption key X25519."""
    expected = _suite_key_requirement(suite, cert.public_key(), use)
    if expected is not None:
        raise KeyMaterialError(
            f"{purpose} ({cert.subject.rfc4514_string()}) has {_describe_key(cert)}; "
            f"suite {suite.value} needs {expected}"
        )


def missing_key_usage(cert: x509.Certificate, use: str) -> str | None:
    """The KeyUsage bit ``use`` (``signing`` or ``encryption``) needs that the certificate's KeyUsage extension
    lacks, or None: without the extension every use is allowed.

    Signing needs digitalSignature, as the receiver requires of every signature (nonRepudiation alone is
    refused there too); encryption needs keyEncipherment for an RSA key (key transport) and keyAgreement for
    an X25519 or EC key.
    """
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if use == "signing":
        return None if usage.digital_signature else "digitalSignature"
    if isinstance(cert.public_key(), rsa.RSAPublicKey):
        return None if usage.key_encipherment else "keyEncipherment"
    return None if usage.key_agreement else "keyAgreement"


def _suite_key_requirement(suite: SecuritySuite, key: CertificatePublicKeyTypes, use: str | None) -> str | None:
    """What ``suite`` needs of a certificate key for ``use``, or None when ``key`` fits."""
    match suite:
        case SecuritySuite.EDELIVERY_AS4_1_15:
            if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_KEY_BITS:
                return None
            return (
                f"an RSA key of at least {MIN_RSA_KEY_BITS} bits (rsa-sha256 signatures, RSA-OAEP key transport)"
            )
        case SecuritySuite.EDELIVERY_AS4_2_0:
            signing = isinstance(key, ed25519.Ed25519PublicKey)
            agreement = isinstance(key, x25519.X25519PublicKey)
            if use == "signing":
                return None if signing else "an Ed25519 key for signing (eddsa-ed25519 signatures)"
            if use == "encryption":
                return None if agreement else "an X25519 key for encryption (x25519 key agreement)"
            if signing or agreement:
                return None
            return "an Ed25519 key (eddsa-ed25519 signatures) or an X25519 key (x25519 key agreement)"
        case SecuritySuite.EDELIVERY_AS4_2_0_ECC:
            if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
                return None
            return "an EC P-256 key (ecdsa-sha256 signatures, ECDH-ES key agreement)"


def _describe_key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an elliptic-curve key ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "an EdDSA key"
    if isinstance(key, x25519.X25519PublicKey):
        return "an X25519 key"
    return "a key of another type"


def valid_at(cert: x509.Certificate, now: datetime) -> bool:
    _require_aware(now)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint in hex, as ``keys list`` and the logs show it."""
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True, slots=True)
class PartnerCertificates:
    """A partner's certificates, loaded once from its profile.

    ``signing`` holds every pinned signing certificate (several during a rollover); ``encryption`` is the one
    we encrypt for, chosen when the profile was loaded (see ``resolve_certificates``).
    """

    profile_id: str
    signing: tuple[x509.Certificate, ...]
    encryption: x509.Certificate
    trust_anchor: x509.Certificate | None = None
    subject: str | None = None
    revocation_list: x509.CertificateRevocationList | None = None
    tls_client: x509.Certificate | None = None
    tls_ca: tuple[x509.Certificate, ...] = ()

    def valid_signing(self, now: datetime) -> tuple[x509.Certificate, ...]:
        return tuple(cert for cert in self.signing if valid_at(cert, now))

    def check(self, *, now: datetime) -> None:
        """Refuse to use the partner when no signing certificate, or the encryption certificate, is valid now
        (or the encryption certificate is revoked, or the revocation list is stale)."""
        self._check_signing(now)
        purpose = f"encryption certificate of partner {self.profile_id!r}"
        check_certificate(self.encryption, now=now, purpose=purpose)
        if self.revocation_list is not None:
            check_revocation_list(
                self.revocation_list, now=now, purpose=f"the revocation list of partner {self.profile_id!r}"
            )
            revoked = self.revocation_list.get_revoked_certificate_by_serial_number(self.encryption.serial_number)
            if revoked is not None and self.encryption.issuer == self.revocation_list.issuer:
                raise KeyMaterialError(
                    f"{purpose} {self.encryption.subject.rfc4514_string()!r} was revoked by its CA at "
                    f"{revoked.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}; name the partner's new certificate"
                )

    def _check_signing(self, now: datetime) -> None:
        if self.valid_signing(now):
            return
        if self.trust_anchor is not None:
            check_certificate(self.trust_anchor, now=now, purpose=f"trust anchor of partner {self.profile_id!r}")
            return
        reasons = []
        for cert in self.signing:
            try:
                check_certificate(cert, now=now, purpose=f"signing certificate of partner {self.profile_id!r}")
            except KeyMaterialError as exc:
                reasons.append(str(exc))
        if len(reasons) == 1:
            raise KeyMaterialError(reasons[0])
        raise KeyMaterialError(
            f"partner {self.profile_id!r} has no signing certificate valid now; " + "; ".join(reasons)
        )

    def every(self) -> tuple[tuple[str, x509.Certificate], ...]:
        """(purpose, certificate) for every distinct certificate: signing, encryption, trust-anchor, then our
        TLS client certificate for this partner (tls-client) and the CAs of its ca_bundle (tls-ca)."""
        found = [("signing", cert) for cert in self.signing] + [("encryption", self.encryption)]
        found += [] if self.trust_anchor is None else [("trust-anchor", self.trust_anchor)]
        found += [] if self.tls_client is None else [("tls-client", self.tls_client)]
        found += [("tls-ca", cert) for cert in self.tls_ca]
        seen: dict[bytes, tuple[str, x509.Certificate]] = {}
        for purpose, cert in found:
            seen.setdefault(cert.fingerprint(hashes.SHA256()), (purpose, cert))
        return tuple(seen.values())

    def changes_at(self, now: datetime) -> datetime | None:
        """The next time a certificate becomes valid or expires, when the choice of certificates may change."""
        moments = [
            moment
            for _, cert in self.every()
            for moment in (cert.not_valid_before_utc, cert.not_valid_after_utc)
            if moment > now
        ]
        return min(moments, default=None)


def resolve_certificates(profile: PartnerProfile, *, now: datetime | None = None) -> PartnerCertificates:
    """Load a profile's certificates, each file once, and choose the one we encrypt for.

    The encryption certificate is the newest (latest start of validity) of the candidates valid at ``now``
    (``encryption_certificate``, else every pinned signing certificate); when none is valid, or without ``now``,
    the newest of all, so that ``PartnerCertificates.check`` names what is wrong with it.
    """
    security = profile.security
    loaded: dict[Path, x509.Certificate] = {}

    def load(path: Path, purpose: str) -> x509.Certificate:
        if path not in loaded:
            loaded[path] = load_certificate(path)
        check_suite_key(
            loaded[path], security.suite, purpose=f"{purpose} certificate of partner {profile.id!r}", use=purpose
        )
        return loaded[path]

    signing = tuple(load(path, "signing") for path in security.pinned_certificates)
    candidates = [load(path, "encryption") for path in security.encryption_candidates]
    anchor = load_certificate(security.trust_anchor) if security.trust_anchor is not None else None
    crl = None
    if anchor is not None and security.revocation_list is not None:
        crl = load_revocation_list(security.revocation_list, anchor)
    tls = profile.tls
    return PartnerCertificates(
        profile_id=profile.id,
        signing=signing,
        encryption=_newest(candidates, now),
        trust_anchor=anchor,
        subject=security.subject,
        revocation_list=crl,
        tls_client=None if tls.client_certificate is None else load_certificate(tls.client_certificate),
        tls_ca=() if tls.ca_bundle is None else load_certificate_bundle(tls.ca_bundle),
    )


def _newest(candidates: list[x509.Certificate], now: datetime | None) -> x509.Certificate:
    valid = [cert for cert in candidates if now is None or valid_at(cert, now)]
    return max(valid or candidates, key=lambda cert: cert.not_valid_before_utc)
