"""The ``.json`` beside a sent outbox file follows its document when an operator's retry builds its FAILED message
anew under a new MessageId (the partner's profile was fixed): a national system that only reads folders learns
that the permit was delivered after all, and under which MessageId."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.interfaces import folder
from gateway.interfaces.demo import Running, wait_for, write_profiles
from gateway.interfaces.keys import PROFILE_WATCHER
from gateway.settings import StoreSettings
from tests.e2e.conftest import RETRIES, Harness, example

IA = "BE-IA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"


def _profile_of_ch(harness: Harness, party_id: str) -> Path:
    """Belgium's own profile folder, its profile of Switzerland naming ``party_id``."""
    profiles = harness.tmp / "be-profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(profiles, endpoints, extra=RETRIES)
    profile = profiles / "ch-swissmedic.yaml"
    profile.write_text(profile.read_text().replace(f"party_id: {CH}", f"party_id: {party_id}"))
    harness.profile_folders[BE] = profiles
    return profile


def _changed(be: Running, profile: Path, change: Callable[[str], str]) -> None:
    profile.write_text(change(profile.read_text()))
    assert be.runner.app[PROFILE_WATCHER].reload("test: the admin changed the profile")


async def _retried(session: aiohttp.ClientSession, be: Running, message_id: str) -> str:
    """``message_id`` retried by an operator, built anew: the new MessageId."""
    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "fixed"}) as answer:
        retried: dict[str, Any] = await answer.json()
        assert (answer.status, retried["supersedes"]) == (202, message_id), retried
    assert retried["message_id"] != message_id
    return str(retried["message_id"])


async def test_the_json_of_a_failed_outbox_file_follows_the_messages_built_anew_in_its_place_to_acknowledged(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,
    session: aiohttp.ClientSession,
) -> None:
    """Two mistyped PartyIds, each fixed by an operator's retry that builds the message anew: the ``.json`` names
    the last message, the one it superseded, and ACKNOWLEDGED, and nothing of it is watched any longer."""
    profile = _profile_of_ch(harness, "CH-SWISSMEDC")
    be = await harness.start(BE, store=StoreSettings(url=store_url))
    ch = await harness.start(CH)
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    await folder.scan(be.runner.app)
    status = outbox / "sent" / "ia.xml.json"
    first = json.loads(status.read_text())["message_id"]
    await wait_for(session, be, first, "FAILED")

    assert await folder.report(be.runner.app) == 1
    failed = json.loads(status.read_text())
    assert (failed["message_id"], failed["state"]) == (first, "FAILED") and "EBMS:0010" in failed["last_error"]
    hint = failed["to_send_again"]
    assert "built anew under a new one that supersedes it, if the partner's profile changed" in hint
    assert f"POST /api/v1/messages/{first}/retry" in failed["to_send_again"]

    _changed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDX"))
    second = await _retried(session, be, first)
    await wait_for(session, be, second, "FAILED")
    _changed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDX", f"party_id: {CH}"))
    third = await _retried(session, be, second)
    await wait_for(session, be, third, "ACKNOWLEDGED")
    await wait_for(session, ch, third, "DELIVERED")

    assert await folder.report(be.runner.app) == 1
    done = json.loads(status.read_text())
    assert (done["message_id"], done["supersedes"], done["state"]) == (third, second, "ACKNOWLEDGED"), done
    assert done["last_error"] is None and "to_send_again" not in done
    assert list((outbox / "sent" / folder.PENDING).iterdir()) == []
    assert await folder.report(be.runner.app) == 0


async def test_the_json_follows_a_message_built_anew_that_fails_too_and_says_how_to_send_it_again(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Still FAILED under its new MessageId: the hint names the retry of the new one (the old one's answers 409),
    and the file stays watched under it until it is final."""
    profile = _profile_of_ch(harness, "CH-SWISSMEDC")
    be = await harness.start(BE)
    ch = await harness.start(CH)
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    await folder.scan(be.runner.app)
    status = outbox / "sent" / "ia.xml.json"
    first = json.loads(status.read_text())["message_id"]
    await wait_for(session, be, first, "FAILED")
    assert await folder.report(be.runner.app) == 1

    _changed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDX"))
    second = await _retried(session, be, first)
    await wait_for(session, be, second, "FAILED")

    assert await folder.report(be.runner.app) == 1
    failed = json.loads(status.read_text())
    assert (failed["message_id"], failed["supersedes"], failed["state"]) == (second, first, "FAILED"), failed
    assert f"POST /api/v1/messages/{second}/retry" in failed["to_send_again"]
    (marker,) = (outbox / "sent" / folder.PENDING).iterdir()
    assert json.loads(marker.read_text())["message_id"] == second
    assert await folder.report(be.runner.app) == 0, "nothing changed since"

    _changed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDX", f"party_id: {CH}"))
    third = await _retried(session, be, second)
    await wait_for(session, ch, third, "DELIVERED")
    await wait_for(session, be, third, "ACKNOWLEDGED")
    assert await folder.report(be.runner.app) == 1
    done = json.loads(status.read_text())
    assert (done["message_id"], done["supersedes"], done["state"]) == (third, second, "ACKNOWLEDGED"), done
    assert list((outbox / "sent" / folder.PENDING).iterdir()) == []
