"""``profiles check`` warns of a partner profile that names ourselves: our PartyId ([identity]), or one of our
own certificates ([keys] files or keystore) pinned where the partner's belongs. Warnings, not errors: the demo
runs two gateways from one folder that holds both authorities' profiles."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.interfaces.cli import app
from gateway.profiles import DevPki, generate_dev_pki
from gateway.profiles.keystore import list_keys
from tests.profiles.conftest import AUTHORITIES, DEMO_PROFILES
from tests.profiles.helpers import default_structlog, profile_text

PASSPHRASE = "check-ourselves-passphrase"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=datetime.now(UTC))


def write_config(tmp_path: Path, *, party: str, country: str, profiles: Path, certs: Path, keys: str) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""data_dir = "var"
[identity]
party_id = "{party}"
country = "{country}"
authority_name = "An authority"
[profiles]
folder = "{profiles}"
certificates = "{certs}"
[keys]
{keys}
"""
    )
    return config


def check(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["profiles", "check", "--config", str(config)], env={"OWN_PASS": PASSPHRASE})
    return result.exit_code, " ".join(result.output.split())


def key_files(pki: DevPki, party: str) -> str:
    files = pki.files_for(party)
    return f'private_key = "{files.key}"\ncertificate = "{files.certificate}"'


def test_the_demo_folder_under_the_shipped_identity_warns_of_our_own_profile(tmp_path: Path, pki: DevPki) -> None:
    """The shipped configuration is BE-FAMHP, and partner_profiles/ (the demo's) holds be-famhp.yaml."""
    config = write_config(
        tmp_path,
        party="BE-FAMHP",
        country="BE",
        profiles=DEMO_PROFILES,
        certs=pki.folder,
        keys=key_files(pki, "BE-FAMHP"),
    )

    code, output = check(config)

    assert code == 0, output
    assert f"{DEMO_PROFILES}: 2 partner profile(s) OK" in output
    own = DEMO_PROFILES / "be-famhp.yaml"
    assert (
        f"warning partner 'be-famhp' ({own}): party_id 'BE-FAMHP' is our own PartyId ([identity].party_id)"
        in output
    )
    assert "set party_id to the partner's PartyId, or remove the file if it is our own profile" in output
    # and it pins our own certificate, the one [keys].certificate names
    assert (
        f"({own}): security.signing_certificate {pki.folder / 'be-famhp.crt.pem'} is our own certificate "
        "([keys].certificate, SHA-256 " in output
    )
    assert output.count("warning partner") == 2, output  # Switzerland's profile is a partner's: nothing to say


def test_a_partner_profile_pinning_our_certificate_is_named_with_its_field(tmp_path: Path, pki: DevPki) -> None:
    """A copy/paste slip: Switzerland's profile pins our (Germany's) certificate."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "ch-swissmedic.yaml").write_text(profile_text("ch-swissmedic", "de-bfarm.crt.pem"))
    config = write_config(
        tmp_path,
        party="DE-BFARM",
        country="DE",
        profiles=profiles,
        certs=pki.folder,
        keys=key_files(pki, "DE-BFARM"),
    )

    code, output = check(config)

    assert code == 0, output
    assert (
        f"warning partner 'ch-swissmedic' ({profiles / 'ch-swissmedic.yaml'}): security.signing_certificate "
        f"{pki.folder / 'de-bfarm.crt.pem'} is our own certificate ([keys].certificate, SHA-256 " in output
    )
    assert "name the partner's certificate there" in output
    assert "our own PartyId" not in output


def test_our_keystore_certificate_as_a_partners_encryption_certificate(tmp_path: Path, pki: DevPki) -> None:
    keys = 'keystore = "keystore"\npassphrase_env = "OWN_PASS"'
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    certs = tmp_path / "certs"
    shutil.copytree(pki.folder, certs)
    config = write_config(tmp_path, party="DE-BFARM", country="DE", profiles=profiles, certs=certs, keys=keys)
    generated = CliRunner().invoke(
        app, ["keys", "generate", "--config", str(config)], env={"OWN_PASS": PASSPHRASE}
    )
    assert generated.exit_code == 0, generated.output
    (ours,) = list_keys(tmp_path / "keystore")
    shutil.copy(tmp_path / "keystore" / f"{ours.record.id}.crt.pem", certs / "ours.crt.pem")
    (profiles / "ch-swissmedic.yaml").write_text(
        profile_text("ch-swissmedic", "ch-swissmedic.crt.pem") + "  encryption_certificate: ours.crt.pem\n"
    )

    result = CliRunner().invoke(app, ["profiles", "check", "--config", str(config)], env={})  # no passphrase
    output = " ".join(result.output.split())

    assert result.exit_code == 0, output
    assert (
        f"security.encryption_certificate {certs / 'ours.crt.pem'} is our own certificate ([keys].keystore key "
        f"{ours.record.id}, SHA-256 {ours.fingerprint[:16]}" in output
    )


def test_a_folder_of_partners_only_has_nothing_to_say(tmp_path: Path, pki: DevPki) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "ch-swissmedic.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem"))
    config = write_config(
        tmp_path,
        party="DE-BFARM",
        country="DE",
        profiles=profiles,
        certs=pki.folder,
        keys=key_files(pki, "DE-BFARM"),
    )

    code, output = check(config)

    assert code == 0 and "warning" not in output, output
