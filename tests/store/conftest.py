"""Store fixtures: each store test runs on SQLite and on PostgreSQL, on a fresh database and a fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.clock import FixedClock
from gateway.store import MessageStore, create_engine, upgrade
from tests.conftest import NOW


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
async def store(store_url: str, clock: FixedClock) -> AsyncIterator[MessageStore]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield MessageStore(engine, clock)
    await engine.dispose()
