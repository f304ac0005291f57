"""SOAP delivery to a national system on loopback that implements national-delivery.wsdl and checks every
request against its schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import zeep
import zeep.exceptions

from gateway.inbound.soap import hardened_settings, wsdl_path
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import free_port
from tests.inbound.conftest import PERMIT, Inbound, partner
from tests.inbound.national import NationalSystem, national_system

# bytes a re-serializing consumer would change: a BOM-less declaration, CRLF, a tab, non-ASCII, a comment
EXACT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<!-- as sent -->\r\n'
    b'<ImportAuthorization xmlns="urn:permit-gateway:cs-permits:1">\t<Name>Zurich \xc3\xa9</Name>'
    b"</ImportAuthorization>\n"
)


@pytest.fixture
async def national() -> AsyncIterator[NationalSystem]:
    async with national_system(free_port()) as system:
        yield system


def soap_profiles(url: str) -> ProfileRegistry:
    return ProfileRegistry([partner(delivery={"method": "soap", "url": url})])


async def test_the_permit_and_its_metadata_arrive_once(inbound: Inbound, national: NationalSystem) -> None:
    record = await inbound.accepted(1, data=EXACT)
    worker = inbound.worker(soap_profiles(national.url))

    assert await worker.drain() == 1
    assert await worker.drain() == 0

    assert national.invalid == [] and national.requests == 1
    delivered = national.stored[record.message_id]
    assert delivered.document == EXACT
    assert delivered.metadata == {
        "MessageId": record.message_id,
        "ConversationId": "c-1",
        "RefToMessageId": "earlier-1@be-famhp.test",
        "FromParty": "CH-SWISSMEDIC",
        "ToParty": "BE-FAMHP",
        "PartnerId": "ch-swissmedic",
        "Service": "urn:permit-gateway:services:controlled-substances-trade",
        "Action": "ImportAuthorization",
        "DocumentType": "ImportAuthorization",
        "DocumentNumber": "CH-IA-2026-0001",
        "MimeType": "application/xml",
        "PayloadSha256": record.payload_sha256,
        "ReceivedAt": delivered.metadata["ReceivedAt"],
    }
    assert delivered.metadata["ReceivedAt"].startswith(record.created_at.strftime("%Y-%m-%dT%H:%M:%S"))
    done = await inbound.store.get(record.id)
    assert done.state is State.DELIVERED
    [event] = [e for e in await inbound.store.events(record.id) if e.kind == "deliver"]
    assert event.detail == {"soap": national.url, "national_reference": "NAT-0001"}
    assert not inbound.inbox.exists()


async def test_a_fault_is_retried_after_the_lease_and_delivered_once(
    inbound: Inbound, national: NationalSystem
) -> None:
    record = await inbound.accepted(1)
    national.answers.append("fault")
    worker = inbound.worker(soap_profiles(national.url))

    assert await worker.drain() == 0
    waiting = await inbound.store.get(record.id)
    assert waiting.state is State.ACCEPTED and national.stored == {}
    [failed] = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert "Fault: soap:Server: the permit register is down for maintenance" in failed.detail["reason"]
    assert await worker.drain() == 0  # not due again before the lease ends

    inbound.clock.advance(timedelta(minutes=5))
    assert await worker.drain() == 1
    assert national.requests == 2 and list(national.stored) == [record.message_id]
    assert national.stored[record.message_id].document == PERMIT
    events = [e.kind for e in await inbound.store.events(record.id)]
    assert events.count("deliver") == 1 and events.count("delivery_failed") == 1


async def test_http_500_is_retried(inbound: Inbound, national: NationalSystem) -> None:
    record = await inbound.accepted(1)
    national.answers += ["500", "500"]
    worker = inbound.worker(soap_profiles(national.url))

    for _ in range(2):
        assert await worker.drain() == 0
        inbound.clock.advance(timedelta(minutes=5))
    assert await worker.drain() == 1

    reasons = [e.detail["reason"] for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert reasons == [f"SOAP {national.url} answered HTTP 500"] * 2
    assert (await inbound.store.get(record.id)).state is State.DELIVERED
    assert national.requests == 3 and len(national.stored) == 1


async def test_no_national_system_listening_is_retried(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    url = f"http://127.0.0.1:{free_port()}/permit-gateway/delivery"
    worker = inbound.worker(soap_profiles(url), timeout=2.0)

    assert await worker.drain() == 0

    [failed] = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert failed.detail["reason"].startswith(f"SOAP {url}: ConnectionError")
    assert (await inbound.store.get(record.id)).state is State.ACCEPTED


def test_the_wsdl_loader_refuses_a_dtd(tmp_path: Path) -> None:
    shipped = wsdl_path()
    (tmp_path / "national-delivery.xsd").write_bytes(shipped.with_name("national-delivery.xsd").read_bytes())
    text = shipped.read_text(encoding="utf-8")
    tampered = tmp_path / "national-delivery.wsdl"
    tampered.write_text(
        text.replace("?>\n", '?>\n<!DOCTYPE definitions [<!ENTITY x "y">]>\n', 1), encoding="utf-8"
    )

    with pytest.raises(zeep.exceptions.DTDForbidden):
        zeep.Client(str(tampered), settings=hardened_settings())
    assert zeep.Client(str(shipped), settings=hardened_settings()).wsdl.services
