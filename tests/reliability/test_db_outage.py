"""The database drops every connection while permits flow (what a PostgreSQL restart or failover does to its
clients): both gateways recover on their own, every permit is acknowledged, and each is delivered once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import (
    GatewayProcess,
    World,
    import_authorization,
    inbox_message_ids,
    messages,
    write_profiles,
)

PERMITS = 80
DROPS = 6
SETTLE_SECONDS = 120.0


async def _drop_connections(url: str) -> int:
    """Terminates every other session on the gateway's database, as a server restart would."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return sum(1 for row in rows if row[0])
    finally:
        await connection.close()


@pytest.fixture
def partner_pg_url(pg_databases: Callable[[], str]) -> str:
    """A second fresh database: the receiving gateway's."""
    return pg_databases()


async def test_gateways_recover_when_the_database_drops_every_connection(
    tmp_path: Path, pki: DevPki, pg_url: str, partner_pg_url: str
) -> None:
    be_url, ch_url = pg_url, partner_pg_url
    ports = {"BE-FAMHP": free_port(), "CH-SWISSMEDIC": free_port()}
    write_profiles(tmp_path / "profiles", ports)
    world = World(root=tmp_path, pki=pki)
    world.add("BE", "BE-FAMHP", port=ports["BE-FAMHP"], store_url=be_url)
    world.add("CH", "CH-SWISSMEDIC", port=ports["CH-SWISSMEDIC"], store_url=ch_url)
    be, ch = world.processes["BE"], world.processes["CH"]
    try:
        async with aiohttp.ClientSession() as session:
            for process in (be, ch):
                process.start()
                await process.ready(session)
            dropped = 0
            ids: list[str] = []
            for n in range(PERMITS):
                ids.append(await _submit_through(session, be, n))
                if n % (PERMITS // DROPS) == PERMITS // DROPS - 1:
                    dropped += await _drop_connections(be_url) + await _drop_connections(ch_url)
            assert dropped >= DROPS, "the drops should have hit open connections of the gateways"
            sent = await _settled(session, world, ids)
            assert {str(m["message_id"]) for m in sent} == set(ids)
            received = await messages(session, ch, "inbound")
            assert sorted(str(m["message_id"]) for m in received) == sorted(ids)
    finally:
        world.stop_all()
    assert sorted(inbox_message_ids(tmp_path / "ch-swissmedic" / "inbox")) == sorted(ids)


async def _submit_through(session: aiohttp.ClientSession, be: GatewayProcess, n: int) -> str:
    """Submit permit ``n`` as a national system would: a 503 while the store is out of reach is sent again."""
    deadline = time.monotonic() + 30
    while True:
        async with session.post(f"{be.url}/api/v1/documents", data=import_authorization(n)) as response:
            body = await response.json()
        if response.status == 202:
            return str(body["message_id"])
        assert response.status == 503 and body["error"] == "store unavailable", (response.status, body)
        assert response.headers["Retry-After"] == "2" and "send it again" in body["detail"]
        assert time.monotonic() < deadline, f"permit {n} could not be submitted"
        await asyncio.sleep(0.2)


async def _settled(session: aiohttp.ClientSession, world: World, ids: list[str]) -> list[dict[str, object]]:
    deadline = time.monotonic() + SETTLE_SECONDS
    sent: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        sent = await messages(session, world.processes["BE"], "outbound")
        if len(sent) == len(ids) and all(m["state"] == "ACKNOWLEDGED" for m in sent):
            return sent
        await asyncio.sleep(0.5)
    raise AssertionError(f"not all acknowledged: {sorted((str(m['message_id']), str(m['state'])) for m in sent)}")
