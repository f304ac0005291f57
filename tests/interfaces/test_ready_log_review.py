"""GET /ready under a probe every few seconds: a check that starts failing, or fails for another reason, is
logged once as a warning, and once as info when it passes again; the probes between add no line. On a real
gateway over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.interfaces.keys import NODE
from gateway.profiles.devpki import DevPki
from tests.interfaces.test_rest_review_api import Gateway, running

READY_EVENTS = ("node not ready", "node ready again")


@pytest.fixture
async def gateway(tmp_path: Path, pki: DevPki) -> AsyncIterator[Gateway]:
    async with running(tmp_path, pki) as found:
        yield found


async def _probe(gateway: Gateway, times: int) -> list[int]:
    statuses = []
    for _ in range(times):
        async with gateway.session.get(f"{gateway.url}/ready") as response:
            statuses.append(response.status)
    return statuses


def _lines(logs: list[MutableMapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(level, event, check, error or failed probes) of each readiness line."""
    return [
        (e["log_level"], e["event"], e["check"], str(e.get("error", e.get("failed_probes"))))
        for e in logs
        if e["event"] in READY_EVENTS
    ]


async def test_a_failing_check_is_logged_when_it_starts_when_its_reason_changes_and_when_it_passes(
    gateway: Gateway,
) -> None:
    folder = gateway.running.settings.profiles.folder
    away = folder.with_name("profiles-away")
    with capture_logs() as logs:
        assert await _probe(gateway, 2) == [200, 200]
        folder.rename(away)  # root lists a folder of mode 000: take it away instead
        try:
            assert await _probe(gateway, 3) == [503] * 3
            folder.write_text("not a folder")
            assert await _probe(gateway, 2) == [503] * 2
            folder.unlink()
        finally:
            away.rename(folder)
        assert await _probe(gateway, 3) == [200] * 3
        folder.rename(away)
        try:
            assert await _probe(gateway, 2) == [503] * 2
        finally:
            away.rename(folder)

    missing = "the profiles folder cannot be listed: No such file or directory"
    assert _lines(logs) == [
        ("warning", "node not ready", "profiles", missing),
        ("warning", "node not ready", "profiles", "the profiles folder cannot be listed: Not a directory"),
        ("info", "node ready again", "profiles", "5"),
        ("warning", "node not ready", "profiles", missing),  # a new outage
    ]
    warning = next(e for e in logs if e["event"] == "node not ready")
    assert warning["folder"] == str(folder) and "[profiles].folder" in warning["fix"]


async def test_each_check_is_logged_on_its_own_and_the_store_s_reason_only_to_the_log(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.running.runner.app[NODE].store
    folder = gateway.running.settings.profiles.folder
    away = folder.with_name("profiles-away")

    async def refused(*args: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('db.internal', 5432)")

    with capture_logs() as logs:
        monkeypatch.setattr(store, "ping", refused)
        assert await _probe(gateway, 2) == [503] * 2
        folder.rename(away)
        try:
            assert await _probe(gateway, 2) == [503] * 2
            monkeypatch.undo()  # the store answers again; the profiles folder is still away
            assert await _probe(gateway, 2) == [503] * 2
        finally:
            away.rename(folder)
        assert await _probe(gateway, 2) == [200] * 2

    refusal = "the message store cannot be reached (ConnectionRefusedError; the log has the reason)"
    missing = "the profiles folder cannot be listed: No such file or directory"
    assert _lines(logs) == [
        ("warning", "node not ready", "store", refusal),
        ("warning", "node not ready", "profiles", missing),
        ("info", "node ready again", "store", "4"),
        ("info", "node ready again", "profiles", "4"),
    ]
    [store_warning] = [e for e in logs if e["event"] == "node not ready" and e["check"] == "store"]
    assert "db.internal" in store_warning["reason"]
