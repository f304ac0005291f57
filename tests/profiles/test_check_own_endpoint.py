"""A partner profile whose endpoint is this gateway's own (a wrong port typed in): messages to the partner come
back to us and are refused as from an unknown partner naming our own PartyId, and the send log's advice (pin
the partner's current certificate) would pin ours. ``profiles check`` says what it is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.interfaces.demo import write_profiles
from gateway.profiles import DevPki, generate_dev_pki
from gateway.profiles.check import Ourselves, check_folder
from tests.profiles.conftest import AUTHORITIES

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


@pytest.mark.parametrize(
    ("written", "ours"),
    [
        ("http://127.0.0.1:18483/as4", ("http://127.0.0.1:18483/as4",)),
        ("http://localhost:18483/as4/", ("http://0.0.0.0:18483/as4",)),
        ("https://as4.basg.example/as4", ("https://AS4.basg.example:443/as4", "http://127.0.0.1:18483/as4")),
    ],
)
def test_an_endpoint_that_is_our_own_is_named(
    pki: DevPki, tmp_path: Path, written: str, ours: tuple[str, ...]
) -> None:
    write_profiles(tmp_path, {"BE-FAMHP": written, "CH-SWISSMEDIC": "http://127.0.0.1:18482/as4"})
    ourselves = Ourselves(
        party_id="AT-BASG", party_id_type="urn:oasis:names:tc:ebcore:partyid-type:unregistered", endpoints=ours
    )

    result = check_folder(tmp_path, certificates_dir=pki.folder, now=NOW, warning_days=30, ourselves=ourselves)

    named = [w for w in result.warnings if "is this gateway's own AS4 endpoint" in w]
    assert len(named) == 1 and named[0].startswith("partner 'be-famhp' ("), result.warnings
    assert (
        f"endpoint {written} is this gateway's own AS4 endpoint ([http] host and port, or public_url)" in named[0]
    )
    assert "set endpoint to the URL the partner's administrator gives" in named[0]


def test_another_port_or_host_is_not_ours(pki: DevPki, tmp_path: Path) -> None:
    write_profiles(
        tmp_path, {"BE-FAMHP": "http://127.0.0.1:18481/as4", "CH-SWISSMEDIC": "http://10.0.0.5:18483/as4"}
    )
    ourselves = Ourselves(
        party_id="AT-BASG",
        party_id_type="urn:oasis:names:tc:ebcore:partyid-type:unregistered",
        endpoints=("http://127.0.0.1:18483/as4",),
    )

    result = check_folder(tmp_path, certificates_dir=pki.folder, now=NOW, warning_days=30, ourselves=ourselves)

    assert not [w for w in result.warnings if "own AS4 endpoint" in w], result.warnings


def test_an_ipv6_or_unreadable_address_neither_crashes_nor_matches_wrongly() -> None:
    """With [http].host = "::" our own URL was http://:::8480/as4, which urllib cannot read: the start, each
    reload and `profiles check` failed on the warning's check."""
    from gateway.profiles.check import is_own_endpoint
    from gateway.settings import HttpSettings

    ours = HttpSettings(host="::", port=8480).own_as4_urls()
    assert ours == ("http://[::]:8480/as4", "http://[::]:8480/as4")
    assert is_own_endpoint("http://[::1]:8480/as4", ours)
    assert not is_own_endpoint("http://[::1]:8481/as4", ours)
    typo = HttpSettings(public_url="https://gw.example.be:8443 /as4").own_as4_urls()
    assert not is_own_endpoint("https://gw.example.be:8443/as4", typo)
    assert not is_own_endpoint("http://127.0.0.1:port/as4", ours)
