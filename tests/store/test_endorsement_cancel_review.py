"""A cancelled ImportEndorsement on SQLite and PostgreSQL, through the path a received or submitted permit
takes (``context_for``, the rules, ``record``): the export stands as if the endorsement had never been
recorded, and the corrected endorsement is accepted (EN-005's own hint: cancel the earlier one first)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentStatus,
    DocumentType,
    PermitDocument,
    PermitDocumentRejected,
    parse_document,
    validate_document,
)
from gateway.store import Direction, PermitRefused, PermitRegistry, PermitState, create_engine, upgrade

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IA, EA = DocumentType.IMPORT_AUTHORIZATION, DocumentType.EXPORT_AUTHORIZATION
BE_IA = DocumentKey(IA, "BE", "BE-IA-2026-0001")
CH_EA = DocumentKey(EA, "CH", "CH-EA-2026-0001")
FIRST = DocumentKey(DocumentType.IMPORT_ENDORSEMENT, "BE", "BE-EN-2026-0001")


def xml(name: str) -> bytes:
    return (EXAMPLES / "valid" / name).read_bytes()


def endorsement(number: str, grams: str = "1880.000", gross: str = "2.5") -> bytes:
    """BE-EN-2026-0001 renumbered, endorsing ``grams`` of CH-EA-2026-0001's 1880 g of morphine."""
    return (
        xml("BE-EN-2026-0001.xml")
        .replace(b"BE-EN-2026-0001", number.encode())
        .replace(b'unitCode="KGM">2.5<', f'unitCode="KGM">{gross}<'.encode())
        .replace(b">1880.000</BaseQuantityGrams>", f">{grams}</BaseQuantityGrams>".encode())
    )


SHORT = {"grams": "1504.000", "gross": "2"}  # 2 kg x 0.7520

CANCELLED_ENDORSEMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<Cancellation xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">
  <DocumentNumber>BE-CA-2026-0907</DocumentNumber><IssueDate>2026-11-26</IssueDate>
  <IssuingAuthority><CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>
    <AuthorityName>FAMHP</AuthorityName></IssuingAuthority>
  <ImportingCountry>BE</ImportingCountry><ExportingCountry>CH</ExportingCountry>
  <CancelledDocument><DocumentType>ImportEndorsement</DocumentType><DocumentNumber>BE-EN-2026-0001</DocumentNumber>
    <IssueDate>2026-11-26</IssueDate><IssuingAuthority><CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>
    <AuthorityName>FAMHP</AuthorityName></IssuingAuthority></CancelledDocument>
  <Reason>issuedInError</Reason><EffectiveDate>2026-11-26</EffectiveDate>
  <Remarks>Wrong quantity endorsed.</Remarks>
</Cancellation>
"""


@pytest.fixture
async def registry(store_url: str, clock: FixedClock) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, clock, ControlTables.load(EXAMPLES / "context"))
    await engine.dispose()


async def receive(registry: PermitRegistry, clock: FixedClock, data: bytes) -> PermitDocument:
    """What the inbound path does with a permit: load its context, run every rule, record it."""
    parsed = parse_document(data)
    context = await registry.context_for(parsed.outline)
    document = validate_document(parsed, as_of=clock.now().date(), context=context)
    await registry.record(document, direction=Direction.INBOUND, message_id=f"m-{document.number}")
    return document


async def standing(registry: PermitRegistry) -> dict[str, Any]:
    """Where the export and its import stand: states, what the export draws, what is left on the import."""
    ea, ia = await registry.get(CH_EA), await registry.get(BE_IA)
    assert ea is not None and ia is not None
    return {
        "export": ea.permit.status,
        "drawn": [line.drawn_grams for line in ea.permit.lines],
        "import": ia.permit.status,
        "remaining": [line.remaining_grams for line in ia.permit.lines],
    }


async def test_a_cancelled_endorsement_is_as_if_never_recorded_and_the_correction_passes(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml", "CH-EX-2026-0001.xml"):
        await receive(registry, clock, xml(name))
    before = await standing(registry)
    assert before == {
        "export": PermitState.SHIPPED,
        "drawn": [Decimal(1880)],
        "import": PermitState.PARTIALLY_USED,
        "remaining": [Decimal(1880), Decimal(1474)],
    }
    await receive(registry, clock, endorsement("BE-EN-2026-0001", **SHORT))
    assert (await standing(registry))["export"] is PermitState.ENDORSED_PARTIAL

    await receive(registry, clock, CANCELLED_ENDORSEMENT)
    assert await standing(registry) == before, "the export draws what it authorizes again, shipped, not closed"
    context = await registry.context_for(parse_document(endorsement("BE-EN-2026-0002")).outline)
    assert context.endorsements_of(CH_EA) == ()
    assert context.status(CH_EA, as_of=clock.now().date()) is DocumentStatus.OPEN

    await receive(registry, clock, endorsement("BE-EN-2026-0002"))
    assert await standing(registry) == before | {"export": PermitState.ENDORSED_FULL}
    with pytest.raises(PermitDocumentRejected) as refused:
        await receive(registry, clock, endorsement("BE-EN-2026-0003"))
    assert [f.rule for f in refused.value.findings if f.severity == "error"] == ["EN-005"]
    assert "BE-EN-2026-0002" in str(refused.value) and "BE-EN-2026-0001" not in str(refused.value)


async def test_cancelling_a_short_endorsement_takes_back_what_it_gave_back(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"):
        await receive(registry, clock, xml(name))
    before = await standing(registry)
    await receive(registry, clock, endorsement("BE-EN-2026-0001", **SHORT))
    assert (await standing(registry))["remaining"] == [Decimal(2256), Decimal(1474)]
    await receive(registry, clock, CANCELLED_ENDORSEMENT)
    assert await standing(registry) == before | {"export": PermitState.ISSUED}
    await receive(registry, clock, endorsement("BE-EN-2026-0002", **SHORT))
    assert await standing(registry) == {
        "export": PermitState.ENDORSED_PARTIAL,
        "drawn": [Decimal(1504)],
        "import": PermitState.PARTIALLY_USED,
        "remaining": [Decimal(2256), Decimal(1474)],
    }


async def test_an_export_past_its_validity_goes_back_to_awaiting_a_late_endorsement(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"):
        await receive(registry, clock, xml(name))
    clock.advance(timedelta(days=67))  # CH-EA-2026-0001 is valid until 2027-01-24
    assert await registry.expire(clock.now().date()) == 1
    before = await standing(registry)
    assert before["export"] is PermitState.EXPIRED_UNENDORSED
    await receive(registry, clock, endorsement("BE-EN-2026-0001"))
    await receive(registry, clock, CANCELLED_ENDORSEMENT)
    assert await standing(registry) == before
    assert [r.key for r in await registry.overdue_endorsements(date(2027, 3, 1))] == [CH_EA]


async def test_a_cancellation_that_the_import_can_no_longer_take_back_is_refused(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """A short endorsement gave 376 g back and a later export drew them: cancelling it would overdraw."""
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"):
        await receive(registry, clock, xml(name))
    await receive(registry, clock, endorsement("BE-EN-2026-0001", **SHORT))
    later = (
        xml("CH-EA-2026-0001.xml")
        .replace(b"CH-EA-2026-0001", b"CH-EA-2026-0002")
        .replace(b'unitCode="KGM">2.5<', b'unitCode="KGM">3<')
        .replace(b">1880.000</BaseQuantityGrams>", b">2256.000</BaseQuantityGrams>")
    )
    await receive(registry, clock, later)
    before = await standing(registry)
    assert before["remaining"] == [Decimal(0), Decimal(1474)]
    with pytest.raises(PermitRefused) as refused:
        await receive(registry, clock, CANCELLED_ENDORSEMENT)
    said = str(refused.value)
    assert refused.value.rule == "EA-009" and "ImportEndorsement BE-EN-2026-0001" in said
    assert "CH-EA-2026-0001" in said and "cancel or amend one of them first" in said
    assert await standing(registry) == before, "rolled back"
    first = await registry.get(FIRST)
    assert first is not None and first.permit.status is PermitState.ISSUED


CANCELLED_EXECUTION = (
    CANCELLED_ENDORSEMENT.replace(b"BE-CA-2026-0907", b"CH-CA-2026-0908")
    .replace(b"<DocumentType>ImportEndorsement</DocumentType>", b"<DocumentType>ExportExecution</DocumentType>")
    .replace(
        b"<DocumentNumber>BE-EN-2026-0001</DocumentNumber>", b"<DocumentNumber>CH-EX-2026-0001</DocumentNumber>"
    )
    .replace(
        b"<CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>",
        b"<CountryCode>CH</CountryCode><AuthorityId>CH-SWISSMEDIC</AuthorityId>",
    )
    .replace(b"<AuthorityName>FAMHP</AuthorityName>", b"<AuthorityName>Swissmedic</AuthorityName>")
    .replace(b"Wrong quantity endorsed.", b"The consignment did not leave.")
    .replace(b"</DocumentNumber>\n    <IssueDate>2026-11-26<", b"</DocumentNumber>\n    <IssueDate>2026-11-25<")
)


async def test_a_cancelled_execution_leaves_its_export_as_if_it_had_not_shipped(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """An export stayed SHIPPED after its only ExportExecution was cancelled."""
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"):
        await receive(registry, clock, xml(name))
    before = await standing(registry)
    await receive(registry, clock, xml("CH-EX-2026-0001.xml"))
    assert (await standing(registry))["export"] is PermitState.SHIPPED

    await receive(registry, clock, CANCELLED_EXECUTION)
    assert await standing(registry) == before == before | {"export": PermitState.ISSUED}
    await receive(registry, clock, xml("CH-EX-2026-0001.xml").replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002"))
    assert (await standing(registry))["export"] is PermitState.SHIPPED


def _half(data: bytes) -> bytes:
    return data.replace(b'unitCode="KGM">2.5<', b'unitCode="KGM">1.25<').replace(b">1880.000<", b">940.000<")


async def test_two_executions_cancelled_at_once_on_two_nodes_leave_the_export_unshipped(
    pg_url: str, clock: FixedClock
) -> None:
    """Each transaction saw the other execution still live, so neither moved the export back (PostgreSQL)."""
    engine = create_engine(pg_url)
    await upgrade(engine)
    registry = PermitRegistry(engine, clock, ControlTables.load(EXAMPLES / "context"))
    try:
        for data in (xml("BE-IA-2026-0001.xml"), xml("CH-EA-2026-0001.xml")):
            await receive(registry, clock, data)
        first = _half(xml("CH-EX-2026-0001.xml"))
        await receive(registry, clock, first)
        await receive(registry, clock, first.replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002"))
        second = CANCELLED_EXECUTION.replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002")
        documents = []
        for data in (CANCELLED_EXECUTION, second.replace(b"CH-CA-2026-0908", b"CH-CA-2026-0909")):
            parsed = parse_document(data)
            context = await registry.context_for(parsed.outline)
            documents.append(validate_document(parsed, as_of=clock.now().date(), context=context))

        async with engine.connect() as one, engine.connect() as two:
            first_tx, second_tx = await one.begin(), await two.begin()
            await registry.record_on(one, documents[0], direction=Direction.INBOUND, message_id="m-ca1")
            waiting = asyncio.create_task(
                registry.record_on(two, documents[1], direction=Direction.INBOUND, message_id="m-ca2")
            )
            await asyncio.sleep(0.5)  # the second node is at the export's lock
            await first_tx.commit()
            await waiting
            await second_tx.commit()

        assert (await standing(registry))["export"] is PermitState.ISSUED
    finally:
        await engine.dispose()
