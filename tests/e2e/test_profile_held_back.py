"""One broken partner profile among several stops neither a reload nor a start for the other partners: two real
gateways exchange a permit while a broken file is held back, named in the log and the metrics."""

from __future__ import annotations

import re

import aiohttp
import structlog

from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.store import Direction, State
from tests.e2e.conftest import Harness, example, metric, submit

IA = "BE-IA-2026-0001.xml"


async def _sent_and_acknowledged(harness: Harness, session: aiohttp.ClientSession, be: Running) -> None:
    """Belgium sends Switzerland a permit, and Switzerland's signed receipt comes back."""
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, body
    node = be.runner.app[NODE]
    await node.dispatcher.drain()
    record = await node.store.find(Direction.OUTBOUND, body["message_id"])
    assert record is not None and record.state is State.ACKNOWLEDGED, record


async def test_a_broken_profile_keeps_its_last_version_while_another_files_edit_takes_effect(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    await harness.start("CH-SWISSMEDIC")
    be = await harness.start("BE-FAMHP")
    folder = harness.tmp / "profiles"
    ch_file, be_file = folder / "ch-swissmedic.yaml", folder / "be-famhp.yaml"
    ch_file.write_text(ch_file.read_text().replace("retries: 3", "retries: five"))
    be_file.write_text(
        re.sub(r"authority_name: .*", "authority_name: Belgium, edited by hand", be_file.read_text())
    )

    with structlog.testing.capture_logs() as logs:
        assert be.runner.app[PROFILE_WATCHER].reload("test: a hand edit beside a broken file")

    registry = be.runner.app[NODE].partners.registry
    assert registry.get("be-famhp").authority_name == "Belgium, edited by hand"
    assert registry.get("ch-swissmedic").reception_awareness.retries == 3  # its last accepted version
    [said] = [entry for entry in logs if entry["log_level"] == "error"]
    assert said["file"] == str(ch_file) and said["profile"] == "ch-swissmedic"
    assert "its last accepted version stays active" in said["event"]
    assert any("retries" in line for line in said["errors"])
    assert await metric(session, be, "permit_gateway_profiles_held_back") == 1
    assert await metric(session, be, "permit_gateway_profile_reload_total", result="partial") >= 1
    await _sent_and_acknowledged(harness, session, be)


async def test_a_gateway_starts_without_a_broken_profile_and_exchanges_with_the_others(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    folder = harness.tmp / "profiles"
    broken = folder / "de-bfarm.yaml"
    broken.write_text(
        (folder / "ch-swissmedic.yaml")
        .read_text()
        .replace("id: ch-swissmedic", "id: de-bfarm")
        .replace("party_id: CH-SWISSMEDIC", "party_id: DE-BFARM")
        .replace("country: CH", "country: DE")
        .replace("ch-swissmedic.crt.pem", "de-bfarm.crt.pem")
        .replace("retries: 3", "retries: five")
    )
    await harness.start("CH-SWISSMEDIC")
    with structlog.testing.capture_logs() as logs:
        be = await harness.start("BE-FAMHP")

    registry = be.runner.app[NODE].partners.registry
    assert "de-bfarm" not in registry and "ch-swissmedic" in registry
    [said] = [entry for entry in logs if entry["log_level"] == "error" and entry.get("file") == str(broken)]
    assert said["event"].startswith("partner profile file left out at start")
    assert any(line.startswith(f"{broken}:") and "retries" in line for line in said["errors"])
    assert "profiles check" in said["fix"]
    [started] = [entry for entry in logs if entry["event"] == "gateway started"]
    assert started["held_back"] == [str(broken)]
    assert await metric(session, be, "permit_gateway_profiles_held_back") == 1
    await _sent_and_acknowledged(harness, session, be)

    broken.write_text(broken.read_text().replace("retries: five", "retries: 3"))  # fixed: loaded on reload
    assert be.runner.app[PROFILE_WATCHER].reload("test: the broken file fixed")
    assert "de-bfarm" in be.runner.app[NODE].partners.registry
    assert await metric(session, be, "permit_gateway_profiles_held_back") == 0
