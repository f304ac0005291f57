"""The permit registry on SQLite and PostgreSQL: unique keys, draws the database refuses to overdraw, state
moves by conditional UPDATE, and a context that answers the rules as ``InMemoryContext`` does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from gateway.clock import FixedClock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentReference,
    DocumentStatus,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.store import (
    Direction,
    PermitRecord,
    PermitRefused,
    PermitRegistry,
    PermitState,
    create_engine,
    upgrade,
)
from gateway.store.schema import permit_documents, permit_lines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
IA, EA = DocumentType.IMPORT_AUTHORIZATION, DocumentType.EXPORT_AUTHORIZATION
BE_IA = DocumentKey(IA, "BE", "BE-IA-2026-0001")
CH_EA = DocumentKey(EA, "CH", "CH-EA-2026-0001")
# Recording order for the examples: what a document names is kept before it.
ORDER = (IA, EA, DocumentType.EXPORT_EXECUTION, DocumentType.IMPORT_ENDORSEMENT, DocumentType.AMENDMENT)


@cache
def example(name: str, folder: str = "valid") -> PermitDocument:
    return validate_document((EXAMPLES / folder / name).read_bytes(), as_of=AS_OF)


@cache
def tables() -> ControlTables:
    return ControlTables.load(EXAMPLES / "context")


def export(number: str, *grams: str) -> PermitDocument:
    """CH-EA-2026-0001 renumbered, drawing ``grams`` on BE-IA-2026-0001's lines 1, 2... in turn."""
    ea = example("CH-EA-2026-0001.xml")
    morphine, codeine = example("BE-IA-2026-0001.xml").lines
    lines = tuple(
        replace(
            ea.lines[0],
            line_number=n,
            substance_id=ia_line.substance_id,
            base_quantity_grams=Decimal(g),
            reference_line_number=n,
        )
        for n, (g, ia_line) in enumerate(zip(grams, (morphine, codeine), strict=False), start=1)
    )
    return replace(ea, number=number, lines=lines, content_sha256=f"{number}:{':'.join(grams)}")


def reference(key: DocumentKey) -> DocumentReference:
    authority = {"BE": "BE-FAMHP", "CH": "CH-SWISSMEDIC", "DE": "DE-BFARM"}[key.issuing_country]
    return DocumentReference(
        document_type=key.document_type,
        number=key.number,
        issue_date=date(2026, 11, 10),
        issuing_country=key.issuing_country,
        issuing_authority=authority,
    )


def endorsement(number: str, grams: str) -> PermitDocument:
    en = example("BE-EN-2026-0001.xml")
    line = replace(en.lines[0], base_quantity_grams=Decimal(grams))
    return replace(en, number=number, lines=(line,), content_sha256=f"{number}:{grams}")


def cancellation(number: str, subject: DocumentKey, issuing_country: str) -> PermitDocument:
    ca = example("DE-CA-2026-0003.xml")
    return replace(
        ca,
        number=number,
        issuing_country=issuing_country,
        subject_ref=reference(subject),
        effective_date=AS_OF,
        content_sha256=number,
    )


def amendment(number: str, replacement: PermitDocument) -> PermitDocument:
    return replace(
        example("DE-AM-2026-0009.xml"),
        number=number,
        issuing_country=replacement.issuing_country,
        subject_ref=reference(replacement.key),
        replacement=replacement,
        version=replacement.version,
        content_sha256=number,
    )


def import_amendment(number: str, version: int, morphine_grams: str) -> PermitDocument:
    ia = example("BE-IA-2026-0001.xml")
    amended = replace(ia.lines[0], base_quantity_grams=Decimal(morphine_grams))
    return amendment(number, replace(ia, version=version, lines=(amended, ia.lines[1]), content_sha256=""))


@pytest.fixture
async def registry(store_url: str, clock: FixedClock) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, clock, tables())
    await engine.dispose()


async def keep(registry: PermitRegistry, *documents: PermitDocument) -> list[PermitRecord]:
    kept = []
    for document in documents:
        record, _ = await registry.record(document, direction=Direction.INBOUND, message_id=f"m-{document.number}")
        kept.append(record)
    return kept


async def permit(registry: PermitRegistry, key: DocumentKey) -> PermitRecord:
    detail = await registry.get(key)
    assert detail is not None, key
    return detail.permit


def remaining(record: PermitRecord) -> list[Decimal | None]:
    return [line.remaining_grams for line in record.lines]


# --- keys and content ------------------------------------------------------------------------------------


async def test_a_document_is_kept_once_under_its_key(registry: PermitRegistry) -> None:
    ia = example("BE-IA-2026-0001.xml")
    first, created = await registry.record(ia, direction=Direction.OUTBOUND, message_id="m1")
    again, created_again = await registry.record(ia, direction=Direction.OUTBOUND, message_id="m2")
    assert created and not created_again
    assert again == first and first.message_id == "m1" and first.direction is Direction.OUTBOUND
    assert first.status is PermitState.ISSUED and first.version == 1
    assert remaining(first) == [Decimal(3760), Decimal(1474)]


async def test_the_same_number_with_other_content_is_refused(registry: PermitRegistry) -> None:
    ia = example("BE-IA-2026-0001.xml")
    await keep(registry, ia)
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, replace(ia, content_sha256="0" * 64))
    assert refused.value.rule == "X-022" and [f.rule for f in refused.value.findings] == ["X-022"]
    assert (await permit(registry, BE_IA)).content_sha256 == ia.content_sha256


async def test_the_largest_figures_the_schemas_allow_are_kept_exactly(registry: PermitRegistry) -> None:
    """The XSD's bounds (quantities up to 10^12, line numbers up to 9999, versions up to 999) fit the store's
    columns, so no document that passed validation can fail in the database."""
    xml = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_text()
    at_bounds = (
        xml.replace("<LineNumber>1</LineNumber>", "<LineNumber>9999</LineNumber>", 1)
        .replace('<GrossQuantity unitCode="KGM">5<', '<GrossQuantity unitCode="KGM">1000000000000<', 1)
        .replace("<BaseQuantityGrams>3760.000<", "<BaseQuantityGrams>1000000000000.000<", 1)
    )
    assert parse_document(at_bounds.encode()).findings == ()
    ia = example("BE-IA-2026-0001.xml")
    largest = replace(
        ia.lines[0], line_number=9999, gross_quantity=Decimal(10**12), base_quantity_grams=Decimal(10**12)
    )
    record, _ = await registry.record(
        replace(ia, lines=(largest, ia.lines[1]), version=999), direction=Direction.INBOUND, message_id="m1"
    )
    kept = await permit(registry, BE_IA)
    assert kept == record and kept.version == 999
    assert [line.line_number for line in kept.lines] == [2, 9999]
    assert remaining(kept) == [Decimal(1474), Decimal(10**12)]


# --- drawing on an import authorization ------------------------------------------------------------------


async def test_an_export_draws_on_its_import_lines(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    detail = await registry.get(BE_IA)
    assert detail is not None
    assert detail.permit.status is PermitState.PARTIALLY_USED
    assert remaining(detail.permit) == [Decimal(1880), Decimal(1474)]
    assert [(r.key, r.lines[0].drawn_grams) for r in detail.against] == [(CH_EA, Decimal(1880))]
    assert detail.against[0].refers_to == BE_IA


async def test_the_database_refuses_to_draw_more_than_remains(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), export("CH-EA-2026-0002", "1880"))
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, export("CH-EA-2026-0003", "1880.000001"))
    assert refused.value.rule == "EA-009"
    assert await registry.get(DocumentKey(EA, "CH", "CH-EA-2026-0003")) is None, "rolled back"
    assert remaining(await permit(registry, BE_IA)) == [Decimal(1880), Decimal(1474)]


async def test_no_update_can_take_a_line_below_zero(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"))
    engine = registry._engine
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(update(permit_lines).values(remaining_micrograms=-1))


async def test_concurrent_exports_cannot_overdraw(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"))
    outcomes = await asyncio.gather(
        *(keep(registry, export(f"CH-EA-2026-01{n:02d}", "1000")) for n in range(5)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 2 and all(isinstance(o, PermitRefused) and o.rule == "EA-009" for o in refused)
    assert remaining(await permit(registry, BE_IA)) == [Decimal(760), Decimal(1474)]


async def test_drawing_everything_exhausts_and_a_cancellation_gives_it_back(registry: PermitRegistry) -> None:
    everything = export("CH-EA-2026-0002", "3760", "1474")
    await keep(registry, example("BE-IA-2026-0001.xml"), everything)
    exhausted = await permit(registry, BE_IA)
    assert exhausted.status is PermitState.EXHAUSTED and remaining(exhausted) == [0, 0]
    await keep(registry, cancellation("CH-CA-2026-0001", everything.key, "CH"))
    cancelled = await permit(registry, everything.key)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == AS_OF
    assert [line.drawn_grams for line in cancelled.lines] == [0, 0]
    released = await permit(registry, BE_IA)
    assert released.status is PermitState.PARTIALLY_USED
    assert remaining(released) == [Decimal(3760), Decimal(1474)]
    context = await registry.context_for(
        parse_document((EXAMPLES / "valid" / "CH-EA-2026-0001.xml").read_bytes()).outline
    )
    assert context.exports_against(BE_IA) == (), "a cancelled export is not live"
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, cancellation("CH-CA-2026-0002", everything.key, "CH"))
    assert refused.value.rule == "X-025"


# --- executions, endorsements, amendments, expiry --------------------------------------------------------


async def test_an_execution_ships_the_export(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"))
    assert (await permit(registry, CH_EA)).status is PermitState.SHIPPED


async def test_a_full_endorsement_closes_the_export(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), example("BE-EN-2026-0001.xml"))
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_FULL
    assert remaining(await permit(registry, BE_IA)) == [Decimal(1880), Decimal(1474)]
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, endorsement("BE-EN-2026-0002", "1880"))
    assert refused.value.rule == "EN-005"
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, cancellation("CH-CA-2026-0001", CH_EA, "CH"))
    assert refused.value.rule == "LIFECYCLE" and "ENDORSED_FULL" in str(refused.value)


async def test_a_short_endorsement_gives_back_what_was_not_imported(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, endorsement("BE-EN-2026-0002", "1504"))
    export_authorization = await permit(registry, CH_EA)
    assert export_authorization.status is PermitState.ENDORSED_PARTIAL
    assert export_authorization.lines[0].drawn_grams == Decimal(1504)
    assert remaining(await permit(registry, BE_IA)) == [Decimal(2256), Decimal(1474)]


async def test_an_amendment_replaces_the_content_and_bumps_the_version(registry: PermitRegistry) -> None:
    await keep(registry, example("DE-IA-2026-0417.xml"), example("DE-AM-2026-0009.xml"))
    amended = await permit(registry, DocumentKey(IA, "DE", "DE-IA-2026-0417"))
    assert amended.version == 2 and amended.status is PermitState.ISSUED
    assert amended.lines[0].base_grams == amended.lines[0].remaining_grams == Decimal("21622.5")
    assert amended.content_sha256 == example("DE-IA-2026-0417.xml").content_sha256, "the original's"
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, replace(example("DE-AM-2026-0009.xml"), number="DE-AM-2026-0010"))
    assert refused.value.rule == "AM-006"


async def test_an_amendment_keeps_what_exports_drew(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, import_amendment("BE-AM-2026-0001", 2, "1000"))
    assert refused.value.rule == "AM-005"
    await keep(registry, import_amendment("BE-AM-2026-0002", 2, "3000"))
    amended = await permit(registry, BE_IA)
    assert amended.version == 2 and remaining(amended) == [Decimal(1120), Decimal(1474)]


async def test_an_amended_export_draws_its_new_quantities(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, amendment("CH-AM-2026-0001", replace(export(CH_EA.number, "2000", "1000"), version=2)))
    amended = await permit(registry, CH_EA)
    assert amended.version == 2 and [line.drawn_grams for line in amended.lines] == [2000, 1000]
    assert remaining(await permit(registry, BE_IA)) == [Decimal(1760), Decimal(474)]
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, amendment("CH-AM-2026-0002", replace(export(CH_EA.number, "3761"), version=3)))
    assert refused.value.rule == "EA-009"
    assert (await permit(registry, CH_EA)).version == 2, "rolled back"


async def test_validity_ends_and_endorsements_fall_overdue(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    ea_until = date(2027, 1, 24)
    assert await registry.overdue_endorsements(date(2027, 2, 3)) == []
    overdue = await registry.overdue_endorsements(date(2027, 2, 4))
    assert [r.key for r in overdue] == [CH_EA]
    assert await registry.overdue_endorsements(date(2027, 2, 4), days=11) == []
    assert await registry.expire(ea_until) == 0
    assert await registry.expire(date(2027, 2, 1)) == 1
    assert (await permit(registry, CH_EA)).status is PermitState.EXPIRED_UNENDORSED
    assert (await permit(registry, BE_IA)).status is PermitState.PARTIALLY_USED
    await keep(registry, example("BE-EN-2026-0001.xml"))
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_FULL, "a late endorsement still closes"
    assert await registry.overdue_endorsements(date(2027, 3, 1)) == []
    assert await registry.expire(date(2027, 3, 1)) == 1
    assert (await permit(registry, BE_IA)).status is PermitState.EXPIRED


async def test_find_filters_by_type_country_and_status(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("DE-IA-2026-0417.xml"))
    assert [r.key.number for r in await registry.find(document_type=IA)] == ["DE-IA-2026-0417", BE_IA.number]
    assert [r.key for r in await registry.find(issuing_country="CH")] == [CH_EA]
    assert [r.key for r in await registry.find(status=PermitState.PARTIALLY_USED)] == [BE_IA]
    assert len(await registry.find(limit=1)) == 1


# --- the context the rules ask ---------------------------------------------------------------------------


def _known_examples() -> list[PermitDocument]:
    documents = [
        example(path.name, folder)
        for folder in ("valid", "context")
        for path in sorted((EXAMPLES / folder).glob("*.xml"))
    ]
    rank = {document_type: n for n, document_type in enumerate(ORDER)}
    return sorted(documents, key=lambda d: rank.get(d.document_type, len(ORDER)))


def _all_examples() -> list[Path]:
    return [
        path for folder in ("valid", "context", "invalid") for path in sorted((EXAMPLES / folder).glob("*.xml"))
    ]


async def test_the_context_answers_the_rules_as_the_in_memory_one(registry: PermitRegistry) -> None:
    known = _known_examples()
    await keep(registry, *known)
    in_memory = InMemoryContext(known, tables())
    for path in _all_examples():
        parsed = parse_document(path.read_bytes())
        ours = validation_report(parsed, as_of=AS_OF, context=await registry.context_for(parsed.outline))
        theirs = validation_report(parsed, as_of=AS_OF, context=in_memory)
        assert [(f.rule, f.severity) for f in ours.findings] == [(f.rule, f.severity) for f in theirs.findings], (
            path
        )


async def test_the_context_holds_what_the_document_names(registry: PermitRegistry) -> None:
    await keep(registry, *_known_examples())
    parsed = parse_document((EXAMPLES / "invalid" / "EA-009-quantity-exceeds-import.xml").read_bytes())
    context = await registry.context_for(parsed.outline)
    assert context.status(BE_IA, as_of=AS_OF) is DocumentStatus.OPEN
    assert context.remaining_base_grams(BE_IA, 1) == Decimal(1880)
    assert context.remaining_base_grams(BE_IA, 1, excluding=CH_EA) == Decimal(3760), "CH_EA is loaded and left out"
    assert context.exports_against(BE_IA) == (CH_EA,)
    assert context.find(DocumentKey(IA, "BE", "BE-IA-2026-0005")) is None, "not named, not loaded"
    assert context.estimate("BE", "morphine", 2026) is not None


async def test_the_context_sums_the_other_executions_of_an_export(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    execution = (EXAMPLES / "valid" / "CH-EX-2026-0001.xml").read_bytes()
    first = DocumentKey(DocumentType.EXPORT_EXECUTION, "CH", "CH-EX-2026-0001")
    context = await registry.context_for(parse_document(execution).outline)
    assert context.executed_base_grams(CH_EA, 1) == 0, "no executions yet"
    await keep(registry, example("CH-EX-2026-0001.xml"))
    context = await registry.context_for(parse_document(execution).outline)
    assert context.executed_base_grams(CH_EA, 1) == Decimal(1880)
    assert context.executed_base_grams(CH_EA, 1, excluding=first) == 0, "not counted against itself"
    second = parse_document(execution.replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002"))
    report = validation_report(second, as_of=AS_OF, context=await registry.context_for(second.outline))
    assert [f.rule for f in report.findings if f.severity == "error"] == ["EX-004"]


_AUTHORITY = (
    b"<IssuingAuthority><CountryCode>CH</CountryCode><AuthorityId>CH-SWISSMEDIC</AuthorityId>"
    b"<AuthorityName>Swissmedic</AuthorityName></IssuingAuthority>"
)
CANCELLED_EXECUTION = b"""<?xml version="1.0" encoding="UTF-8"?>
<Cancellation xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">
  <DocumentNumber>CH-CA-2026-0001</DocumentNumber><IssueDate>2026-11-25</IssueDate>%(authority)s
  <ImportingCountry>BE</ImportingCountry><ExportingCountry>CH</ExportingCountry>
  <CancelledDocument><DocumentType>ExportExecution</DocumentType><DocumentNumber>CH-EX-2026-0001</DocumentNumber>
    <IssueDate>2026-11-25</IssueDate>%(authority)s</CancelledDocument>
  <Reason>issuedInError</Reason><EffectiveDate>2026-11-25</EffectiveDate>
  <ReplacementReference><DocumentType>ExportExecution</DocumentType><DocumentNumber>CH-EX-2026-0002</DocumentNumber>
    <IssueDate>2026-11-25</IssueDate>%(authority)s</ReplacementReference>
</Cancellation>
""" % {b"authority": _AUTHORITY}


async def test_a_cancelled_execution_shipped_nothing_so_its_replacement_passes(registry: PermitRegistry) -> None:
    """EX-004 summed every execution of an export, the cancelled one too, and refused its replacement."""
    documents = [example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"), example("CH-EX-2026-0001.xml")]
    await keep(registry, *documents)
    outline = parse_document(CANCELLED_EXECUTION).outline
    cancellation = validate_document(CANCELLED_EXECUTION, as_of=AS_OF, context=await registry.context_for(outline))
    await keep(registry, cancellation)
    execution = (EXAMPLES / "valid" / "CH-EX-2026-0001.xml").read_bytes()
    replacement = parse_document(execution.replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002"))
    stored = await registry.context_for(replacement.outline)
    in_memory = InMemoryContext([*documents, cancellation], tables())
    for context in (stored, in_memory):
        assert context.executed_base_grams(CH_EA, 1) == 0
        report = validation_report(replacement, as_of=AS_OF, context=context)
        assert [f.rule for f in report.findings if f.severity == "error"] == []


def execution(number: str, dispatched: date) -> PermitDocument:
    """CH-EX-2026-0001 renumbered, dispatched on ``dispatched``."""
    return replace(example("CH-EX-2026-0001.xml"), number=number, effective_date=dispatched, content_sha256=number)


async def test_the_context_gives_the_earliest_dispatch_of_the_live_executions(registry: PermitRegistry) -> None:
    """EN-009 on the store: a receipt on 2026-11-24 passes while an execution dispatched that day is live."""
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    valid = (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes()
    endorsement = parse_document(valid.replace(b">2026-11-26</DateOfReceipt>", b">2026-11-24</DateOfReceipt>"))

    async def dispatched_and_errors() -> tuple[date | None, list[str]]:
        context = await registry.context_for(endorsement.outline)
        report = validation_report(endorsement, as_of=AS_OF, context=context)
        return context.dispatch_date(CH_EA), [f.rule for f in report.findings if f.severity == "error"]

    assert await dispatched_and_errors() == (None, []), "no execution yet"
    second = execution("CH-EX-2026-0002", date(2026, 11, 24))
    await keep(registry, example("CH-EX-2026-0001.xml"), second)
    assert await dispatched_and_errors() == (date(2026, 11, 24), [])
    await keep(registry, cancellation("CH-CA-2026-0001", second.key, "CH"))
    assert await dispatched_and_errors() == (date(2026, 11, 25), ["EN-009"]), "a cancelled one dispatched nothing"


async def test_an_execution_kept_without_its_dispatch_date_leaves_the_rule_out(registry: PermitRegistry) -> None:
    await keep(
        registry, *(example(n) for n in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml", "CH-EX-2026-0001.xml"))
    )
    async with registry.engine.begin() as conn:
        await conn.execute(update(permit_documents).values(effective_date=None))
    outline = parse_document((EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes()).outline
    assert (await registry.context_for(outline)).dispatch_date(CH_EA) is None


async def test_an_unreadable_document_gets_the_tables_alone(registry: PermitRegistry) -> None:
    context = await registry.context_for(parse_document(b"<ImportAuthorization").outline)
    assert context.known == {} and context.tables is tables()
