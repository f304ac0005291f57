"""Several gateway nodes on one PostgreSQL database (and one shared data folder): each message is sent once,
and when a node dies holding leases, another takes its messages over."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp

from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import (
    GatewayProcess,
    World,
    import_authorization,
    inbox_message_ids,
    messages,
    submit,
    write_profiles,
)

SETTLE_SECONDS = 90.0


async def _all_acknowledged(
    session: aiohttp.ClientSession, node: GatewayProcess, count: int
) -> list[dict[str, object]]:
    deadline = time.monotonic() + SETTLE_SECONDS
    sent: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        sent = await messages(session, node, "outbound")
        if len(sent) == count and all(m["state"] == "ACKNOWLEDGED" for m in sent):
            return sent
        await asyncio.sleep(0.2)
    raise AssertionError(f"not all acknowledged: {[(m['message_id'], m['state']) for m in sent]}")


async def _metric(session: aiohttp.ClientSession, node: GatewayProcess, name: str) -> float:
    async with session.get(f"{node.url}/metrics") as response:
        text = await response.text()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


async def _histories(
    session: aiohttp.ClientSession, node: GatewayProcess, records: list[dict[str, object]]
) -> str:
    lines = []
    for record in records:
        async with session.get(f"{node.url}/api/v1/messages/{record['message_id']}") as response:
            events = (await response.json())["events"]
        lines.append(f"{record['message_id']}: " + "; ".join(f"{e['kind']} {e['detail']}" for e in events))
    return "sent more than once:\n" + "\n".join(lines)


def _world(
    tmp_path: Path, pki: DevPki, pg_url: str, *, patient: bool = False, **faults: dict[str, float]
) -> World:
    """``patient``: long time-outs and leases, so a slow machine causes no retry that would blur the count."""
    ports = {"BE-FAMHP": free_port(), "CH-SWISSMEDIC": free_port()}
    write_profiles(tmp_path / "profiles", ports)
    world = World(root=tmp_path, pki=pki)
    timing = {"http_timeout": 20.0, "lease_seconds": 60.0} if patient else {}
    world.add(
        "BE-1",
        "BE-FAMHP",
        port=ports["BE-FAMHP"],
        store_url=pg_url,
        data="be-shared",
        faults=faults.get("a"),
        **timing,
    )
    world.add("BE-2", "BE-FAMHP", port=free_port(), store_url=pg_url, data="be-shared", **timing)
    world.add("CH", "CH-SWISSMEDIC", port=ports["CH-SWISSMEDIC"])
    return world


async def test_two_nodes_send_each_message_exactly_once(tmp_path: Path, pki: DevPki, pg_url: str) -> None:
    world = _world(tmp_path, pki, pg_url, patient=True)
    nodes = [world.processes["BE-1"], world.processes["BE-2"]]
    try:
        async with aiohttp.ClientSession() as session:
            for process in world.processes.values():
                process.start()
                await process.ready(session)
            ids = [await submit(session, nodes[n % 2], import_authorization(n)) for n in range(60)]
            assert None not in ids
            sent = await _all_acknowledged(session, nodes[0], 60)
            resent = [m for m in sent if m["attempts"] != 1]
            assert not resent, await _histories(session, nodes[0], resent)
            received = await messages(session, world.processes["CH"], "inbound")
            assert sorted(str(m["message_id"]) for m in received) == sorted(str(i) for i in ids)
            assert await _metric(session, world.processes["CH"], "permit_gateway_duplicates_total") == 0
    finally:
        world.stop_all()
    assert sorted(inbox_message_ids(tmp_path / "ch-swissmedic" / "inbox")) == sorted(str(i) for i in ids)


async def test_a_killed_nodes_leases_are_taken_over(tmp_path: Path, pki: DevPki, pg_url: str) -> None:
    world = _world(tmp_path, pki, pg_url, a={"send.after_post": 1.0})
    first, second, partner = world.processes["BE-1"], world.processes["BE-2"], world.processes["CH"]
    try:
        async with aiohttp.ClientSession() as session:
            first.start()
            await first.ready(session)
            ids = [await submit(session, first, import_authorization(n)) for n in range(20)]
            assert None not in ids
            partner.start()
            await partner.ready(session)
            deadline = time.monotonic() + 30
            while first.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not first.alive(), "node 1 should have crashed right after its first POST"
            second.start()
            await second.ready(session)
            sent = await _all_acknowledged(session, second, 20)
            assert {str(m["message_id"]) for m in sent} == {str(i) for i in ids}
            assert await _metric(session, partner, "permit_gateway_duplicates_total") >= 1
    finally:
        world.stop_all()
    delivered = inbox_message_ids(tmp_path / "ch-swissmedic" / "inbox")
    assert sorted(delivered) == sorted(str(i) for i in ids)
