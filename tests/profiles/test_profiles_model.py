"""The profile model on its own: defaults once, frozen, strict."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.documents.types import DocumentType
from gateway.profiles import PartnerProfile, ReceptionAwareness, Security, SecuritySuite

REQUIRED = {
    "id": "ch-swissmedic",
    "authority_name": "Swissmedic",
    "country": "CH",
    "party_id": "CH-SWISSMEDIC",
    "endpoint": "http://127.0.0.1:18482/as4",
    "security": {"signing_certificate": "ch.crt.pem"},
}


def test_required_fields_are_enough() -> None:
    profile = PartnerProfile.model_validate(REQUIRED)

    assert profile.security.suite is SecuritySuite.EDELIVERY_AS4_1_15
    assert profile.security.encryption_candidates == (Path("ch.crt.pem"),)
    assert profile.documents.send == tuple(DocumentType)
    assert profile.reception_awareness.retry_delays_seconds == (5.0, 30.0, 120.0, 600.0, 1800.0)
    assert profile.reception_awareness.receipt_timeout_seconds == 60.0
    assert profile.reception_awareness.time_to_live_hours == 72.0


def test_profile_is_frozen_and_hashable() -> None:
    profile = PartnerProfile.model_validate(REQUIRED)

    with pytest.raises(ValidationError):
        profile.enabled = False  # type: ignore[misc]
    assert hash(profile) == hash(PartnerProfile.model_validate(REQUIRED))


def test_explicit_encryption_certificate_wins() -> None:
    security = Security(signing_certificate=Path("sign.pem"), encryption_certificate=Path("enc.pem"))

    assert security.encryption_candidates == (Path("enc.pem"),)


@pytest.mark.parametrize("url", ["http://127.0.0.1:18482/as4", "https://as4.example.org", "HTTPS://Host/x?y=1"])
def test_good_endpoints(url: str) -> None:
    assert PartnerProfile.model_validate({**REQUIRED, "endpoint": url}).endpoint == url


def test_retry_delay_repeats_the_last_delay() -> None:
    awareness = ReceptionAwareness(retries=4, retry_delays_seconds=(10.0, 60.0))

    assert [awareness.retry_delay(n) for n in (1, 2, 3, 4)] == [10.0, 60.0, 60.0, 60.0]
    with pytest.raises(ValueError, match="between 1 and 4"):
        awareness.retry_delay(5)


def test_no_retries_needs_no_delays() -> None:
    assert ReceptionAwareness(retries=0, retry_delays_seconds=()).retries == 0
