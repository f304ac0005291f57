"""Nodes sharing a PostgreSQL database compare leases on their own clocks: a node measures its clock against the
database server's, exports the offset and says, once, when it is past the bound and when it is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from gateway.interfaces.demo import AUTHORITIES, Running, gateway_settings, start_gateway, write_profiles
from gateway.interfaces.keys import NODE
from gateway.interfaces.node import check_clock
from gateway.metrics import REGISTRY
from gateway.profiles.devpki import DevPki
from gateway.settings import StoreSettings
from gateway.store import MessageStore, create_engine, upgrade
from tests.conftest import free_port

AHEAD = timedelta(minutes=5)
OFF = "this node's clock is"
BACK = "this node's clock agrees with the database server's again"


class RunningAhead:
    """The system clock, ``offset`` ahead: a host whose clock is off."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def exported_offset() -> float:
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("permit_gateway_clock_offset_seconds "):
            return float(line.split()[1])
    raise AssertionError("permit_gateway_clock_offset_seconds is not exported")


async def test_the_offset_is_measured_against_the_postgresql_server(pg_url: str) -> None:
    engine = create_engine(pg_url)
    await upgrade(engine)
    try:
        offset = await MessageStore(engine, RunningAhead(AHEAD)).clock_offset()
        assert offset is not None and abs(offset - AHEAD) < timedelta(seconds=2)
        offset = await MessageStore(engine, RunningAhead(-AHEAD)).clock_offset()
        assert offset is not None and abs(offset + AHEAD) < timedelta(seconds=2)
    finally:
        await engine.dispose()


async def test_sqlite_has_no_other_clock(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade(engine)
    try:
        assert await MessageStore(engine, RunningAhead(AHEAD)).clock_offset() is None
    finally:
        await engine.dispose()


@pytest.fixture
async def node_ahead(
    pg_url: str, tmp_path: Path, pki: DevPki
) -> AsyncIterator[tuple[Running, RunningAhead, list[dict[str, Any]]]]:
    port = free_port()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    endpoints = {
        "BE-FAMHP": f"http://127.0.0.1:{port}/as4",
        "CH-SWISSMEDIC": f"http://127.0.0.1:{free_port()}/as4",
    }
    write_profiles(profiles, endpoints)
    settings = gateway_settings(AUTHORITIES[0], pki, port=port, data_dir=tmp_path / "data", profiles=profiles)
    settings = settings.model_copy(update={"store": StoreSettings(url=pg_url)})
    clock = RunningAhead(AHEAD)
    with capture_logs() as logs:
        running = await start_gateway("BE", settings, clock)
    try:
        yield running, clock, logs
    finally:
        await running.runner.cleanup()


async def test_a_node_whose_clock_is_off_says_so_at_start_and_once_more_when_it_is_back(
    node_ahead: tuple[Running, RunningAhead, list[dict[str, Any]]],
) -> None:
    running, clock, started = node_ahead
    node = running.runner.app[NODE]
    said = [e for e in started if e["event"].startswith(OFF)]
    assert len(said) == 1 and said[0]["log_level"] == "error"
    assert "300." in said[0]["event"] and "ahead of the database server's" in said[0]["event"]
    assert "[outbound].lease_seconds" in said[0]["event"] and "NTP" in said[0]["event"]
    assert abs(said[0]["offset_seconds"] - 300) < 2 and said[0]["bound_seconds"] == 10
    assert abs(exported_offset() - 300) < 2

    with capture_logs() as logs:
        await check_clock(node)  # still off: not said again
        clock.offset = timedelta(seconds=1)
        await check_clock(node)
        await check_clock(node)
        clock.offset = -AHEAD
        await check_clock(node)
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith((OFF, BACK))]
    assert [level for _, level in events] == ["info", "error"]
    assert events[0][0] == BACK
    assert "behind the database server's" in events[1][0]
    assert abs(exported_offset() + 300) < 2
