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

IA = "BE-IA-2026-0001.xml"
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


async def test_documents_submitted_at_once_before_any_schema_is_compiled_are_all_checked(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """On pool threads, the first submissions compiled the permit schema at the same time; one compile lost its
    ds:Signature import and every submission after it was answered 500 (seen in bench/throughput.py)."""
    import asyncio

    from gateway.xmlsafe import load_schema

    be = await harness.start("BE-FAMHP")
    for round_ in range(4):  # a race: each round compiles the schema anew under sixteen submissions
        load_schema.cache_clear()
        documents = [
            example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())
            for n in range(100 + 16 * round_, 116 + 16 * round_)
        ]
        answers = await asyncio.gather(*(submit(session, be, d) for d in documents))
        assert [status for status, _ in answers] == [202] * len(documents), answers
