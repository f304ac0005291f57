"""Loading and checking certificates and private keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.errors import KeyMaterialError
from gateway.profiles import (
    DevPki,
    PartnerProfile,
    Security,
    check_certificate,
    days_to_expiry,
    load_certificate,
    load_private_key,
    resolve_certificates,
)

from .conftest import NOW


def test_pem_and_der_load_alike(pki: DevPki, tmp_path: Path) -> None:
    pem = load_certificate(pki.ca_certificate)
    der_path = tmp_path / "ca.cer"
    der_path.write_bytes(pem.public_bytes(serialization.Encoding.DER))

    assert load_certificate(der_path) == pem


def test_missing_certificate_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_certificate(tmp_path / "absent.pem")
    assert str(caught.value) == f"certificate file {tmp_path / 'absent.pem'} not found"


def test_unreadable_certificate_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match=f"certificate file {tmp_path} cannot be read"):
        load_certificate(tmp_path)


def test_garbage_is_not_a_certificate(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyMaterialError, match=r"holds no X\.509 certificate; expected one in PEM or DER form"):
        load_certificate(tmp_path / "x.pem")


def _retagged_subject(pki: DevPki) -> bytes:
    """The CA certificate with its subject's first string value retagged NULL: it loads, but its subject
    cannot be read (cryptography parses names lazily)."""
    cert = load_certificate(pki.ca_certificate)
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    subject = cert.subject.public_bytes()
    start = der.rindex(subject)
    value_tag = start + next(i for i, b in enumerate(subject) if b in (0x0C, 0x13) and i > 6)
    der[value_tag] = 0x05
    return bytes(der)


def test_a_certificate_whose_subject_cannot_be_read_is_refused_on_loading(pki: DevPki, tmp_path: Path) -> None:
    path = tmp_path / "broken.cer"
    path.write_bytes(_retagged_subject(pki))
    with pytest.raises(KeyMaterialError) as caught:
        load_certificate(path)
    assert str(caught.value).startswith(
        f"certificate file {path} holds a malformed X.509 certificate: its subject"
    )


def test_a_certificate_of_an_unknown_version_is_no_certificate(pki: DevPki, tmp_path: Path) -> None:
    der = load_certificate(pki.ca_certificate).public_bytes(serialization.Encoding.DER)
    path = tmp_path / "v34.cer"
    path.write_bytes(der.replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020121"), 1))
    with pytest.raises(KeyMaterialError) as caught:
        load_certificate(path)
    assert "holds no X.509 certificate" in str(caught.value)


@pytest.mark.parametrize(
    ("label", "passphrase", "expected"),
    [
        ("06032b655c", None, "holds a key of a type the gateway cannot use"),  # 1.3.101.92: UnsupportedAlgorithm
        ("06032b6571", b"pw", "cannot be loaded"),  # Ed448's label on 32 bytes: OpenSSL's InternalError
    ],
    ids=["unknown-type", "relabelled-ed448"],
)
def test_a_private_key_cryptography_cannot_use_is_a_key_file_error(
    label: str, passphrase: bytes | None, expected: str, tmp_path: Path
) -> None:
    """Found fuzzing key files: cryptography raised UnsupportedAlgorithm or InternalError, no ValueError."""
    der = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "key.der"
    path.write_bytes(der.replace(bytes.fromhex("06032b6570"), bytes.fromhex(label), 1))  # Ed25519's OID relabelled
    with pytest.raises(KeyMaterialError) as caught:
        load_private_key(path, passphrase)
    assert str(caught.value).startswith(f"private key file {path} {expected}")


def test_private_key_plain_encrypted_and_der(pki: DevPki, tmp_path: Path) -> None:
    key = load_private_key(pki.files_for("BE-FAMHP").key, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    encrypted = tmp_path / "enc.key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    der = tmp_path / "key.der"
    der.write_bytes(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    assert load_private_key(encrypted, b"secret").public_key() == key.public_key()
    assert load_private_key(der, None).public_key() == key.public_key()
    with pytest.raises(KeyMaterialError, match="is encrypted and needs a passphrase"):
        load_private_key(encrypted, None)
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_private_key(encrypted, b"guess")
    with pytest.raises(KeyMaterialError, match="is not encrypted, so give no passphrase"):
        load_private_key(der, b"secret")
    with pytest.raises(KeyMaterialError, match=r"private key file .* not found"):
        load_private_key(tmp_path / "none.pem", None)


def test_a_certificate_named_as_the_private_key_is_said_to_be_one(pki: DevPki) -> None:
    """The walkthrough's newcomer swapped the two files: "wrong passphrase, or not a PEM/DER private key" did not
    say which, though the file is plainly a certificate."""
    certificate = pki.files_for("BE-FAMHP").certificate
    with pytest.raises(KeyMaterialError, match="it holds a certificate, not a private key; name the key file"):
        load_private_key(certificate, None)


def test_check_certificate_over_its_lifetime(pki: DevPki) -> None:
    certificate = load_certificate(pki.files_for("BE-FAMHP").certificate)
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc

    check_certificate(certificate, now=start, purpose="signing certificate")
    check_certificate(certificate, now=end, purpose="signing certificate")
    with pytest.raises(KeyMaterialError) as early:
        check_certificate(certificate, now=start - timedelta(seconds=1), purpose="signing certificate of be")
    with pytest.raises(KeyMaterialError) as late:
        check_certificate(certificate, now=end + timedelta(days=3), purpose="signing certificate of be")

    subject = "C=BE,O=Federal Agency for Medicines and Health Products,CN=BE-FAMHP"
    assert str(early.value) == (
        f"signing certificate of be ({subject}) is not valid before 2026-03-01 08:30 UTC "
        "(it is now 2026-03-01 08:29 UTC); check this host's clock or wait until then"
    )
    assert str(late.value) == (
        f"signing certificate of be ({subject}) expired on 2028-02-29 09:30 UTC "
        "(valid from 2026-03-01, it is now 2028-03-03 09:30 UTC); obtain the renewed certificate and replace the file"
    )


def test_days_to_expiry(pki: DevPki) -> None:
    certificate = load_certificate(pki.files_for("BE-FAMHP").certificate)

    assert days_to_expiry(certificate, now=NOW) == 730
    assert days_to_expiry(certificate, now=NOW + timedelta(days=729, hours=1)) == 0
    assert days_to_expiry(certificate, now=NOW + timedelta(days=731)) == -1


def test_naive_time_is_refused(pki: DevPki) -> None:
    certificate = load_certificate(pki.ca_certificate)
    with pytest.raises(ValueError, match="timezone-aware"):
        check_certificate(certificate, now=datetime(2026, 3, 1), purpose="x")


def test_resolve_certificates_loads_signing_and_encryption(pki: DevPki) -> None:
    profile = PartnerProfile(
        id="be-famhp",
        authority_name="FAMHP",
        country="BE",
        party_id="BE-FAMHP",
        endpoint="https://as4.example.org/as4",
        security=Security(
            signing_certificate=pki.files_for("BE-FAMHP").certificate,
            encryption_certificate=pki.files_for("DE-BFARM").certificate,
        ),
    )

    certificates = resolve_certificates(profile)

    [signing] = certificates.signing
    assert signing.subject.rfc4514_string().endswith("CN=BE-FAMHP")
    assert certificates.encryption.subject.rfc4514_string().endswith("CN=DE-BFARM")
    certificates.check(now=NOW)
    with pytest.raises(KeyMaterialError, match=r"^signing certificate of partner 'be-famhp' .* expired on"):
        certificates.check(now=NOW + timedelta(days=800))


def test_resolve_certificates_names_a_missing_file(pki: DevPki, tmp_path: Path) -> None:
    profile = PartnerProfile(
        id="be-famhp",
        authority_name="FAMHP",
        country="BE",
        party_id="BE-FAMHP",
        endpoint="https://as4.example.org/as4",
        security=Security(signing_certificate=tmp_path / "gone.pem"),
    )
    with pytest.raises(KeyMaterialError, match=r"gone\.pem not found"):
        resolve_certificates(profile)
