"""The folders received permits must stay out of, one rule for the start-up check, the delivery worker and the
admin edit: a delivery folder may be the inbox or inside it, never one of the gateway's own folders nor inside
one, whichever nests in which (the deepest guarded folder holding the target decides)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.interfaces.demo import Running, message, submit, wait_for, write_profiles
from gateway.interfaces.profiles_cli import _editor
from gateway.profiles.editor import InvalidProfile, Precondition
from gateway.profiles.keystore import import_key
from gateway.settings import FolderSettings, KeySettings, Settings, guard_table, guarding
from tests.e2e.conftest import Harness, example, harness, session  # noqa: F401 - the e2e fixtures

IA = "BE-IA-2026-0001.xml"
PASSPHRASE_ENV = "GUARDED_FOLDERS_TEST_PASSPHRASE"


def _keystore_in_inbox(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Settings:  # noqa: F811 - a fixture's name
    """Switzerland's settings with its keys (the dev PKI's) in a keystore placed inside its inbox, which is
    itself inside its data folder (the demo layout)."""
    settings = harness.settings("CH-SWISSMEDIC")
    keystore = settings.folders.inbox / "keys"
    monkeypatch.setenv(PASSPHRASE_ENV, "keystore passphrase")
    files = harness.pki.files_for("CH-SWISSMEDIC")
    import_key(
        keystore,
        b"keystore passphrase",
        key_file=files.key,
        certificate_file=files.certificate,
        key_passphrase=None,
        now=harness.clock.now(),
    )
    return settings.model_copy(update={"keys": KeySettings(keystore=keystore, passphrase_env=PASSPHRASE_ENV)})


async def _received(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    folder: Path,
    ch_settings: Settings | None = None,
) -> tuple[Running, str]:
    """Both gateways, every profile on disk naming ``folder`` as its delivery folder; Belgium sends Switzerland
    an import authorization, which Switzerland accepts."""
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=f"delivery:\n  folder: {folder}\n")
    be = await harness.start("BE-FAMHP")
    settings = ch_settings or harness.settings("CH-SWISSMEDIC")
    ch = await harness.start("CH-SWISSMEDIC", **{k: getattr(settings, k) for k in ("keys", "folders")})
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    await wait_for(session, be, message_id, "ACKNOWLEDGED")
    return ch, message_id


async def _delivered_or_failed(
    session: aiohttp.ClientSession,  # noqa: F811
    ch: Running,
    message_id: str,
) -> dict[str, Any]:
    """The message once its first delivery attempt is over: delivered, or failed with its reason."""
    for _ in range(200):
        found = await message(session, ch, message_id)
        if found is not None and (
            found["state"] == "DELIVERED" or any(e["kind"] == "delivery_failed" for e in found["events"])
        ):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} was neither delivered nor failed")


def _failure(found: dict[str, Any]) -> str:
    assert found["state"] == "ACCEPTED", found["state"]
    reason: str = next(e for e in found["events"] if e["kind"] == "delivery_failed")["detail"]["reason"]
    return reason


async def test_a_delivery_folder_inside_a_keystore_in_the_inbox_is_a_delivery_failure_naming_it(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the review: only a delivery folder that WAS the keystore was refused; one inside it (the
    keystore placed in the inbox) received the permits among the gateway's private keys."""
    settings = _keystore_in_inbox(harness, monkeypatch)
    assert settings.keys.keystore is not None
    folder = settings.keys.keystore / "received"

    ch, message_id = await _received(harness, session, folder, settings)
    reason = _failure(await _delivered_or_failed(session, ch, message_id))

    assert (
        f"the delivery folder of partner 'be-famhp' ({folder}) is inside the keystore ([keys].keystore)" in reason
    )
    assert "set delivery.folder in that profile to the inbox or a folder inside it" in reason
    assert not list(settings.keys.keystore.rglob("*.xml"))


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("profiles", "inside the partner profile folder ([profiles].folder)"),
        ("data", "inside the gateway's data folder (data_dir)"),
        ("rejected", "inside the rejected folder ([folders].rejected)"),
    ],
)
async def test_a_delivery_folder_inside_a_folder_of_the_gateway_is_a_delivery_failure_naming_it(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    where: str,
    named: str,
) -> None:
    """Found by the review: the delivery worker refused only these folders themselves, so a profile on disk
    naming a folder inside one had the permits written among the profiles, the database or the refused files."""
    settings = harness.settings("CH-SWISSMEDIC")
    inside = {
        "profiles": settings.profiles.folder,
        "data": settings.data_dir,
        "rejected": settings.folders.rejected,
    }[where]
    folder = inside / "received"

    ch, message_id = await _received(harness, session, folder)
    reason = _failure(await _delivered_or_failed(session, ch, message_id))

    assert f"the delivery folder of partner 'be-famhp' ({folder}) is {named}" in reason, reason
    assert not folder.exists() or not list(folder.glob("*.xml"))


async def test_a_delivery_folder_inside_the_inbox_in_the_data_folder_is_delivered(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """The inbox lies inside the data folder in the demo layout: a folder in the inbox is the inbox's."""
    settings = harness.settings("CH-SWISSMEDIC")
    assert settings.folders.inbox.is_relative_to(settings.data_dir)
    folder = settings.folders.inbox / "from-belgium"

    ch, message_id = await _received(harness, session, folder)
    found = await _delivered_or_failed(session, ch, message_id)

    assert found["state"] == "DELIVERED", found["events"]
    assert len(list(folder.glob("*.xml"))) == 1


def _delivery_edit(settings: Settings, folder: Path) -> None:
    """The edit the admin API and 'permit-gateway profiles' make: be-famhp's delivery folder set to ``folder``."""
    profiles = settings.profiles.folder
    profiles.mkdir(parents=True, exist_ok=True)
    write_profiles(profiles, {"BE-FAMHP": "http://127.0.0.1:1/as4", "CH-SWISSMEDIC": "http://127.0.0.1:2/as4"})
    _editor(settings).merge(
        "be-famhp", {"delivery": {"folder": str(folder)}}, condition=Precondition(if_match="*"), actor="t"
    )


def test_an_edit_naming_a_folder_inside_a_keystore_in_the_inbox_is_refused(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the review: the editor's own list of guarded folders had no keystore, so a folder inside a
    keystore placed in the inbox counted as inside the inbox, and the admin token could send permits there."""
    settings = _keystore_in_inbox(harness, monkeypatch)
    assert settings.keys.keystore is not None
    folder = settings.keys.keystore / "received"

    with pytest.raises(InvalidProfile) as caught:
        _delivery_edit(settings, folder)

    [error] = caught.value.errors
    assert f"which is inside the keystore ([keys].keystore) ({settings.keys.keystore})" in error, error
    assert f"Name a folder inside {settings.folders.inbox}" in error


def test_an_edit_naming_a_folder_inside_the_inbox_in_the_data_folder_is_allowed(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _keystore_in_inbox(harness, monkeypatch)
    folder = settings.folders.inbox / "from-belgium"

    _delivery_edit(settings, folder)

    assert f"folder: {folder}" in (settings.profiles.folder / "be-famhp.yaml").read_text()


def test_the_deepest_guarded_folder_holding_a_target_decides(tmp_path: Path) -> None:
    var = tmp_path / "var"
    table = guard_table(
        folders=FolderSettings(inbox=var / "inbox", outbox=var / "outbox", rejected=var / "rejected"),
        data_dir=var,
        profiles=var / "inbox" / "profiles",
        certificates=tmp_path / "certificates",
        keystore=var / "inbox" / "keys",
    )
    (var / "inbox").mkdir(parents=True)
    (tmp_path / "elsewhere").symlink_to(var / "inbox" / "keys", target_is_directory=True)

    def key(target: Path) -> str | None:
        found = guarding(target, table)
        return found.key if found else None

    assert key(var / "inbox" / "x" / "y") == "[folders].inbox"
    assert key(var / "inbox") == "[folders].inbox"
    assert key(var / "inbox" / "keys" / "x") == "[keys].keystore"
    assert key(tmp_path / "elsewhere" / "x") == "[keys].keystore"  # through the symbolic link
    assert key(var / "inbox" / "profiles") == "[profiles].folder"
    assert key(tmp_path / "certificates" / "x") == "[profiles].certificates"
    assert key(var / "x") == "data_dir"
    assert key(var / "inboxes") == "data_dir"
    assert key(tmp_path / "national") is None
