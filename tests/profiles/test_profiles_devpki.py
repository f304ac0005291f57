"""The development PKI: a CA, one certificate per authority, reused while valid."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from gateway.as4 import Suite
from gateway.errors import KeyMaterialError
from gateway.profiles import DevAuthority, DevPki, generate_dev_pki, load_certificate, load_private_key
from gateway.profiles.suitekeys import suite_pair

from .conftest import AUTHORITIES, NOW

BE, CH, _ = AUTHORITIES


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_files_and_readme(pki: DevPki) -> None:
    per_party = [
        f"{kind}{suffix}"
        for kind in ("", ".ecdh", ".ecdsa", ".ed25519", ".x25519")
        for suffix in (".crt.pem", ".key.pem")
    ]
    assert sorted(path.name for path in pki.folder.iterdir()) == sorted(
        ["README.txt", "ca.crt.pem", "ca.key.pem"]
        + [f"{party}{name}" for party in ("be-famhp", "ch-swissmedic", "de-bfarm") for name in per_party]
    )
    assert "NOT FOR PRODUCTION" in (pki.folder / "README.txt").read_text()
    assert "NOT encrypted" in (pki.folder / "README.txt").read_text()
    assert stat.S_IMODE(pki.files_for("BE-FAMHP").key.stat().st_mode) == 0o600
    assert (
        stat.S_IMODE(pki.files_for("BE-FAMHP").suites[Suite.EDELIVERY_2_0].agreement_key.stat().st_mode) == 0o600
    )
    assert "EXPERIMENTAL" in (pki.folder / "README.txt").read_text()


@pytest.mark.parametrize(
    ("suite", "signing_type", "agreement_type"),
    [
        (Suite.EDELIVERY_2_0, ed25519.Ed25519PublicKey, x25519.X25519PublicKey),
        (Suite.EDELIVERY_2_0_ECC, ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey),
    ],
)
def test_2_0_keys_are_issued_by_the_ca_for_their_purpose(
    pki: DevPki, suite: Suite, signing_type: type, agreement_type: type
) -> None:
    files = pki.files_for("CH-SWISSMEDIC").suites[suite]
    ca = load_certificate(pki.ca_certificate)
    signing, agreement = load_certificate(files.certificate), load_certificate(files.agreement_certificate)
    for certificate in (signing, agreement):
        certificate.verify_directly_issued_by(ca)
        assert certificate.subject == CH.subject()
    assert isinstance(signing.public_key(), signing_type)
    assert isinstance(agreement.public_key(), agreement_type)
    assert signing.public_key() != agreement.public_key()
    assert signing.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert agreement.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    assert not agreement.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    pair = suite_pair(
        suite,
        load_private_key(files.key, None),
        signing,
        load_private_key(files.agreement_key, None),
        agreement,
        what="dev keys",
    )
    assert pair.encryption_certificate == agreement


def test_leaf_is_issued_by_the_ca(pki: DevPki) -> None:
    ca = load_certificate(pki.ca_certificate)
    leaf = load_certificate(pki.files_for("CH-SWISSMEDIC").certificate)

    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CH-SWISSMEDIC"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Swissmedic"
    assert leaf.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CH"


def test_extensions_and_validity(pki: DevPki) -> None:
    ca = load_certificate(pki.ca_certificate)
    leaf = load_certificate(pki.files_for("BE-FAMHP").certificate)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650, hours=1)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert leaf.not_valid_before_utc == NOW - timedelta(hours=1)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=730)
    key = load_private_key(pki.files_for("BE-FAMHP").key, None)
    public = leaf.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert key.public_key() == public


def test_second_run_reuses_valid_files(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, [BE, CH], now=NOW)
    before = snapshot(tmp_path)

    generate_dev_pki(tmp_path, [BE, CH], now=NOW + timedelta(days=300))

    assert snapshot(tmp_path) == before


def test_new_authority_reuses_the_ca(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, [BE], now=NOW)
    before = snapshot(tmp_path)

    pki = generate_dev_pki(tmp_path, [BE, CH], now=NOW)

    after = snapshot(tmp_path)
    assert {name: after[name] for name in before} == before
    load_certificate(pki.files_for("CH-SWISSMEDIC").certificate).verify_directly_issued_by(
        load_certificate(pki.ca_certificate)
    )


def test_expired_leaf_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, [BE], now=NOW)
    ca_before = (tmp_path / "ca.crt.pem").read_bytes()
    later = NOW + timedelta(days=800)

    pki = generate_dev_pki(tmp_path, [BE], now=later)

    assert (tmp_path / "ca.crt.pem").read_bytes() == ca_before
    leaf = load_certificate(pki.files_for("BE-FAMHP").certificate)
    assert leaf.not_valid_before_utc == later - timedelta(hours=1)
    leaf.verify_directly_issued_by(load_certificate(pki.ca_certificate))


def test_new_ca_reissues_every_leaf(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, [BE], now=NOW)
    leaf_before = (tmp_path / "be-famhp.crt.pem").read_bytes()
    (tmp_path / "ca.key.pem").unlink()

    pki = generate_dev_pki(tmp_path, [BE], now=NOW)

    assert (tmp_path / "be-famhp.crt.pem").read_bytes() != leaf_before
    load_certificate(pki.files_for("BE-FAMHP").certificate).verify_directly_issued_by(
        load_certificate(pki.ca_certificate)
    )


def test_damaged_or_renamed_leaf_is_reissued(tmp_path: Path) -> None:
    generate_dev_pki(tmp_path, [BE], now=NOW)
    (tmp_path / "be-famhp.key.pem").write_text("damaged")

    pki = generate_dev_pki(tmp_path, [DevAuthority("BE-FAMHP", "FAMHP (renamed)", "BE")], now=NOW)

    leaf = load_certificate(pki.files_for("BE-FAMHP").certificate)
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "FAMHP (renamed)"
    assert load_private_key(pki.files_for("BE-FAMHP").key, None).public_key() == leaf.public_key()


def test_unknown_party(pki: DevPki) -> None:
    with pytest.raises(
        KeyMaterialError, match="no certificate for PartyId 'FR-ANSM'; it has: BE-FAMHP, CH-SWISSMEDIC"
    ):
        pki.files_for("FR-ANSM")


@pytest.mark.parametrize(
    ("authorities", "message"),
    [
        ([DevAuthority("CA", "Canada", "CA")], "reserved"),
        ([DevAuthority("BE FAMHP", "x", "BE"), DevAuthority("be-famhp", "y", "BE")], "would share the files"),
    ],
)
def test_clashing_file_names_are_refused(authorities: list[DevAuthority], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        generate_dev_pki(tmp_path, authorities, now=NOW)


@pytest.mark.parametrize(
    ("party_id", "name", "country"),
    [("", "x", "BE"), ("BE", "", "BE"), ("BE", "x", "Belgium"), ("X" * 65, "x", "BE")],
)
def test_bad_authority(party_id: str, name: str, country: str) -> None:
    with pytest.raises(ValueError):
        DevAuthority(party_id, name, country)
