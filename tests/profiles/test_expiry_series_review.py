"""Certificates that share owner, purpose and subject (a renewal keeps its subject) share one expiry series:
it shows the one in use that runs out first, never the renewal that is not valid yet."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gateway.profiles import load_profiles
from gateway.profiles.expiry import check_expiry
from gateway.profiles.metrics import REGISTRY
from gateway.profiles.trust import Partners

from .conftest import NOW
from .helpers import certificate, rsa_key, write_certificate

PROFILE = """id: ch-swissmedic
authority_name: Swissmedic
country: CH
party_id: CH-SWISSMEDIC
endpoint: https://as4.example.org/as4
security:
  suite: edelivery-as4-1.15
  signing_certificates: [{certs}]
"""
# in use now, expires in 5 days
CURRENT = certificate("CH-SWISSMEDIC", key=rsa_key(1), not_before=NOW - timedelta(days=360), days=365)
# the partner's renewal, same subject, valid only from 20 days on: a 15-day gap is coming
RENEWAL = certificate("CH-SWISSMEDIC", key=rsa_key(2), not_before=NOW + timedelta(days=20), days=730)
EXPIRED = certificate("CH-SWISSMEDIC", key=rsa_key(3), not_before=NOW - timedelta(days=400), days=390)


def exported() -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for metric in REGISTRY.collect()
        if metric.name == "permit_gateway_certificate_expiry_days"
        for sample in metric.samples
    ]


def partners_with(tmp_path: Path, certs: list[x509.Certificate]) -> Partners:
    folder = tmp_path / "certs"
    folder.mkdir()
    names = [write_certificate(folder / f"{n}.pem", cert).name for n, cert in enumerate(certs)]
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "ch.yaml").write_text(PROFILE.format(certs=", ".join(names)))
    return Partners(load_profiles(profiles, certificates_dir=folder), now=NOW)


@pytest.mark.parametrize("order", [[CURRENT, RENEWAL], [RENEWAL, CURRENT]])
def test_a_renewal_not_valid_yet_does_not_hide_the_certificate_that_expires(
    tmp_path: Path, order: list[x509.Certificate]
) -> None:
    check_expiry(partners_with(tmp_path, order), now=NOW, warning_days=60)

    labels = {"owner": "ch-swissmedic", "purpose": "signing", "subject": "CN=CH-SWISSMEDIC"}
    assert exported() == [(labels, 5.0)]  # PermitGatewayCertificateExpiring: `< 30`


@pytest.mark.parametrize(
    ("own", "shown"),
    [
        ([EXPIRED, CURRENT], 5.0),  # the expired one is logged as an error; the series follows the one in use
        ([EXPIRED, RENEWAL], -10.0),  # none valid now: the soonest of all, so the alert fires
        ([RENEWAL], 750.0),
    ],
)
def test_without_a_certificate_valid_now_the_series_shows_the_soonest(
    tmp_path: Path, own: list[x509.Certificate], shown: float
) -> None:
    partners = partners_with(tmp_path, [CURRENT])
    check_expiry(partners, [("current", cert) for cert in own], now=NOW, warning_days=60)

    labels = {"owner": "self", "purpose": "current", "subject": "CN=CH-SWISSMEDIC"}
    assert (labels, shown) in exported()
