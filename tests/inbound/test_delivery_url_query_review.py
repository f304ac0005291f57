"""A credential in the query of a SOAP or webhook delivery.url never reaches the log or the timeline, also when
the HTTP library's error text names the URL's path and query (requests: "Max retries exceeded with url: ...")."""

from __future__ import annotations

import pytest
import structlog

from gateway.inbound import deliver
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import free_port
from tests.inbound.conftest import Inbound, partner

SECRET = "SECRET-TOKEN-123"


async def test_an_unreachable_soap_service_is_named_without_its_query(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    url = f"http://127.0.0.1:{free_port()}/national/deliver?api_key={SECRET}"
    registry = ProfileRegistry([partner(delivery={"method": "soap", "url": url})])
    with structlog.testing.capture_logs() as logged:
        assert await inbound.worker(registry).drain() == 0

    after = await inbound.store.get(record.id)
    assert after.state is State.ACCEPTED
    [failed] = [e.detail for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    shown = [repr(failed), after.last_error or ""] + [repr(entry) for entry in logged]
    assert not [text for text in shown if SECRET in text or "api_key" in text], shown
    reason = failed["reason"]
    assert reason.startswith(f"SOAP {url.split('?')[0]}: ConnectionError: NewConnectionError: ")
    assert "Connection refused" in reason  # the cause is still named


@pytest.mark.parametrize(
    "text",
    [
        "Cannot connect to http://127.0.0.1:8080/in?token=a+b%26c",  # as yarl writes the URL (aiohttp)
        "Max retries exceeded with url: /in?token=a%20b%26c (Caused by ...)",  # the path and query, as requests
        "query 'token=a b%26c' refused",  # the query alone, as written
    ],
)
def test_an_error_text_loses_the_query_however_it_names_it(text: str) -> None:
    shown = deliver.scrubbed(text, "http://127.0.0.1:8080/in?token=a b%26c")
    assert "token" not in shown and "b%26c" not in shown, shown
