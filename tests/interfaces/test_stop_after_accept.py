"""A node stopped right after it accepted a message stops at once and gives back what it had claimed.

Its pumps were cancelled mid-claim: on SQLite the cut transaction kept the write lock, and the stop waited
``[store] wait_seconds`` (30 s) to fail giving its leases back."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.as4 import Payload, build_user_message
from gateway.interfaces.node import Pump
from tests.e2e.conftest import (  # noqa: F401 - the two-gateway fixtures
    Harness,
    example,
    harness,
    permit_user_message,
    session,
)

IA = "BE-IA-2026-0001.xml"


async def test_a_pump_asked_to_stop_ends_after_its_run_under_way_not_in_it() -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    async def work() -> int:
        started.set()
        await finish.wait()
        runs.append("ended")
        return 1

    pump = Pump("test", work)
    running = asyncio.create_task(pump.run())
    pump.wake()
    await started.wait()
    pump.stop()
    await asyncio.sleep(0.05)
    assert not running.done() and runs == []
    finish.set()
    await asyncio.wait_for(running, timeout=5)
    assert runs == ["ended"]
    pump.wake()  # a wake after the stop runs nothing
    assert runs == ["ended"]


async def test_a_node_stopped_just_after_accepting_a_message_stops_at_once(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the race (the delivery claim under way as the node stops) came about three times in four
    for round_ in range(1, 5):
        ch = await harness.start("CH-SWISSMEDIC")
        number = f"BE-IA-2026-000{round_}"
        document = example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", number.encode())
        sent = build_user_message(
            permit_user_message(harness, f"stop-{round_}@be-famhp.test"),
            [Payload(content_id="p@be", mime_type="application/xml", data=document)],
            sender=harness.keys("BE-FAMHP"),
            recipient_certificate=harness.keys("CH-SWISSMEDIC").certificate,
        )
        async with session.post(f"{ch.url}/as4", data=sent.body, headers={"Content-Type": sent.content_type}) as r:
            assert r.status == 200 and b"Receipt" in await r.read()

        began = time.monotonic()
        with capture_logs() as logs:
            await harness.stop("CH-SWISSMEDIC")
        took = time.monotonic() - began

        assert took < 10, f"round {round_}: the stop took {took:.1f} s"
        bad = [e for e in logs if e["log_level"] in ("warning", "error")]
        assert bad == [], "\n".join(map(repr, bad))
    gc.collect()
    assert "never retrieved" not in caplog.text  # a folder write the stop cut short
