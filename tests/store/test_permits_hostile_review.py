"""The permit registry with large documents and hashes kept before canonical hashing (review), on SQLite and
PostgreSQL: an export's draws go in one statement for all its lines, an over-draw is still refused, and a
permit kept under the hash of its bytes still matches the same bytes sent again."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from gateway.clock import FixedClock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentType,
    PermitDocument,
    parse_document,
    validate_document,
)
from gateway.store import Direction, PermitRefused, PermitRegistry, create_engine, upgrade

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
BE_IA = DocumentKey(DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001")
IA_BYTES = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()
LINES = 200


@pytest.fixture
async def registry(store_url: str, clock: FixedClock) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, clock, ControlTables.load(EXAMPLES / "context"))
    await engine.dispose()


def import_of_many_lines() -> PermitDocument:
    ia = validate_document(IA_BYTES, as_of=AS_OF)
    first = ia.lines[0]
    return replace(ia, lines=tuple(replace(first, line_number=n) for n in range(1, LINES + 1)))


def export_drawing(grams: Decimal, *, over_on: int | None = None) -> PermitDocument:
    """CH-EA-2026-0001 with one line per import line, each drawing ``grams`` (line ``over_on`` ten times more)."""
    ea = validate_document((EXAMPLES / "valid" / "CH-EA-2026-0001.xml").read_bytes(), as_of=AS_OF)
    template = ea.lines[0]
    lines = tuple(
        replace(
            template,
            line_number=n,
            reference_line_number=n,
            base_quantity_grams=grams * 10 if n == over_on else grams,
        )
        for n in range(1, LINES + 1)
    )
    return replace(ea, lines=lines, content_sha256=f"ea:{over_on}")


class Statements:
    """The UPDATEs of permit_lines the engine sends, each executemany counted once."""

    def __init__(self) -> None:
        self.updates = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if re.match(r"\s*UPDATE permit_lines\b", statement):
            self.updates += 1


async def test_an_export_draws_on_all_its_lines_in_one_statement(registry: PermitRegistry) -> None:
    ia = import_of_many_lines()
    await registry.record(ia, direction=Direction.INBOUND, message_id="m-ia")
    per_line = ia.lines[0].base_quantity_grams
    assert per_line is not None
    statements = Statements()
    event.listen(registry.engine.sync_engine, "before_cursor_execute", statements)
    try:
        record, created = await registry.record(
            export_drawing(per_line / 4), direction=Direction.INBOUND, message_id="m-ea"
        )
    finally:
        event.remove(registry.engine.sync_engine, "before_cursor_execute", statements)
    assert created and len(record.lines) == LINES
    assert statements.updates == 2, "one statement draws on the import lines, one sets what each export line drew"
    detail = await registry.get(BE_IA)
    assert detail is not None
    assert {line.remaining_grams for line in detail.permit.lines} == {per_line - per_line / 4}


async def test_an_over_draw_among_many_lines_is_refused_naming_its_line_and_nothing_is_drawn(
    registry: PermitRegistry,
) -> None:
    ia = import_of_many_lines()
    await registry.record(ia, direction=Direction.INBOUND, message_id="m-ia")
    per_line = ia.lines[0].base_quantity_grams
    assert per_line is not None
    with pytest.raises(PermitRefused) as refused:
        await registry.record(
            export_drawing(per_line / 4, over_on=137), direction=Direction.INBOUND, message_id="m-ea"
        )
    (finding,) = refused.value.findings
    assert finding.rule == "EA-009" and finding.message.startswith("line 137: ")
    assert "no longer fits on line 137 of ImportAuthorization BE-IA-2026-0001" in finding.message
    detail = await registry.get(BE_IA)
    assert detail is not None
    assert {line.remaining_grams for line in detail.permit.lines} == {per_line}


async def test_a_permit_kept_under_its_bytes_hash_matches_the_same_bytes_again(registry: PermitRegistry) -> None:
    """Permits kept before hashes were canonical hold the SHA-256 of their bytes: the same bytes sent again are
    the same permit (kept once, not refused as X-022), to the rules, to the registry and to the submit path."""
    document = validate_document(IA_BYTES, as_of=AS_OF)
    assert document.raw_sha256 and document.raw_sha256 != document.content_sha256
    old = replace(document, content_sha256=document.raw_sha256)
    await registry.record(old, direction=Direction.OUTBOUND, message_id="m-old")

    outline = parse_document(IA_BYTES).outline
    assert outline is not None
    context = await registry.context_for(outline)
    assert context.known[BE_IA].content_sha256 == outline.content_sha256
    again = validate_document(IA_BYTES, as_of=AS_OF, context=context)
    _, created = await registry.record(again, direction=Direction.OUTBOUND, message_id="m-again")
    assert not created

    changed = replace(again, content_sha256="0" * 64, raw_sha256="1" * 64)
    with pytest.raises(PermitRefused) as refused:
        await registry.record(changed, direction=Direction.OUTBOUND, message_id="m-other")
    (finding,) = refused.value.findings
    assert finding.rule == "X-022" and "send the original bytes again" in finding.hint
