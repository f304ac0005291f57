"""The review of partner profile changes: a change made while the gateway was stopped is audited at its next
start (as one made while it runs is), a rollback's default is chosen under the writers' lock, and a version
the watcher refused is never a rollback's default."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.clock import FixedClock
from gateway.interfaces.keys import PROFILE_EDITOR, PROFILE_WATCHER
from gateway.interfaces.node import create_app
from gateway.profiles import DevPki
from gateway.profiles.editor import Precondition
from gateway.profiles.history import ProfileHistory, sha256_text
from gateway.profiles.keystore import import_key
from gateway.settings import Settings, settings_from_dict

from .conftest import NOW
from .test_watcher_review import ANY, BE, CH, CH_ENDPOINT, DE, DISK, MOVED, Gateway

PASSPHRASE = "audit-review-keystore-passphrase"
START = "found at start"


@pytest.fixture
def settings(tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TEST_KEYSTORE_PASSPHRASE", PASSPHRASE)
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    (folder / "be-famhp.yaml").write_text(BE)
    files = pki.files_for("DE-BFARM")
    keystore = tmp_path / "keystore"
    import_key(
        keystore,
        PASSPHRASE.encode(),
        key_file=files.key,
        certificate_file=files.certificate,
        key_passphrase=None,
        now=NOW,
    )
    return settings_from_dict(
        {
            "identity": {"party_id": "DE-BFARM", "country": "DE", "authority_name": "BfArM"},
            "data_dir": str(tmp_path / "var"),
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
            "keys": {"keystore": str(keystore), "passphrase_env": "TEST_KEYSTORE_PASSPHRASE"},
            "profiles": {"folder": str(folder), "certificates": str(pki.folder), "poll_seconds": 60},
        },
        base=tmp_path,
    )


@pytest.fixture
def gateway(tmp_path: Path, pki: DevPki) -> Gateway:
    return Gateway(tmp_path, pki)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The whole gateway (``create_app``) started on loopback, stopped on leaving."""
    app = create_app(settings, clock=FixedClock(NOW), watch_outbox=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def audited(client: TestClient[Any, Any]) -> list[tuple[str, str, str | None, str, str | None]]:
    entries = client.app[PROFILE_EDITOR].audit.entries()
    return [(e["actor"], e["action"], e["profile"], e["result"], e.get("reason")) for e in entries]


async def test_a_hand_edit_made_while_the_gateway_was_stopped_is_audited_at_the_next_start(
    settings: Settings,
) -> None:
    folder = settings.profiles.folder
    async with running(settings) as client:
        client.app[PROFILE_EDITOR].put("ch-swissmedic", CH + "compression: false\n", condition=ANY, actor="alice")
        put = client.app[PROFILE_EDITOR].audit.entries()[-1]
    # stopped: an operator moves a partner's endpoint, adds a partner and removes one, all by hand
    (folder / "ch-swissmedic.yaml").write_text(MOVED + "compression: false\n")
    (folder / "de-bfarm.yaml").write_text(DE)
    (folder / "be-famhp.yaml").unlink()

    async with running(settings) as client:
        assert client.app[PROFILE_WATCHER].partners.get("ch-swissmedic").profile.endpoint != CH_ENDPOINT
        new = audited(client)[len(audited(client)) - 3 :]
        entries = client.app[PROFILE_EDITOR].audit.entries()
        history = client.app[PROFILE_EDITOR].history

    assert sorted(new) == [
        (DISK, "added-on-disk", "de-bfarm", "activated", START),
        (DISK, "changed-on-disk", "ch-swissmedic", "activated", START),
        (DISK, "removed-on-disk", "be-famhp", "activated", START),
    ]
    [moved] = [e for e in entries if e["action"] == "changed-on-disk" and e["reason"] == START]
    assert moved["before_sha256"] == put["after_sha256"]  # it chains on the last edit, as a running one does
    assert moved["after_sha256"] == sha256_text(MOVED + "compression: false\n")
    assert f"-endpoint: {CH_ENDPOINT}\n+endpoint: https://moved.example/as4\n" in moved["diff"]
    assert moved["file"] == str(folder / "ch-swissmedic.yaml")
    assert [(v.actor, v.action) for v in history.versions("ch-swissmedic")][-1] == (DISK, "changed-on-disk")
    assert history.text("ch-swissmedic", moved["version"]) == MOVED + "compression: false\n"
    [removed] = [e for e in entries if e["action"] == "removed-on-disk"]
    assert (removed["before_sha256"], removed["after_sha256"], removed["version"]) == (sha256_text(BE), None, None)


async def test_a_start_without_changes_audits_nothing_and_an_editors_retire_is_not_a_removal(
    settings: Settings,
) -> None:
    async with running(settings) as client:
        editor = client.app[PROFILE_EDITOR]
        first = audited(client)
        editor.retire("be-famhp", condition=ANY, actor="alice")
    (settings.profiles.folder / "de-bfarm.yaml").write_text(DE)
    async with running(settings) as client:
        second = audited(client)
    async with running(settings) as client:
        third = audited(client)

    # the first start ever: each profile as found, once
    assert first == [
        (DISK, "added-on-disk", "be-famhp", "activated", START),
        (DISK, "added-on-disk", "ch-swissmedic", "activated", START),
    ]
    assert second == [
        *first,
        ("alice", "retire", "be-famhp", "ok", None),
        (DISK, "added-on-disk", "de-bfarm", "activated", START),
    ]
    assert third == second


def test_a_file_removed_by_hand_while_running_is_not_audited_again_at_start(gateway: Gateway) -> None:
    (gateway.folder / "de-bfarm.yaml").write_text(DE)
    assert gateway.watcher.poll() is True
    (gateway.folder / "de-bfarm.yaml").unlink()
    assert gateway.watcher.poll() is True
    gateway.watcher.record_start()  # a restart's comparison, on the same files

    assert [a for a in gateway.audited() if a[2] == "de-bfarm"] == [
        (DISK, "added-on-disk", "de-bfarm", "activated"),
        (DISK, "removed-on-disk", "de-bfarm", "activated"),
    ]
    (gateway.folder / "de-bfarm.yaml").write_text(DE)  # the same text put back: a change, audited
    assert gateway.watcher.poll() is True
    assert gateway.audited()[-1] == (DISK, "added-on-disk", "de-bfarm", "activated")


def test_rollback_to_the_previous_version_skips_a_version_the_watcher_refused(gateway: Gateway) -> None:
    """A half-written or invalid file caught on disk is kept in the history (what was there), but restoring it
    would be refused: 'rollback' without a version goes back to the last one that was not refused."""
    gateway.ch.write_text(CH.replace("country: CH", "country: Switzerland"))
    assert gateway.watcher.poll() is False
    gateway.ch.write_text(MOVED)  # fixed by hand
    assert gateway.watcher.poll() is True
    assert [(v.action, v.refused) for v in gateway.editor.versions("ch-swissmedic")] == [
        ("found", False),
        ("changed-on-disk", True),
        ("changed-on-disk", False),
    ]

    result = gateway.editor.rollback("ch-swissmedic", condition=ANY, actor="alice")

    assert result.action == "rollback:1"
    assert gateway.ch.read_text() == CH
    assert gateway.endpoint() == CH_ENDPOINT


@pytest.fixture
def bob_edits_first(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Once called: the next writer to take the lock finds that bob (the admin API) took it just before and
    moved the endpoint."""
    original = ProfileHistory.lock
    pending: list[bool] = []

    @contextlib.contextmanager
    def lock(self: ProfileHistory) -> Iterator[None]:
        if pending:
            pending.clear()
            current = gateway.editor.get("ch-swissmedic")
            gateway.editor.put(
                "ch-swissmedic", MOVED, condition=Precondition(if_match=f'"{current.etag}"'), actor="bob"
            )
        with original(self):
            yield

    monkeypatch.setattr(ProfileHistory, "lock", lock)
    yield lambda: pending.append(True)


def test_rollback_chooses_the_previous_version_under_the_lock(
    gateway: Gateway, bob_edits_first: Callable[[], None]
) -> None:
    """'The previous version' is the one before the file the rollback replaces: it was chosen before the lock,
    so a change made meanwhile was undone together with the one meant (versions 3 and 4 rolled back to 2)."""
    gateway.editor.put("ch-swissmedic", CH + "compression: false\n", condition=ANY, actor="alice")
    gateway.editor.put("ch-swissmedic", CH + "compression: true\n", condition=ANY, actor="api-1")
    assert [v.actor for v in gateway.cli.versions("ch-swissmedic")] == ["(file)", "alice", "api-1"]
    bob_edits_first()

    result = gateway.cli.rollback("ch-swissmedic", condition=Precondition(), actor="cli:carol")

    assert [v.actor for v in gateway.cli.versions("ch-swissmedic")] == [
        "(file)",
        "alice",
        "api-1",
        "bob",
        "cli:carol",
    ]
    assert result.action == "rollback:3"  # the version before bob's, the file it replaced
    assert gateway.ch.read_text() == CH + "compression: true\n"
