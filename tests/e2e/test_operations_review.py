"""Operations on a real gateway over loopback: the series the alert rules watch exist at 0 before their first
event, /metrics keeps answering while the store is out of reach, the certificate metric follows a reload, the
scheduler's jobs wake the pumps on the loop, a daily job that is late or fails is not put off for a day, and a
failing job or a recovered lease is named in the log."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from gateway.interfaces import node as node_module
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.settings import OutboundSettings, StoreSettings
from tests.e2e.conftest import Harness, StoreOutage, example, submit
from tests.profiles.helpers import certificate, rsa_key
from tests.store.helpers import new_message

IA = "BE-IA-2026-0001.xml"
FAST = OutboundSettings(sweep_seconds=0.3, http_timeout_seconds=10.0)
Labels = frozenset[tuple[str, str]]


async def _scrape(session: aiohttp.ClientSession, gateway: Running) -> dict[tuple[str, Labels], float]:
    """/metrics as {(sample name, labels): value}; it must answer 200."""
    async with session.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, Labels]:
    return name, frozenset(labels.items())


def _watched(partner: str, method: str = "folder") -> list[tuple[str, Labels]]:
    """The series of ``partner`` that the alert rules watch with increase()."""
    return [
        _key("permit_gateway_messages_failed_total", direction="out", partner=partner),
        _key("permit_gateway_messages_failed_total", direction="in", partner=partner),
        _key("permit_gateway_duplicates_total", partner=partner, outcome="refused"),
        _key("permit_gateway_delivery_attempts_total", partner=partner, method=method, outcome="failed"),
    ]


def _write_partner(harness: Harness, *, days_left: float, profile_id: str | None = None, extra: str = "") -> str:
    """A partner profile of its own (a fresh id, so no other test's events are counted on its series) with a
    certificate that expires in ``days_left`` days; its id."""
    profile_id = profile_id or f"zz-{uuid.uuid4().hex[:8]}"
    now = harness.clock.now()
    cert = certificate(
        profile_id.upper(), key=rsa_key(40), not_before=now - timedelta(days=1), days=days_left + 1.5
    )
    path = harness.tmp / f"{profile_id}-{uuid.uuid4().hex[:6]}.crt.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (harness.tmp / "profiles" / f"{profile_id}.yaml").write_text(
        f"id: {profile_id}\nauthority_name: Test authority\ncountry: ZZ\nparty_id: {profile_id.upper()}\n"
        f"endpoint: http://127.0.0.1:9/as4\nsecurity:\n  signing_certificate: {path}\n{extra}"
    )
    return profile_id


# --- 1: the series the alerts watch start at 0 --------------------------------------------------------------


async def test_the_series_the_alerts_watch_exist_at_zero_from_the_start_and_after_a_reload(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A counter first exported at 1 shows Prometheus no increase, so the first failure of a partner never
    alerted."""
    at_start = _write_partner(harness, days_left=300)
    be = await harness.start("BE-FAMHP")

    scraped = await _scrape(session, be)
    for series in _watched(at_start):
        assert scraped.get(series) == 0.0, series
    for series in _watched("ch-swissmedic"):
        assert series in scraped, series
    for endpoint in ("as4", "api"):
        assert _key("permit_gateway_store_unavailable_total", endpoint=endpoint) in scraped

    added = _write_partner(harness, days_left=300)
    assert be.runner.app[PROFILE_WATCHER].reload("test")
    scraped = await _scrape(session, be)
    for series in _watched(added):
        assert scraped.get(series) == 0.0, series


# --- 2: /metrics during a store outage ----------------------------------------------------------------------


@pytest.fixture
async def outage(harness: Harness, store_outage: StoreOutage) -> tuple[Running, Callable[[], Awaitable[None]]]:
    """BE's gateway (fast sweeps), and a way to take its SQLite database away (``store_outage.restore``). A short
    ``wait_seconds``: a checkout waiting behind a failing connect waits out the pool's time-out (twice it)."""
    store_outage.gateway = await harness.start(
        "BE-FAMHP", store=StoreSettings(url=store_outage.url, wait_seconds=2), outbound=FAST
    )
    return store_outage.gateway, store_outage.cut


def _outages(scraped: dict[tuple[str, Labels], float]) -> float:
    return sum(v for (name, _), v in scraped.items() if name == "permit_gateway_store_unavailable_total")


async def test_metrics_answer_during_a_store_outage_with_store_up_0_and_are_not_counted_as_outages(
    harness: Harness,
    session: aiohttp.ClientSession,
    outage: tuple[Running, Callable[[], Awaitable[None]]],
    store_outage: StoreOutage,
) -> None:
    """A 503 from /metrics made Prometheus see the node down (so the store alert could not fire), and each such
    scrape was counted as an AS4 request answered 503."""
    be, cut = outage
    status, _ = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202
    before = await _scrape(session, be)
    depth = {
        k: v
        for k, v in before.items()
        if k[0] == "permit_gateway_messages" and ("partner", "ch-swissmedic") in k[1]
    }
    assert sum(depth.values()) >= 1

    await cut()
    for _ in range(3):
        during = await _scrape(session, be)  # 200, not 503
        assert during[_key("permit_gateway_store_up")] == 0.0
        assert _outages(during) == _outages(before), "a scrape is no request answered 503"
        for series, value in depth.items():
            assert during[series] == value, "the queue depth last read is served"

    store_outage.restore()
    for _ in range(20):
        after = await _scrape(session, be)
        if after[_key("permit_gateway_store_up")] == 1.0:
            break
    assert after[_key("permit_gateway_store_up")] == 1.0


# --- 4: the certificate metric follows profile reloads --------------------------------------------------------


async def test_the_certificate_expiry_metric_follows_a_reload_at_once(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    partner = _write_partner(harness, days_left=9)
    be = await harness.start("BE-FAMHP")

    def days(scraped: dict[tuple[str, Labels], float], owner: str) -> list[float]:
        found = [
            v
            for (name, labels), v in scraped.items()
            if name == "permit_gateway_certificate_expiry_days" and ("owner", owner) in labels
        ]
        return found

    assert days(await _scrape(session, be), partner) == [9.0]
    _write_partner(harness, days_left=400, profile_id=partner)  # the renewed certificate
    added = _write_partner(harness, days_left=20)
    assert be.runner.app[PROFILE_WATCHER].reload("test")

    scraped = await _scrape(session, be)
    assert days(scraped, partner) == [400.0]
    assert days(scraped, added) == [20.0]


# --- 6: the scheduler's wakes run on the loop ---------------------------------------------------------------


async def test_the_scheduled_sweeps_wake_the_pumps_on_the_loops_thread(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain function job runs in APScheduler's worker thread, where asyncio.Event.set() is not safe."""
    woken: list[tuple[str, str]] = []
    wake = node_module.Pump.wake

    def recording(self: node_module.Pump) -> None:
        woken.append((self.name, threading.current_thread().name))
        wake(self)

    monkeypatch.setattr(node_module.Pump, "wake", recording)
    await harness.start("BE-FAMHP", outbound=FAST)
    woken.clear()  # the wakes at start are the node's own
    await asyncio.sleep(1.5)

    assert {name for name, _ in woken} == {"dispatch", "delivery", "pull"}
    assert {thread for _, thread in woken} == {threading.current_thread().name}


# --- 7: a daily job late or failing ---------------------------------------------------------------------------


@pytest.fixture
def schedulers(monkeypatch: pytest.MonkeyPatch) -> list[AsyncIOScheduler]:
    started: list[AsyncIOScheduler] = []
    start = AsyncIOScheduler.start

    def recording(self: AsyncIOScheduler, *args: Any, **kwargs: Any) -> None:
        started.append(self)
        start(self, *args, **kwargs)

    monkeypatch.setattr(AsyncIOScheduler, "start", recording)
    return started


@pytest.fixture
def purges(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each retention purge run: "ok", or the error it raised."""
    runs: list[str] = []
    purge = node_module.purge_old_messages

    async def recording(node: node_module.Node) -> None:
        try:
            await purge(node)
        except Exception as exc:
            runs.append(type(exc).__name__)
            raise
        runs.append("ok")

    monkeypatch.setattr(node_module, "purge_old_messages", recording)
    return runs


def _job(schedulers: list[AsyncIOScheduler], job_id: str) -> Any:
    return next(job for s in schedulers for job in s.get_jobs() if job.id == job_id)


OUTAGE_SECONDS = 30.0
"""How long a test waits for a job during an outage: with one pooled SQLite connection, a checkout that starts
while another task's connect is failing waits out the pool's time-out (SQLAlchemy wakes no waiter on a failed
connect): 4 s with the ``outage`` fixture's ``wait_seconds``."""


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_a_daily_job_that_falls_due_while_the_loop_is_busy_runs_late_instead_of_a_day_later(
    harness: Harness, schedulers: list[AsyncIOScheduler], purges: list[str]
) -> None:
    await harness.start("BE-FAMHP")
    await _until(lambda: purges == ["ok"])
    assert purges == ["ok"]  # at start
    _job(schedulers, "retention-purge").modify(next_run_time=datetime.now(UTC) + timedelta(seconds=0.2))
    time.sleep(1.6)  # the loop is busy (one long synchronous step) past the default 1 s grace
    await _until(lambda: len(purges) == 2)

    assert purges == ["ok", "ok"]


async def test_a_failed_daily_run_is_tried_again_after_the_sweep_until_it_succeeds(
    schedulers: list[AsyncIOScheduler],
    purges: list[str],
    outage: tuple[Running, Callable[[], Awaitable[None]]],
    store_outage: StoreOutage,
) -> None:
    _, cut = outage  # started after the recording fixtures
    await _until(lambda: purges == ["ok"])
    await cut()
    with structlog.testing.capture_logs() as logged:
        _job(schedulers, "retention-purge").modify(next_run_time=datetime.now(UTC))
        await _until(lambda: len(purges) >= 2, OUTAGE_SECONDS)
        await asyncio.sleep(0.5)
    assert "ok" not in purges[1:] and len(purges) >= 2, purges
    failed = [e for e in logged if e["event"].startswith("daily job failed")]
    assert failed and failed[0]["job"] == "retention-purge" and failed[0]["retry_in_seconds"] == 0.3

    store_outage.restore()
    await _until(lambda: purges[-1] == "ok", OUTAGE_SECONDS)
    assert purges[-1] == "ok", purges
    next_run = _job(schedulers, "retention-purge").next_run_time
    assert next_run > datetime.now(UTC) + timedelta(hours=23), "after a run that succeeds, the next is a day on"


# --- 8b, 10b: the log names a failing job and the leases it recovers ----------------------------------------


async def test_a_failing_job_is_named_in_the_log(
    outage: tuple[Running, Callable[[], Awaitable[None]]], caplog: pytest.LogCaptureFixture
) -> None:
    _, cut = outage
    caplog.set_level(logging.ERROR, logger="apscheduler")
    await cut()
    await _until(lambda: any("_recover" in r.getMessage() for r in caplog.records), OUTAGE_SECONDS)

    failures = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert any(m.startswith('Job "_recover (trigger') for m in failures), failures
    assert not any("<locals>" in m for m in failures), failures


async def test_messages_whose_lease_ran_out_are_logged_as_they_become_due_again(harness: Harness) -> None:
    suspended = _write_partner(harness, days_left=300, extra="enabled: false\n")  # this node never claims them
    be = await harness.start("BE-FAMHP", outbound=FAST)
    store = be.runner.app[NODE].store
    await store.add(new_message(f"stuck-{uuid.uuid4().hex[:8]}@be", partner_id=suspended, to_party="ZZ"))
    with structlog.testing.capture_logs() as logged:
        claimed = await store.claim_due(
            "a-node-that-died", limit=5, lease=timedelta(seconds=1), partners=[suspended]
        )
        assert len(claimed) == 1
        harness.clock.advance(timedelta(seconds=2))
        await _until(lambda: any("outlived its lease" in e["event"] for e in logged))

    [recovered] = [e for e in logged if "outlived its lease" in e["event"]]
    assert recovered["log_level"] == "warning" and recovered["messages"] == 1


async def test_permit_expiry_runs_at_start_and_then_just_after_each_utc_midnight(
    harness: Harness, schedulers: list[AsyncIOScheduler]
) -> None:
    """Validity ends with a date: a job every 24 h from the start left a permit ISSUED for up to a day after it."""
    await harness.start("BE-FAMHP")
    tomorrow = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
    following = tomorrow + timedelta(seconds=node_module.MIDNIGHT_SECONDS)
    await _until(lambda: _job(schedulers, "permit-expiry").next_run_time == following)  # it ran at start

    job = _job(schedulers, "permit-expiry")
    assert job.next_run_time == following
    assert job.trigger.get_next_fire_time(following, following + timedelta(seconds=1)) == following + timedelta(
        days=1
    )
