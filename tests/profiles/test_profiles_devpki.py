"""The development PKI: a CA, one certificate per authority, reused while valid."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.errors import KeyMaterialError
from gateway.profiles import DevAuthority, DevPki, generate_dev_pki, load_certificate, load_private_key

from .conftest import AUTHORITIES, NOW

BE, CH, _ = AUTHORITIES


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_files_and_readme(pki: DevPki) -> None:
    assert sorted(path.name for path in pki.folder.iterdir()) == [
        "README.txt",
        "be-famhp.crt.pem",
        "be-famhp.key.pem",
        "ca.crt.pem",
        "ca.key.pem",
        "ch-swissmedic.crt.pem",
        "ch-swissmedic.key.pem",
        "de-bfarm.crt.pem",
        "de-bfarm.key.pem",
    ]
    assert "NOT FOR PRODUCTION" in (pki.folder / "README.txt").read_text()
    assert "NOT encrypted" in (pki.folder / "README.txt").read_text()
    assert stat.S_IMODE(pki.files_for("BE-FAMHP").key.stat().st_mode) == 0o600


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
