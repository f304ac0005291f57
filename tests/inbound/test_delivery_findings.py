"""A permit accepted with warnings (EA-012: an emergency export the importing authority should confirm) reaches
the national system with them, by every push method: the folder's .json, the webhook's headers, and SOAP to a
service on contract 1.3. A service on 1.2 (the default, also when the setting is absent) or 1.1 gets exactly the
shape of its contract; a permit without findings carries an empty list and no header."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from gateway.documents import Finding
from gateway.inbound.deliver import FINDINGS_HEADER_BYTES, delivery_id, findings_headers, inbox_name, metadata
from gateway.inbound.soap import SoapDelivery, SoapDeliveryFailed
from gateway.profiles import ProfileRegistry
from gateway.profiles.model import SoapContract
from gateway.store import MessageRecord, State
from tests.conftest import free_port
from tests.inbound.conftest import PERMIT, Inbound, partner
from tests.inbound.national import CONTRACT_1_2_XSD, national_system
from tests.inbound.test_soap_contract_review import _body

EA_012 = Finding(
    rule="EA-012",
    severity="warning",
    message="an emergency export to BE without an ImportAuthorization: the importing authority should confirm it",
    hint="Confirm the delivery with the exporting authority, or refuse it.",
    basis="1961 Convention art. 31(4)(b); INCB emergency procedure",
    path="/ea:ExportAuthorization/ea:EmergencyDelivery",
    line=39,
    column=3,
)
X_020 = Finding(
    rule="X-020",
    severity="warning",
    message="no verified base factor for morphine hydrochloride trihydrate",
    hint="Check the base quantity by hand.",
    path="/ea:ExportAuthorization/ea:SubstanceLine[1]/ea:Salt",
    line=52,
    column=5,
)
NOT_CHECKED = Finding(rule="X-999", severity="info", message="the estimate was not checked", hint="None needed.")
FINDINGS = [f.to_json() for f in (EA_012, X_020, NOT_CHECKED)]


def test_metadata_lists_the_findings_and_an_empty_list_without() -> None:
    assert metadata(_record(FINDINGS))["findings"] == FINDINGS
    assert metadata(_record([]))["findings"] == []


async def test_the_folder_json_carries_the_findings(inbound: Inbound) -> None:
    warned = await inbound.accepted(1, findings=FINDINGS)
    clean = await inbound.accepted(2, findings=[])
    before_0010 = await inbound.accepted(3)  # findings NULL: stored before the column, or never recorded

    assert await inbound.worker(ProfileRegistry([partner()])).drain() == 3

    def written(record: MessageRecord) -> Any:
        return json.loads((inbound.inbox / f"{inbox_name(record)}.json").read_text(encoding="utf-8"))["findings"]

    assert written(warned) == FINDINGS
    assert written(clean) == [] and written(before_0010) == []
    assert (await inbound.store.get(warned.id)).findings == tuple(FINDINGS)


@dataclass
class Webhook:
    url: str = ""
    received: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def permits(self, request: web.Request) -> web.Response:
        self.received.append(dict(request.headers))
        self.bodies.append(await request.read())
        return web.Response(status=204)


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


async def test_the_webhook_names_the_warnings_and_carries_the_findings(inbound: Inbound, webhook: Webhook) -> None:
    await inbound.accepted(1, findings=FINDINGS)
    await inbound.accepted(2, findings=[])
    registry = ProfileRegistry([partner(delivery={"method": "webhook", "url": webhook.url})])
    async with aiohttp.ClientSession() as session:
        assert await inbound.worker(registry, session=session).drain() == 2

    by_number = {h["X-Permit-Document-Number"]: h for h in webhook.received}
    warned, clean = by_number["CH-IA-2026-0001"], by_number["CH-IA-2026-0002"]
    assert warned["X-Permit-Findings"] == "EA-012,X-020"  # the warnings; the info finding is no call to act
    assert json.loads(warned["X-Permit-Findings-Json"]) == FINDINGS
    assert "X-Permit-Findings-Omitted" not in warned
    assert not any(name.startswith("X-Permit-Findings") for name in clean)
    assert webhook.bodies == [PERMIT, PERMIT]  # the body stays the permit


def test_findings_over_the_header_limit_are_cut_to_those_that_fit() -> None:
    many = [
        Finding(
            rule=f"X-{n % 7:03d}",
            severity="warning",
            message="Zürich: " + "a long message " * 20,
            hint="fix\r\nit",
            line=n,
        ).to_json()
        for n in range(40)
    ]

    headers = findings_headers(many)

    shown = json.loads(headers["X-Permit-Findings-Json"])
    assert 0 < len(shown) < len(many) and shown == many[: len(shown)]
    assert int(headers["X-Permit-Findings-Omitted"]) == len(many) - len(shown)
    assert len(headers["X-Permit-Findings-Json"]) <= FINDINGS_HEADER_BYTES
    assert headers["X-Permit-Findings"] == ",".join(f"X-{n:03d}" for n in range(7))
    assert all(value.isascii() and "\n" not in value and "\r" not in value for value in headers.values())


async def test_a_service_on_contract_1_3_gets_the_findings(inbound: Inbound) -> None:
    warned = await inbound.accepted(1, findings=FINDINGS)
    clean = await inbound.accepted(2, findings=[])
    async with national_system(free_port(), contract="1.3") as national:
        registry = ProfileRegistry([partner(delivery=_soap(national.url, soap_contract="1.3"))])
        assert await inbound.worker(registry).drain() == 2

    assert national.invalid == []
    assert national.deliveries[delivery_id(clean)].findings is None  # Findings left out, as it is optional
    assert national.deliveries[delivery_id(warned)].findings == [
        {
            "Rule": "EA-012",
            "Severity": "warning",
            "Text": str(EA_012),
            "Message": EA_012.message,
            "Hint": EA_012.hint,
            "Basis": "1961 Convention art. 31(4)(b); INCB emergency procedure",
            "Path": "/ea:ExportAuthorization/ea:EmergencyDelivery",
            "Line": "39",
            "Column": "3",
        },
        {
            "Rule": "X-020",
            "Severity": "warning",
            "Text": str(X_020),
            "Message": X_020.message,
            "Hint": X_020.hint,
            "Path": "/ea:ExportAuthorization/ea:SubstanceLine[1]/ea:Salt",
            "Line": "52",
            "Column": "5",
        },
        {
            "Rule": "X-999",
            "Severity": "info",
            "Text": str(NOT_CHECKED),
            "Message": NOT_CHECKED.message,
            "Hint": "None needed.",
        },
    ]


@pytest.mark.parametrize("written", [{}, {"soap_contract": "1.2"}])
async def test_a_service_on_contract_1_2_gets_exactly_the_1_2_shape(
    inbound: Inbound, written: dict[str, str]
) -> None:
    warned = await inbound.accepted(1, findings=FINDINGS)
    async with national_system(free_port(), contract="1.2") as national:
        registry = ProfileRegistry([partner(delivery=_soap(national.url, **written))])
        assert await inbound.worker(registry).drain() == 1

    assert national.invalid == []  # valid against the 1.2 XSD
    delivered = national.deliveries[delivery_id(warned)]
    assert delivered.findings is None
    assert list(delivered.metadata) == [  # DeliveryId is the key
        "MessageId",
        "ConversationId",
        "RefToMessageId",
        "FromParty",
        "ToParty",
        "PartnerId",
        "Service",
        "Action",
        "DocumentType",
        "DocumentNumber",
        "MimeType",
        "PayloadSha256",
        "ReceivedAt",
    ]
    assert (await inbound.store.get(warned.id)).state is State.DELIVERED


async def test_the_1_2_and_1_1_bodies_are_the_bodies_of_before(inbound: Inbound) -> None:
    """Under 1.2 and 1.1 the findings change nothing in the body; the 1.2 XSD refuses a 1.3 body with findings."""
    warned = await inbound.accepted(1, findings=FINDINGS)
    plain = replace(warned, findings=())
    old = etree.XMLSchema(etree.parse(str(CONTRACT_1_2_XSD)))
    for contract in (SoapContract.V1_2, SoapContract.V1_1):
        assert _xml(_body(warned, contract)) == _xml(_body(plain, contract))
    assert old.validate(etree.ElementTree(_body(warned, SoapContract.V1_2)))
    assert old.validate(etree.ElementTree(_body(plain, SoapContract.V1_3)))  # no findings: a 1.2 body
    assert not old.validate(etree.ElementTree(_body(warned, SoapContract.V1_3)))
    assert b"Findings" not in _xml(_body(warned, SoapContract.V1_2)) + _xml(_body(warned, SoapContract.V1_1))


async def test_a_service_on_contract_1_2_faults_on_findings_and_the_reason_says_to_set_1_2(
    inbound: Inbound,
) -> None:
    record = await inbound.accepted(1, findings=FINDINGS)
    async with national_system(free_port(), contract="1.2") as national:
        delivery = SoapDelivery(timeout=5.0)
        try:
            with pytest.raises(SoapDeliveryFailed) as failed:
                await delivery.deliver(national.url, record, PERMIT, SoapContract.V1_3)
        finally:
            delivery.close()

    reason = str(failed.value)
    assert "Findings': This element is not expected" in reason
    assert reason.endswith(
        ". A national service built on the 1.2 contract of national-delivery.wsdl refuses Metadata/Findings (new in "
        "1.3): set delivery.soap_contract: \"1.2\" in partner profile 'ch-swissmedic' (or remove it) to leave them "
        "out, or upgrade the national service to the 1.3 WSDL (schemas/wsdl/national-delivery.wsdl); the permit is "
        "delivered again at the next attempt"
    )


def _soap(url: str, **fields: str) -> dict[str, str]:
    return {"method": "soap", "url": url} | fields


def _xml(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n")


def _record(findings: list[dict[str, Any]]) -> MessageRecord:
    from datetime import UTC, datetime

    from gateway.store import Direction

    now = datetime(2026, 11, 28, tzinfo=UTC)
    return MessageRecord(
        id=1,
        direction=Direction.INBOUND,
        message_id="m@ch",
        conversation_id="c",
        ref_to_message_id=None,
        mpc=None,
        partner_id="ch-swissmedic",
        from_party="CH-SWISSMEDIC",
        to_party="BE-FAMHP",
        service="s",
        action="ExportAuthorization",
        document_type="ExportAuthorization",
        document_number="CH-EA-2026-0112",
        payload_sha256="0" * 64,
        payload_mime_type="application/xml",
        wire_sha256=None,
        wire_content_type=None,
        signed_references=None,
        attachments=None,
        findings=tuple(findings),
        state=State.ACCEPTED,
        attempts=0,
        next_attempt_at=None,
        lease_owner=None,
        lease_expires_at=None,
        expires_at=None,
        last_error=None,
        created_at=now,
        updated_at=now,
    )
