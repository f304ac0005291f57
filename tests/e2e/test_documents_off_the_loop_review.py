"""A permit document is parsed and validated off the event loop (review): while one is being checked, the node
goes on answering HTTP. Each check here asks the gateway for /metrics while it runs, and the gateway answers
only if the check does not hold its event loop."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

import gateway.inbound.receive
import gateway.outbound.submit
from tests.e2e.conftest import Harness, example, import_exchanged, submit

PING_SECONDS = 10  # only a bound on a test that fails: a node answers /metrics in milliseconds


def pinging(real: Callable[..., Any], url: str, answered: list[bool]) -> Callable[..., Any]:
    """``real``, asking the gateway at ``url`` for /metrics first (synchronously: as a slow document would, it
    holds the thread it runs on until the gateway answers)."""

    def check(*args: Any, **kwargs: Any) -> Any:
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=PING_SECONDS) as response:
                answered.append(response.status == 200)
        except OSError:
            answered.append(False)
        return real(*args, **kwargs)

    return check


async def test_the_node_answers_while_a_submitted_document_is_checked(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    be = await harness.start("BE-FAMHP")
    answered: list[bool] = []
    module = gateway.outbound.submit
    monkeypatch.setattr(module, "parse_document", pinging(module.parse_document, be.url, answered))
    monkeypatch.setattr(module, "validate_document", pinging(module.validate_document, be.url, answered))
    status, body = await submit(session, be, example("BE-IA-2026-0001.xml", today=harness.clock.now()))
    assert status == 202, body
    assert answered == [True, True], "parse and validate each ran while the node answered /metrics"


async def test_the_node_answers_while_a_received_document_is_checked(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[bool] = []
    module = gateway.inbound.receive
    url = f"http://127.0.0.1:{harness.ports['CH-SWISSMEDIC']}"  # Switzerland's: it receives the permit
    monkeypatch.setattr(module, "parse_document", pinging(module.parse_document, url, answered))
    monkeypatch.setattr(module, "validate_document", pinging(module.validate_document, url, answered))
    _, ch = await import_exchanged(harness, session)
    assert ch.url == url
    assert answered == [True, True], "parse and validate each ran while the receiving node answered /metrics"
