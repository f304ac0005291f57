"""A profile on disk whose delivery.folder is inside one of the gateway's own folders other than through the inbox
(``settings.guarded_folders``, ``guarding``) has every delivery refused and retried until it is fixed. Such a
profile, accepted before the rule covered the data folder, must be named at start, after a reload and by
``profiles check`` (an error: exit 1), not only in each failed delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from gateway.interfaces.cli import app
from gateway.interfaces.demo import write_profiles
from gateway.interfaces.node import NODE, use_partners
from gateway.profiles import DevPki
from gateway.profiles.loader import load_profiles
from gateway.profiles.trust import Partners
from tests.e2e.conftest import RETRIES, Harness, harness  # noqa: F401
from tests.profiles.helpers import default_structlog, profile_text

WARNING = "a partner's delivery folder is inside one of the gateway's own folders"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


def deliver_swiss_permits_to(harness: Harness, folder: Path) -> Path:  # noqa: F811
    """The shared profile folder, Switzerland's profile delivering to ``folder``; its file."""
    profiles = harness.tmp / "profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(profiles, endpoints, extra=RETRIES)
    swiss = profiles / "ch-swissmedic.yaml"
    swiss.write_text(swiss.read_text() + f"delivery:\n  folder: {folder}\n")
    return swiss


def warnings_in(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"].startswith(WARNING)]


async def test_a_delivery_folder_in_the_data_folder_is_named_at_start(harness: Harness) -> None:  # noqa: F811
    data_dir = harness.settings("BE-FAMHP").data_dir
    received = data_dir / "received" / "ch"
    swiss = deliver_swiss_permits_to(harness, received)

    with capture_logs() as logs:
        await harness.start("BE-FAMHP")

    [said] = warnings_in(logs)
    assert said["log_level"] == "warning"
    assert said["partner"] == "ch-swissmedic"
    assert said["file"] == str(swiss)
    assert said["delivery_folder"] == str(received)
    assert said["inside"] == f"the gateway's data folder (data_dir) ({data_dir.resolve()})"
    assert "set delivery.folder in the profile to the inbox ([folders].inbox) or a folder inside it" in said["fix"]
    assert "or leave it out" in said["fix"]


async def test_a_reload_bringing_such_a_folder_is_named(harness: Harness) -> None:  # noqa: F811
    inbox = harness.settings("BE-FAMHP").folders.inbox
    deliver_swiss_permits_to(harness, inbox / "ch")
    running = await harness.start("BE-FAMHP")
    rejected = running.settings.folders.rejected / "ch"
    deliver_swiss_permits_to(harness, rejected)
    settings = running.settings
    partners = Partners(
        load_profiles(settings.profiles.folder, certificates_dir=settings.profiles.certificates),
        now=harness.clock.now(),
        max_age=settings.inbound.duplicate_window,
    )

    with capture_logs() as logs:
        use_partners(running.runner.app[NODE], partners)  # what the profile watcher does on a change

    [said] = warnings_in(logs)
    assert (said["partner"], said["delivery_folder"]) == ("ch-swissmedic", str(rejected))
    assert said["inside"].startswith("the rejected folder ([folders].rejected)")


async def test_a_delivery_folder_inside_the_inbox_in_the_data_folder_is_not_named(
    harness: Harness,  # noqa: F811
) -> None:
    settings = harness.settings("BE-FAMHP")
    assert settings.folders.inbox.resolve().is_relative_to(settings.data_dir.resolve())
    deliver_swiss_permits_to(harness, settings.folders.inbox / "ch")

    with capture_logs() as logs:
        await harness.start("BE-FAMHP")

    assert not warnings_in(logs), logs
    assert [e for e in logs if e["event"] == "gateway started"]


# --- profiles check ---------------------------------------------------------------------------------------


def default_layout(tmp_path: Path, pki: DevPki, delivery_folder: str) -> tuple[Path, Path]:
    """conf/gateway.toml with the shipped layout (data_dir ../var, the inbox ../var/inbox) and a profile folder
    beside it whose Swiss profile delivers to ``delivery_folder`` (relative to the profile's folder); the config
    and the profile's file."""
    conf = tmp_path / "conf"
    conf.mkdir()
    files = pki.files_for("DE-BFARM")
    config = conf / "gateway.toml"
    config.write_text(
        f"""data_dir = "../var"
[identity]
party_id = "DE-BFARM"
country = "DE"
authority_name = "An authority"
[profiles]
folder = "../profiles"
certificates = "{pki.folder}"
[keys]
private_key = "{files.key}"
certificate = "{files.certificate}"
"""
    )
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    swiss = profiles / "ch-swissmedic.yaml"
    text = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
    swiss.write_text(text + f"delivery:\n  folder: {delivery_folder}\n")
    return config, swiss


def check(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["profiles", "check", "--config", str(config)], env={})
    return result.exit_code, " ".join(result.output.split())


def test_profiles_check_fails_on_a_delivery_folder_in_the_data_folder(tmp_path: Path, pki: DevPki) -> None:
    """Yesterday's accepted profile: ../var/received/ch under the default layout."""
    config, swiss = default_layout(tmp_path, pki, "../var/received/ch")

    code, output = check(config)

    assert code == 1, output
    assert (
        f"error partner 'ch-swissmedic' ({swiss}): delivery.folder {tmp_path / 'profiles/../var/received/ch'} is "
        f"inside the gateway's data folder (data_dir) ({(tmp_path / 'var').resolve()})" in output
    )
    assert "received permits go only to the inbox or a folder inside it" in output
    assert "every delivery from this partner fails and is retried until it is fixed" in output
    assert "set delivery.folder in the profile to the inbox ([folders].inbox) or a folder inside it" in output
    assert "partner profile(s) OK" not in output


def test_profiles_check_takes_a_delivery_folder_inside_the_inbox(tmp_path: Path, pki: DevPki) -> None:
    config, _ = default_layout(tmp_path, pki, "../var/inbox/ch")

    code, output = check(config)

    assert code == 0, output
    assert "delivery.folder" not in output and "error" not in output, output
    assert "1 partner profile(s) OK: ch-swissmedic" in output
