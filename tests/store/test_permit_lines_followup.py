"""What the rules ask of stored permit lines, on SQLite and PostgreSQL, through the path a permit takes
(``context_for``, the rules, ``record``): a 1971 preparation's name (BR-07), whether a line is for re-export (the
estimate), and the units the other exports already take from an import line in a count unit (EA-008)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from gateway.clock import FixedClock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentType,
    PermitDocument,
    ValidationReport,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.store import Direction, PermitRegistry, create_engine, upgrade
from gateway.store.migrate import downgrade
from gateway.store.schema import permit_lines
from tests.conftest import NOW
from tests.documents.conftest import AS_OF, EXAMPLES
from tests.documents.test_rules_review_permit_awareness import (
    MORPHINE,
    _big_import,
    _example,
    _prep,
    _prep_export,
    _sub,
    _tablet_export,
    _tablet_import,
)

IA = DocumentType.IMPORT_AUTHORIZATION
RITALIN_IMPORT = DocumentKey(IA, "BE", "BE-IA-2026-0904")


@pytest.fixture
async def registry(store_url: str) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, FixedClock(NOW), ControlTables.load(EXAMPLES / "context"))
    await engine.dispose()


async def check(registry: PermitRegistry, text: str) -> ValidationReport:
    """Every rule, against what the registry holds, as the inbound and submission paths run them."""
    data = text.encode()
    context = await registry.context_for(parse_document(data).outline)
    return validation_report(data, as_of=AS_OF, context=context)


async def receive(registry: PermitRegistry, text: str) -> PermitDocument:
    data = text.encode()
    context = await registry.context_for(parse_document(data).outline)
    document = validate_document(data, as_of=AS_OF, context=context)
    await registry.record(document, direction=Direction.INBOUND, message_id=f"m-{document.number}")
    return document


def errors(report: ValidationReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in report.findings:
        if finding.severity == "error":
            found.setdefault(finding.rule, []).append(finding.message)
    return found


def ritalin_import() -> str:
    return _sub(
        _example("BE-IA-2026-0001.xml"), ("BE-IA-2026-0001", "BE-IA-2026-0904"), (MORPHINE, _prep("Ritalin 10 mg"))
    )


# 1. The preparation's name and the re-export flag are kept.


async def test_a_stored_import_line_keeps_its_preparation_name_and_br07_holds_the_export_to_it(
    registry: PermitRegistry,
) -> None:
    await receive(registry, ritalin_import())
    context = await registry.context_for(parse_document(_prep_export("Other 54 mg").encode()).outline)
    kept = context.find(RITALIN_IMPORT)
    assert kept is not None and kept.lines[0].preparation_name == "Ritalin 10 mg"

    report = await check(registry, _prep_export("Totally Different Product 54 mg"))
    assert report.document is None
    (message,) = errors(report)["EA-008"]
    assert "authorizes preparation Ritalin 10 mg, not Totally Different Product 54 mg" in message
    assert (await check(registry, _prep_export(" ritalin  10 MG"))).document is not None


async def test_a_stored_line_keeps_its_re_export_purpose(registry: PermitRegistry) -> None:
    await receive(registry, _big_import("reExport"))
    key = DocumentKey(IA, "BE", "BE-IA-2026-0902")
    context = await registry.context_for(parse_document(_big_import("reExport").encode()).outline)
    kept = context.find(key)
    assert kept is not None
    assert {line.substance_id: line.re_export for line in kept.lines} == {"morphine": True, "codeine": False}


# 2. Amounts for re-export count against no estimate, on the documents kept before either.


def _second_import() -> str:
    """52,640 g of morphine for manufacture: within BE's 60,000 g estimate only if the re-export is left out."""
    return _sub(_big_import("manufacture"), ("BE-IA-2026-0902", "BE-IA-2026-0906"))


async def test_a_kept_re_export_line_does_not_count_against_the_estimate_of_a_later_import(
    registry: PermitRegistry,
) -> None:
    await receive(registry, _big_import("reExport"))
    report = await check(registry, _second_import())
    assert "X-026" not in errors(report) and report.document is not None, errors(report)
    # a line for the importing country's own use still counts
    await receive(registry, _second_import())
    third = _sub(_big_import("manufacture"), ("BE-IA-2026-0902", "BE-IA-2026-0907"))
    assert "X-026" in errors(await check(registry, third))


async def test_a_kept_re_export_import_checked_again_is_not_counted_against_itself(
    registry: PermitRegistry,
) -> None:
    await receive(registry, _second_import())
    await receive(registry, _big_import("reExport"))
    context = await registry.context_for(parse_document(_big_import("reExport").encode()).outline)
    counted = context.authorized_base_grams(
        IA, "BE", "morphine", 2026, excluding=DocumentKey(IA, "BE", "BE-IA-2026-0902")
    )
    assert counted == 52640


# 3. The units the other exports take from an import line in a count unit.


async def test_a_fourth_export_of_300_tablets_against_1000_is_refused_with_stored_exports(
    registry: PermitRegistry,
) -> None:
    await receive(registry, _tablet_import())
    for n in (1, 2, 3):
        await receive(registry, _tablet_export(n, "300", "9"))
    report = await check(registry, _tablet_export(4, "300", "9"))
    assert report.document is None
    assert any(
        "authorizes 1000 H87 gross; CH-EA-2026-0901, CH-EA-2026-0902, CH-EA-2026-0903 already take 900 H87" in m
        for m in errors(report)["EA-008"]
    ), errors(report)


async def test_units_bind_where_exports_kept_before_the_check_declared_too_little_base(
    registry: PermitRegistry,
) -> None:
    """Exports kept before the base grams per unit were checked declared 1 g for 300 tablets: 27 g of the
    line's 30 g are left, so only the units taken refuse a fourth export of 300."""
    await receive(registry, _tablet_import())
    for n in (1, 2, 3):
        kept = validate_document(_tablet_export(n, "300", "1").encode(), as_of=AS_OF)
        await registry.record(kept, direction=Direction.INBOUND, message_id=f"m-{n}")
    report = await check(registry, _tablet_export(4, "300", "9"))
    assert report.document is None
    assert list(errors(report)) == ["EA-008"], errors(report)
    assert "already take 900 H87, which leaves 100" in errors(report)["EA-008"][0]


async def test_an_endorsed_stored_export_takes_what_was_received(registry: PermitRegistry) -> None:
    await receive(registry, _tablet_import())
    for n in (1, 2, 3):
        await receive(registry, _tablet_export(n, "300", "9"))
    endorsement = _sub(
        _example("BE-EN-2026-0001.xml"),
        ("BE-EN-2026-0001", "BE-EN-2026-0901"),
        ("CH-EA-2026-0001", "CH-EA-2026-0901"),
        ("BE-IA-2026-0001", "BE-IA-2026-0901"),
        ('<GrossQuantity unitCode="KGM">2.5</GrossQuantity>', '<GrossQuantity unitCode="H87">100</GrossQuantity>'),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>3</BaseQuantityGrams>"),
    )
    await receive(registry, endorsement)
    report = await check(registry, _tablet_export(4, "300", "9"))
    assert report.document is not None, errors(report)
    report = await check(registry, _tablet_export(4, "301", "9.03"))
    assert "already take 700 H87" in errors(report)["EA-008"][0]


# The migration.


async def test_0009_keeps_the_lines_of_a_store_and_reads_old_ones_as_unnamed_and_not_for_re_export(
    store_url: str,
) -> None:
    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        registry = PermitRegistry(engine, FixedClock(NOW), ControlTables.load(EXAMPLES / "context"))
        await receive(registry, ritalin_import())
        await receive(registry, _big_import("reExport"))
        await downgrade(engine, "0008")
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(permit_lines.c.preparation_name, permit_lines.c.re_export))).all()
        assert len(rows) == 4 and set(rows) == {(None, False)}
        await receive(registry, _sub(ritalin_import(), ("BE-IA-2026-0904", "BE-IA-2026-0908")))
        async with engine.connect() as conn:
            named = select(permit_lines.c.preparation_name).where(permit_lines.c.preparation_name.is_not(None))
            assert (await conn.execute(named)).scalars().all() == ["Ritalin 10 mg"]
    finally:
        await engine.dispose()
