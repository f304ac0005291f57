"""Profiles for the eDelivery AS4 2.0 suites (experimental): key types checked, the matching policy built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import structlog.testing
from cryptography.hazmat.primitives import serialization

from gateway.as4 import Suite
from gateway.as4.algorithms import KeyAgreement, SignatureMethod
from gateway.errors import ProfileError
from gateway.profiles import DevPki, load_certificate
from gateway.profiles.loader import load_profile
from gateway.profiles.model import SecuritySuite
from gateway.profiles.trust import partner_of
from tests.as4.suitekeys import ecc_pair, ed_x_pair
from tests.conftest import NOW as AS4_NOW

from .conftest import NOW as PKI_NOW

PROFILE = """\
id: ch-swissmedic
authority_name: Swissmedic
country: CH
party_id: CH-SWISSMEDIC
endpoint: https://as4.example.org/as4
security:
  suite: {suite}
  signing_certificate: {signing}
  encryption_certificate: {encryption}
"""


def _write(folder: Path, name: str, cert: object) -> str:
    (folder / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    return name


def test_an_ed25519_x25519_profile_loads_with_a_2_0_policy(
    tmp_path: Path, write_profile: Callable[..., Path]
) -> None:
    keys = ed_x_pair("CH-SWISSMEDIC")
    assert keys.agreement_certificate is not None
    text = PROFILE.format(
        suite="edelivery-as4-2.0",
        signing=_write(tmp_path, "sign.pem", keys.certificate),
        encryption=_write(tmp_path, "enc.pem", keys.agreement_certificate),
    )
    profile = load_profile(write_profile(text), certificates_dir=tmp_path, now=AS4_NOW)
    assert profile.security.suite is SecuritySuite.EDELIVERY_AS4_2_0
    partner = partner_of(profile, now=AS4_NOW)
    assert partner.certificates.encryption == keys.agreement_certificate
    assert partner.policy.suite is Suite.EDELIVERY_2_0
    assert partner.policy.signature_methods == {SignatureMethod.ED25519}
    assert partner.policy.key_agreement == {KeyAgreement.X25519}
    assert not partner.policy.key_transport


def test_an_ecc_profile_loads_with_an_ecc_policy(tmp_path: Path, write_profile: Callable[..., Path]) -> None:
    keys = ecc_pair("CH-SWISSMEDIC")
    name = _write(tmp_path, "ec.pem", keys.certificate)
    text = PROFILE.format(suite="edelivery-as4-2.0-ecc", signing=name, encryption=name)
    partner = partner_of(load_profile(write_profile(text), certificates_dir=tmp_path, now=AS4_NOW), now=AS4_NOW)
    assert partner.policy.signature_methods == {SignatureMethod.ECDSA_SHA256}
    assert partner.policy.key_agreement == {KeyAgreement.ECDH_ES}


def test_an_rsa_certificate_is_refused_naming_the_suite(
    pki: DevPki, tmp_path: Path, write_profile: Callable[..., Path]
) -> None:
    keys = ed_x_pair("CH-SWISSMEDIC")
    assert keys.agreement_certificate is not None
    rsa_cert = pki.folder / "ch-swissmedic.crt.pem"
    encryption = _write(pki.folder, "ch-enc-x25519.pem", keys.agreement_certificate)
    text = PROFILE.format(suite="edelivery-as4-2.0", signing=rsa_cert.name, encryption=encryption)
    with pytest.raises(ProfileError) as caught:
        load_profile(write_profile(text), certificates_dir=pki.folder)
    message = str(caught.value)
    assert "edelivery-as4-2.0 needs an Ed25519 key" in message
    assert "an RSA key of" in message


@pytest.mark.parametrize(
    ("suite", "kind"), [("edelivery-as4-2.0", "X25519"), ("edelivery-as4-2.0-ecc", "EC P-256")]
)
def test_a_2_0_profile_without_encryption_certificate_is_refused_naming_the_place(
    tmp_path: Path, write_profile: Callable[..., Path], suite: str, kind: str
) -> None:
    keys = ed_x_pair("CH-SWISSMEDIC") if kind == "X25519" else ecc_pair("CH-SWISSMEDIC")
    text = PROFILE.format(suite=suite, signing=_write(tmp_path, "sign.pem", keys.certificate), encryption="x")
    path = write_profile(text.replace("  encryption_certificate: x\n", ""))
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=tmp_path)
    assert str(caught.value) == (
        f"{path}:6:1 security.encryption_certificate: required for suite {suite}: name the partner's key "
        f"agreement certificate ({kind}), which is separate from its signing certificate in eDelivery AS4 2.0"
    )


def test_a_1_15_profile_still_encrypts_for_its_signing_certificate(
    pki: DevPki, write_profile: Callable[..., Path]
) -> None:
    text = PROFILE.format(suite="edelivery-as4-1.15", signing="ch-swissmedic.crt.pem", encryption="x")
    profile = load_profile(
        write_profile(text.replace("  encryption_certificate: x\n", "")), certificates_dir=pki.folder
    )
    partner = partner_of(profile, now=AS4_NOW)
    assert partner.certificates.encryption == partner.certificates.signing[0]


@pytest.mark.parametrize(
    ("signing_is", "encryption_is", "place", "needs"),
    [
        ("agreement", "agreement", "8:3 security.signing_certificate", "an Ed25519 key for signing"),
        ("signing", "signing", "9:3 security.encryption_certificate", "an X25519 key for encryption"),
    ],
)
def test_each_2_0_certificate_must_carry_the_key_of_its_use(
    tmp_path: Path, write_profile: Callable[..., Path], signing_is: str, encryption_is: str, place: str, needs: str
) -> None:
    keys = ed_x_pair("CH-SWISSMEDIC")
    certificates = {"signing": keys.certificate, "agreement": keys.agreement_certificate}
    text = PROFILE.format(
        suite="edelivery-as4-2.0",
        signing=_write(tmp_path, f"{signing_is}.pem", certificates[signing_is]),
        encryption=_write(tmp_path, f"{encryption_is}.pem", certificates[encryption_is]),
    )
    path = write_profile(text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=tmp_path)
    assert str(caught.value).startswith(f"{path}:{place}: certificate ")
    assert f"suite edelivery-as4-2.0 needs {needs}" in str(caught.value)


def test_loading_a_2_0_partner_warns_that_the_suite_is_experimental(
    tmp_path: Path, write_profile: Callable[..., Path]
) -> None:
    keys = ecc_pair("CH-SWISSMEDIC")
    name = _write(tmp_path, "ec.pem", keys.certificate)
    text = PROFILE.format(suite="edelivery-as4-2.0-ecc", signing=name, encryption=name)
    profile = load_profile(write_profile(text), certificates_dir=tmp_path, now=AS4_NOW)
    with structlog.testing.capture_logs() as logs:
        partner_of(profile, now=AS4_NOW)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1 and "EXPERIMENTAL" in warnings[0]["event"]
    assert warnings[0]["partner"] == "ch-swissmedic" and warnings[0]["suite"] == "edelivery-as4-2.0-ecc"


def test_the_shipped_2_0_example_loads_with_the_dev_pki(pki: DevPki) -> None:
    example = Path(__file__).resolve().parents[2] / "partner_profiles" / "examples" / "de-bfarm-2.0.yaml"
    partner = partner_of(load_profile(example, certificates_dir=pki.folder, now=PKI_NOW), now=PKI_NOW)
    assert partner.policy.suite is Suite.EDELIVERY_2_0
    assert partner.certificates.encryption == load_certificate(
        pki.files_for("DE-BFARM").suites[Suite.EDELIVERY_2_0].agreement_certificate
    )
