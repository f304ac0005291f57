"""``permit-gateway messages list --all``: every message, read from the store a page at a time, each once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.interfaces import messages_cli
from gateway.profiles import DevPki
from gateway.store import Direction, MessageStore, create_engine, upgrade
from tests.interfaces.test_messages_cli import config_with, run
from tests.store.helpers import new_message

COUNT = 23


async def _fill(url: str) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    store = MessageStore(engine, SystemClock())
    for n in range(COUNT):
        direction = Direction.INBOUND if n % 2 else Direction.OUTBOUND
        await store.add(new_message(f"m{n:03d}@x", direction=direction))
    await engine.dispose()


@pytest.fixture
def config(tmp_path: Path, pki: DevPki) -> Path:
    return config_with(tmp_path, pki, _fill)


def test_list_all_shows_every_message_newest_first_past_a_page(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages_cli, "_ALL_PAGE", 5, raising=False)  # several pages of the store's messages
    code, out = run(config, "list", "--all")
    assert code == 0, out
    assert f"{COUNT} message(s)" in out
    shown = [line.split()[1] for line in out.splitlines() if "@x" in line]
    assert shown == [f"m{n:03d}@x" for n in reversed(range(COUNT))]
    code, out = run(config, "list", "--all", "--direction", "inbound")
    assert code == 0 and f"{COUNT // 2} message(s)" in out, out
    code, out = run(config, "list")
    assert code == 0 and f"{COUNT} message(s)" in out, out  # the default limit (50) is more than COUNT
