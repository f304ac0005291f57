"""One-Way/Pull survives a crash of the puller between storing a pulled message and sending its receipt: the
sender offers the message again after its receipt timeout, the restarted puller finds the duplicate and sends
the stored receipt; the permit is delivered once and acknowledged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import GatewayProcess, World, import_authorization, messages, submit, xml_files

MPC = "urn:permit-gateway:mpc:be-to-ch"


def _profile(stem: str, party: str, name: str, body: str) -> str:
    return (
        f"id: {stem}\nauthority_name: {name}\ncountry: {party[:2]}\nparty_id: {party}\n"
        f"security:\n  signing_certificate: {stem}.crt.pem\n{body}"
    )


async def _state(session: aiohttp.ClientSession, gateway: GatewayProcess, message_id: str, direction: str) -> str:
    found = [m for m in await messages(session, gateway, direction) if m["message_id"] == message_id]
    return str(found[0]["state"]) if found else "absent"


async def _until(
    session: aiohttp.ClientSession, gateway: GatewayProcess, message_id: str, direction: str, state: str
) -> None:
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = await _state(session, gateway, message_id, direction)
        except aiohttp.ClientError:
            seen = "unreachable"
        if seen == state:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{gateway.name}: {message_id} is {seen}, not {state}:\n{gateway.log.read_text()[-3000:]}"
    )


async def test_a_puller_killed_before_its_receipt_gets_the_message_again_and_delivers_once(
    tmp_path: Path, pki: DevPki
) -> None:
    be_port, ch_port = free_port(), free_port()
    be_profiles, ch_profiles = tmp_path / "be-profiles", tmp_path / "ch-profiles"
    be_profiles.mkdir()
    ch_profiles.mkdir()
    (be_profiles / "ch-swissmedic.yaml").write_text(
        _profile(
            "ch-swissmedic",
            "CH-SWISSMEDIC",
            "Swissmedic",
            f"transport: pull\npull:\n  mpc: {MPC}\nreception_awareness:\n  receipt_timeout_seconds: 2\n"
            "  time_to_live_hours: 1\n",
        )
    )
    (ch_profiles / "be-famhp.yaml").write_text(
        _profile(
            "be-famhp",
            "BE-FAMHP",
            "FAMHP",
            f"endpoint: http://127.0.0.1:{be_port}/as4\npull:\n  mpc: {MPC}\n  receive_by_pulling: true\n"
            "  interval_seconds: 1\nreception_awareness:\n  time_to_live_hours: 1\n",
        )
    )
    world = World(root=tmp_path, pki=pki)
    be = world.add("BE", "BE-FAMHP", port=be_port, profiles=be_profiles)
    ch = world.add(
        "CH", "CH-SWISSMEDIC", port=ch_port, profiles=ch_profiles, faults={"receive.before_answer": 1.0}
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            be.start()
            await be.ready(session)
            message_id = await submit(session, be, import_authorization(1))
            assert message_id is not None
            ch.start()
            deadline = time.monotonic() + 60
            while ch.alive():  # it pulls, stores the permit and its receipt, and dies before sending the receipt
                assert time.monotonic() < deadline, "the puller did not reach its crash point"
                await asyncio.sleep(0.1)
            assert await _state(session, be, message_id, "outbound") == "SENDING"

            world.add("CH", "CH-SWISSMEDIC", port=ch_port, profiles=ch_profiles)  # restarted without the fault
            ch = world.processes["CH"]
            ch.start()
            await ch.ready(session)
            await _until(session, be, message_id, "outbound", "ACKNOWLEDGED")
            await _until(session, ch, message_id, "inbound", "DELIVERED")
        finally:
            world.stop_all()
    assert len(xml_files(tmp_path / "ch-swissmedic" / "inbox")) == 1
