"""A partner no profile on this node names, whose message's time to live ran out while the node was down: its
failure series is at 0 from the node's start, before the first send sweep fails the message, so Prometheus'
``increase()`` sees 0 -> 1 and the alert fires. On a real gateway over loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.interfaces.keys import NODE
from gateway.outbound.dispatch import Dispatcher
from gateway.profiles.devpki import DevPki
from gateway.store import Direction, MessageStore, State, create_engine, upgrade
from tests.interfaces.test_rest_review_api import Gateway, running
from tests.store.helpers import new_message


async def _store_expired(store_url: str, partner_id: str) -> str:
    """A message for ``partner_id`` queued before the node stopped, its time to live passed since."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        then = datetime.now(UTC) - timedelta(hours=2)
        new = replace(new_message(f"{uuid.uuid4().hex}@be", partner_id=partner_id), expires_at=then)
        record, _ = await MessageStore(engine, FixedClock(then)).add(new)
    finally:
        await engine.dispose()
    return record.message_id


async def _failures(gateway: Gateway, partner_id: str) -> list[str]:
    async with gateway.session.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    series = f'permit_gateway_messages_failed_total{{direction="out",partner="{partner_id}"}} '
    return [line.removeprefix(series) for line in text.splitlines() if line.startswith(series)]


async def test_a_partner_without_profile_has_its_failure_series_at_0_before_the_first_sweep_fails_its_message(
    tmp_path: Path, pki: DevPki, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner_id = f"retired-{uuid.uuid4().hex[:8]}"  # a series no other test in this process made
    message_id = await _store_expired(store_url, partner_id)
    first_sweep, swept = asyncio.Event(), asyncio.Event()
    sweep = Dispatcher.run_once

    async def held_back(self: Dispatcher) -> int:  # every sweep waits until the test has scraped once
        await first_sweep.wait()
        try:
            return await sweep(self)
        finally:
            swept.set()

    monkeypatch.setattr(Dispatcher, "run_once", held_back)
    async with running(tmp_path, pki, store_url) as gateway:
        assert await _failures(gateway, partner_id) == ["0.0"]  # started, no sweep yet
        first_sweep.set()
        async with asyncio.timeout(10):
            await swept.wait()

        assert await _failures(gateway, partner_id) == ["1.0"]
        record = await gateway.running.runner.app[NODE].store.find(Direction.OUTBOUND, message_id)
        assert record is not None and record.state is State.FAILED
        assert f"no profile for partner {partner_id!r}" in (record.last_error or "")
