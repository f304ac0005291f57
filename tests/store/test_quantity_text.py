"""A line's gross quantity is kept as its exact value in plain digits, not as the document wrote it: a valid
permit whose quantity carries sixty trailing zeros (or an exponent) is kept, on PostgreSQL too, where the text
as written overflowed the column and the submitter got a server error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import FixedClock
from gateway.documents import ControlTables, DocumentKey, DocumentType, PermitDocument, validate_document
from gateway.store import Direction, PermitRegistry, create_engine, upgrade
from gateway.store.schema import permit_lines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
GROSS = b'<GrossQuantity unitCode="KGM">5</GrossQuantity>'
BE_IA = DocumentKey(DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001")


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def registry(engine: AsyncEngine, clock: FixedClock) -> PermitRegistry:
    return PermitRegistry(engine, clock, ControlTables.load(EXAMPLES / "context"))


def _import_with_gross(text: bytes) -> PermitDocument:
    data = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()
    changed = data.replace(GROSS, b'<GrossQuantity unitCode="KGM">' + text + b"</GrossQuantity>")
    assert changed != data
    return validate_document(changed, as_of=AS_OF)


async def _kept_texts(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(permit_lines.c.gross_quantity).order_by(permit_lines.c.line_number))
        return [row.gross_quantity for row in rows]


async def test_a_long_zero_padded_quantity_of_a_valid_permit_is_kept_as_its_value(
    registry: PermitRegistry, engine: AsyncEngine
) -> None:
    document = _import_with_gross(b"5." + b"0" * 60)

    record, created = await registry.record(document, direction=Direction.INBOUND, message_id="m-long")

    assert created
    assert (await _kept_texts(engine))[0] == "5"
    detail = await registry.get(BE_IA)
    assert detail is not None and detail.permit == record


@pytest.mark.parametrize(
    ("quantity", "kept"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("1.0E+2"), "100"),
        (Decimal("0.000100"), "0.0001"),
        (Decimal("1.5E-3"), "0.0015"),
        (Decimal("999999999999.999999"), "999999999999.999999"),
        (Decimal("-1000000000000.000000"), "-1000000000000"),
        (Decimal("21622.500"), "21622.5"),
    ],
)
async def test_quantities_are_kept_exactly_in_plain_digits(
    registry: PermitRegistry, engine: AsyncEngine, quantity: Decimal, kept: str
) -> None:
    ia = _import_with_gross(b"5.0")
    lines = (replace(ia.lines[0], gross_quantity=quantity), *ia.lines[1:])

    await registry.record(replace(ia, lines=lines), direction=Direction.INBOUND, message_id="m-1")

    assert (await _kept_texts(engine))[0] == kept
