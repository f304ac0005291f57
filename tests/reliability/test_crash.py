"""Crash safety: real gateway processes are killed with SIGKILL at random moments and at named points
(while sending, after receiving and before answering, while delivering), then restarted. A submission left
unanswered is made again with the same document. Afterwards each document is one message, ACKNOWLEDGED (or
explicitly FAILED), and every received message is in the receiving authority's inbox exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import (
    World,
    import_authorization,
    inbox_message_ids,
    messages,
    submit,
    write_profiles,
    xml_files,
)

MESSAGES = 200
MIN_CRASHES = 10
SETTLE_SECONDS = 300.0
# Per hit: with up to 20 sends in flight at once, 1 % crashes often enough without a crash loop.
CRASH_POINTS = {
    "BE": {"submit.before_answer": 0.03, "send.after_post": 0.01},
    "CH": {"receive.before_answer": 0.01, "deliver.after_write": 0.01},
}


async def _supervise(world: World, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
    """Restart whatever died, as a service manager would."""
    while not stop.is_set():
        for process in world.processes.values():
            if not process.alive():
                process.start()
                with contextlib.suppress(
                    AssertionError
                ):  # killed again while starting: the next round restarts it
                    await process.ready(session)
        await asyncio.sleep(0.1)


async def _chaos(world: World, stop: asyncio.Event, rng: random.Random) -> int:
    """SIGKILL a random gateway every so often, whatever it is doing."""
    kills = 0
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        victim = world.processes[rng.choice(["BE", "CH"])]
        if victim.alive():
            victim.kill()
            kills += 1
    return kills


async def _settled(
    world: World, session: aiohttp.ClientSession, submitted: set[str]
) -> tuple[dict[str, str], list[dict[str, object]]]:
    deadline = time.monotonic() + SETTLE_SECONDS
    states: dict[str, str] = {}
    received: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            sent = await messages(session, world.processes["BE"], "outbound")
            received = await messages(session, world.processes["CH"], "inbound")
        except aiohttp.ClientError:
            await asyncio.sleep(0.3)
            continue
        states = {str(m["message_id"]): str(m["state"]) for m in sent}
        outbound_done = all(states.get(m) in ("ACKNOWLEDGED", "FAILED") for m in submitted)
        outbound_done = outbound_done and all(s in ("ACKNOWLEDGED", "FAILED") for s in states.values())
        inbound_done = all(m["state"] in ("DELIVERED", "REJECTED") for m in received)
        if outbound_done and inbound_done:
            return states, received
        await asyncio.sleep(0.3)
    stuck = Counter(states.values())
    raise AssertionError(f"not settled after {SETTLE_SECONDS}s: outbound states {dict(stuck)}")


async def _answered(
    world: World,
    session: aiohttp.ClientSession,
    supervisor: asyncio.Task[None],
    document: bytes,
    answers: Counter[int],
    deadline: float,
) -> str:
    """The document's MessageId, submitted again while unanswered (the gateway died), as a national system
    would: a document left unanswered is never abandoned, else its message would have no answer to count."""
    while True:
        assert time.monotonic() < deadline, f"no answer before the deadline; {_crashes(world)} crashes so far"
        assert not supervisor.done(), f"the supervisor stopped: {supervisor.exception()!r}"
        message_id = await submit(session, world.processes["BE"], document, answers)
        if message_id is not None:
            return message_id
        await asyncio.sleep(0.2)


def _crashes(world: World) -> int:
    return sum(p.starts - 1 for p in world.processes.values())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_urls(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """Each gateway's own database: SQLite files (None), or two PostgreSQL databases."""
    if request.param == "sqlite":
        return {"BE": None, "CH": None}
    create = request.getfixturevalue("pg_databases")
    return {"BE": create(), "CH": create()}


async def test_kill_9_at_random_points_loses_nothing_and_delivers_once(
    tmp_path: Path, pki: DevPki, store_urls: dict[str, str | None]
) -> None:
    rng = random.Random(20261126)
    ports = {"BE-FAMHP": free_port(), "CH-SWISSMEDIC": free_port()}
    write_profiles(tmp_path / "profiles", ports, retries=1000)
    world = World(root=tmp_path, pki=pki)
    world.add("BE", "BE-FAMHP", port=ports["BE-FAMHP"], faults=CRASH_POINTS["BE"], store_url=store_urls["BE"])
    world.add(
        "CH", "CH-SWISSMEDIC", port=ports["CH-SWISSMEDIC"], faults=CRASH_POINTS["CH"], store_url=store_urls["CH"]
    )
    submitted: set[str] = set()
    answers: Counter[int] = Counter()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for process in world.processes.values():
            process.start()
            await process.ready(session)
        supervisor = asyncio.create_task(_supervise(world, session, stop))
        chaos = asyncio.create_task(_chaos(world, stop, rng))
        try:
            number = 0
            deadline = time.monotonic() + SETTLE_SECONDS
            # at least MESSAGES, and more while fewer than MIN_CRASHES happened: a faster gateway must not
            # finish its work before the chaos has had its chance
            while len(submitted) < MESSAGES or _crashes(world) < MIN_CRASHES:
                document = import_authorization(number + 1)
                submitted.add(await _answered(world, session, supervisor, document, answers, deadline))
                number += 1
            chaos.cancel()
            states, received = await _settled(world, session, submitted)
        finally:
            stop.set()
            chaos.cancel()
            await asyncio.gather(supervisor, chaos, return_exceptions=True)
            world.stop_all()

    crashes = _crashes(world)
    assert crashes >= MIN_CRASHES, f"only {crashes} crashes: the test did not exercise recovery"
    assert all(states[m] in ("ACKNOWLEDGED", "FAILED") for m in submitted)
    assert len(submitted) == number == len(states), (
        f"{number} documents answered with {len(submitted)} MessageIds, but the sender holds {len(states)} "
        f"messages; not answered: {sorted(set(states) - submitted)}"
    )
    assert answers[200] >= 1, f"no submission was answered after a crash lost its first answer: {answers}"
    acknowledged = {m for m, s in states.items() if s == "ACKNOWLEDGED"}
    assert len(acknowledged) >= len(states) - 5, Counter(states.values())
    inbox = tmp_path / "ch-swissmedic" / "inbox"
    delivered = inbox_message_ids(inbox)
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert len(xml_files(inbox)) == len(delivered)
    assert acknowledged <= set(delivered), "a receipted message never reached the inbox"
    assert {str(m["message_id"]) for m in received if m["state"] == "DELIVERED"} == set(delivered)
