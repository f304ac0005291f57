"""The control tables follow their files while the gateway runs: an administrator who saves the INCB's
supplementary estimate gets the next permit checked against it, without a restart; a table saved with a
mistake is refused with its file and line, and the tables in use stay as they were until it is corrected."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import aiohttp
import structlog

from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.settings import DocumentSettings
from tests.e2e.conftest import EXAMPLES, Harness, example, submit

IA = "BE-IA-2026-0001.xml"
ROW = "BE,morphine,2026,60000,estimate,"


def _numbered(harness: Harness, n: int) -> bytes:
    return example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())


def _save(estimates: Path, old: str, new: str) -> None:
    estimates.write_text(estimates.read_text().replace(old, new))
    later = time.time_ns() + 10**9  # a save within the same clock tick as the last one is still a change
    os.utime(estimates, ns=(later, later))


async def _reloaded(gateway: Running, since: object) -> None:
    permits = gateway.runner.app[NODE].permits
    for _ in range(100):
        if permits.tables is not since:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the control tables were not reloaded within 5 s")


async def _errors(harness: Harness, session: aiohttp.ClientSession, gateway: Running, n: int) -> list[str]:
    status, body = await submit(session, gateway, _numbered(harness, n))
    assert status in (202, 422), body
    return [f["rule"] for f in body.get("findings", []) if f["severity"] == "error"]


async def test_a_saved_estimate_applies_to_the_next_permit_and_a_bad_one_is_refused(
    harness: Harness, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    tables = tmp_path / "tables"
    shutil.copytree(EXAMPLES / "context", tables)
    estimates = tables / "estimates.csv"
    profiles = harness.settings("BE-FAMHP").profiles.model_copy(update={"poll_seconds": 0.1})
    be = await harness.start("BE-FAMHP", documents=DocumentSettings(tables=tables), profiles=profiles)
    permits = be.runner.app[NODE].permits
    assert await _errors(harness, session, be, 1) == []

    before = permits.tables
    _save(estimates, ROW, "BE,morphine,2026,100,estimate,")  # a supplementary estimate: 100 g for the year
    await _reloaded(be, before)
    refused = await _errors(harness, session, be, 2)
    assert refused, "the permit was checked against the estimate in use before the save"

    in_use = permits.tables
    with structlog.testing.capture_logs() as logs:
        _save(estimates, "BE,morphine,2026,100,", "BE,morphine,2026,a hundred,")
        await asyncio.sleep(0.6)
    assert permits.tables is in_use
    [said] = [e for e in logs if e["log_level"] == "error"]
    assert said["event"].startswith("control tables not reloaded")
    assert f"{estimates}:2:" in said["error"] and "correct the file" in said["fix"]
    assert await _errors(harness, session, be, 3) == refused  # still the 100 g

    _save(estimates, "BE,morphine,2026,a hundred,", "BE,morphine,2026,60000,")
    await _reloaded(be, in_use)
    assert await _errors(harness, session, be, 4) == []


async def test_a_table_removed_while_the_gateway_runs_is_not_dropped(
    harness: Harness, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A removed file (by mistake, or a copy made as rm then cp) read as an empty table: every estimate gone."""
    tables = tmp_path / "tables"
    shutil.copytree(EXAMPLES / "context", tables)
    profiles = harness.settings("BE-FAMHP").profiles.model_copy(update={"poll_seconds": 0.1})
    be = await harness.start("BE-FAMHP", documents=DocumentSettings(tables=tables), profiles=profiles)
    permits = be.runner.app[NODE].permits
    in_use = permits.tables
    with structlog.testing.capture_logs() as logs:
        (tables / "estimates.csv").unlink()
        await asyncio.sleep(0.6)

    assert permits.tables is in_use and permits.tables.estimates
    [said] = [e for e in logs if e["log_level"] == "error"]
    assert "estimates.csv: was removed while the gateway runs" in said["error"]
    assert "keep its header line alone" in said["error"]
