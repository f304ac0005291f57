"""Profiles for the eDelivery AS4 2.0 suites (experimental): key types checked, the matching policy built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.as4 import Suite
from gateway.as4.algorithms import KeyAgreement, SignatureMethod
from gateway.errors import ProfileError
from gateway.profiles import DevPki
from gateway.profiles.loader import load_profile
from gateway.profiles.model import SecuritySuite
from gateway.profiles.trust import partner_of
from tests.as4.test_edelivery2 import ecc_pair, ed_x_pair
from tests.conftest import NOW as AS4_NOW

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
