"""Two real gateways: Switzerland sends Belgium an emergency export without an import authorization (EA-012, and
X-020), which Belgium accepts with those warnings. Whatever the delivery method of Switzerland's profile at
Belgium, the national system gets them with the permit: the folder's .json, the webhook's headers, SOAP on contract
1.3, and the REST pull listing and fetch. A permit without findings is listed with none."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.interfaces.demo import Running, submit, wait_for, write_profiles
from gateway.interfaces.keys import NODE
from gateway.store import Direction, Event, MessageRecord, NewMessage
from tests.conftest import free_port
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Harness, example
from tests.inbound.national import national_system

harness, session = e2e.harness, e2e.session  # the two-gateway fixtures

EMERGENCY = "EA-012-exported-without-import-authorization.xml"


@dataclass
class Webhook:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def permits(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/permits", hook.permits)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook.url = f"http://127.0.0.1:{server.port}/permits"
    yield hook
    await server.close()


async def _emergency_export(
    harness: Harness, session: aiohttp.ClientSession, delivery: str, state: str
) -> tuple[Running, MessageRecord, bytes]:
    """Both gateways with ``delivery`` in every profile; CH sends the emergency export, BE takes it to ``state``."""
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=delivery)
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    document = example(EMERGENCY, today=harness.clock.now(), folder="invalid")
    message_id = (await submit(session, ch, document))["message_id"]
    await wait_for(session, ch, message_id, "ACKNOWLEDGED")
    await wait_for(session, be, message_id, state)
    record = await be.runner.app[NODE].store.find(Direction.INBOUND, message_id)
    assert record is not None
    return be, record, document


def _rules(findings: Any) -> str:
    """The warnings' rules, as X-Permit-Findings lists them: EA-012, X-020 and, after the examples' year, X-028
    (no estimate for that year)."""
    rules = ",".join(dict.fromkeys(f["rule"] for f in findings if f["severity"] == "warning"))
    assert rules.startswith("EA-012,") and "X-020" in rules
    return rules


async def test_the_folder_json_carries_the_warnings(harness: Harness, session: aiohttp.ClientSession) -> None:
    be, record, _ = await _emergency_export(harness, session, "", "DELIVERED")

    # kept with the message as it was accepted
    [accepted] = [e for e in await be.runner.app[NODE].store.events(record.id) if e.kind == "accept"]
    assert list(record.findings) == accepted.detail["findings"]
    _rules(record.findings)
    [written] = [json.loads(p.read_text()) for p in be.inbox.glob("*.json")]
    assert written["message_id"] == record.message_id
    assert written["findings"] == list(record.findings)


async def test_the_webhook_names_the_warnings(
    harness: Harness, session: aiohttp.ClientSession, webhook: Webhook
) -> None:
    delivery = f"delivery:\n  method: webhook\n  url: {webhook.url}\n"
    _, record, document = await _emergency_export(harness, session, delivery, "DELIVERED")

    [(headers, body)] = webhook.received
    assert body == document
    assert headers["X-Permit-Findings"] == _rules(record.findings)
    assert json.loads(headers["X-Permit-Findings-Json"]) == list(record.findings)


async def test_a_soap_service_on_contract_1_3_gets_the_warnings(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    async with national_system(free_port(), contract="1.3") as national:
        delivery = f"delivery:\n  method: soap\n  url: {national.url}\n  soap_contract: '1.3'\n"
        _, record, _ = await _emergency_export(harness, session, delivery, "DELIVERED")

    assert national.invalid == []
    [delivered] = national.deliveries.values()
    assert delivered.findings is not None
    assert ",".join(f["Rule"] for f in delivered.findings) == _rules(record.findings)
    assert [(f["Severity"], f["Text"]) for f in delivered.findings] == [
        (f["severity"], f["text"]) for f in record.findings
    ]


async def test_rest_pull_lists_and_fetches_the_warnings(harness: Harness, session: aiohttp.ClientSession) -> None:
    be, record, _ = await _emergency_export(harness, session, "delivery:\n  method: rest-pull\n", "ACCEPTED")
    node = be.runner.app[NODE]
    clean, _ = await node.store.add(
        NewMessage(
            direction=Direction.INBOUND,
            message_id="clean@ch",
            conversation_id="c-clean",
            partner_id="ch-swissmedic",
            from_party="CH-SWISSMEDIC",
            to_party="BE-FAMHP",
            service=record.service,
            action=record.action,
            document_type=record.document_type,
            payload_sha256=node.payloads.put(b"<ExportAuthorization/>"),
            payload_mime_type="application/xml",
        ),
        then=Event.ACCEPT,
        findings=[],
    )

    async with session.get(f"{be.url}/api/v1/inbox") as response:
        listed = {m["message_id"]: m for m in (await response.json())["messages"]}
    assert listed[record.message_id]["findings"] == list(record.findings)
    _rules(listed[record.message_id]["findings"])
    assert listed[clean.message_id]["findings"] == []

    async with session.get(f"{be.url}/api/v1/inbox/{quote(record.message_id, safe='@')}") as response:
        assert response.status == 200
        assert response.headers["X-Permit-Findings"] == _rules(record.findings)
        assert json.loads(response.headers["X-Permit-Findings-Json"]) == list(record.findings)
    async with session.get(f"{be.url}/api/v1/inbox/{clean.message_id}") as response:
        assert response.status == 200
        assert not any(name.startswith("X-Permit-Findings") for name in response.headers)
