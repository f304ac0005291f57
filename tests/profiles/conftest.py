from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.profiles import DevAuthority, DevPki, generate_dev_pki

from .helpers import default_structlog

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
DEMO_PROFILES = REPO / "partner_profiles"
AUTHORITIES = (
    DevAuthority("BE-FAMHP", "Federal Agency for Medicines and Health Products", "BE"),
    DevAuthority("CH-SWISSMEDIC", "Swissmedic", "CH"),
    DevAuthority("DE-BFARM", "Bundesinstitut für Arzneimittel und Medizinprodukte", "DE"),
)

MINIMAL = """\
# a minimal profile
id: ch-swissmedic
authority_name: Swissmedic
country: CH
party_id: CH-SWISSMEDIC
endpoint: https://as4.example.org/as4
security:
  suite: edelivery-as4-1.15
  signing_certificate: ch-swissmedic.crt.pem
"""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A development PKI shared by the tests that only read it."""
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    folder = tmp_path / "profiles"
    folder.mkdir()

    def write(text: str, name: str = "partner.yaml") -> Path:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()
