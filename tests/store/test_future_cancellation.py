"""A Cancellation effective on a later day, on SQLite and PostgreSQL: it is kept at once, with the date on its
document, but the document keeps its state and what it draws, ships or endorses until that day; then the daily
permit job cancels it (once, however often it runs), and the rules see it cancelled from the first minute of the
day, before the job has run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from structlog.testing import capture_logs

from gateway.clock import FixedClock
from gateway.documents import (
    DocumentKey,
    DocumentStatus,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    PermitDocumentRejected,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.interfaces.node import Node, expire_permits
from gateway.store import (
    Direction,
    PermitRecord,
    PermitRefused,
    PermitRegistry,
    PermitState,
    create_engine,
    upgrade,
)
from gateway.store.permits import CancellationsApplied, Recheck
from tests.store.test_permits import (
    AS_OF,
    BE_IA,
    CH_EA,
    EXAMPLES,
    endorsement,
    example,
    export,
    reference,
    tables,
)

EX, EN = DocumentType.EXPORT_EXECUTION, DocumentType.IMPORT_ENDORSEMENT
IN_30_DAYS = AS_OF + timedelta(days=30)
# NOW is noon on AS_OF: this is 00:00:30 on IN_30_DAYS, the daily job not run yet.
JUST_AFTER_MIDNIGHT = IN_30_DAYS - AS_OF - timedelta(hours=12) + timedelta(seconds=30)
FIRST_EX = DocumentKey(EX, "CH", "CH-EX-2026-0001")
FIRST_EN = DocumentKey(EN, "BE", "BE-EN-2026-0001")


@pytest.fixture
async def registry(store_url: str, clock: FixedClock) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, clock, tables())
    await engine.dispose()


def cancellation(number: str, subject: DocumentKey, effective: date) -> PermitDocument:
    """DE-CA-2026-0003 renumbered, cancelling ``subject`` (by its issuer) from ``effective``."""
    return replace(
        example("DE-CA-2026-0003.xml"),
        number=number,
        issuing_country=subject.issuing_country,
        subject_ref=reference(subject),
        effective_date=effective,
        content_sha256=number,
    )


async def keep(registry: PermitRegistry, *documents: PermitDocument) -> None:
    for document in documents:
        await registry.record(document, direction=Direction.INBOUND, message_id=f"m-{document.number}")


async def permit(registry: PermitRegistry, key: DocumentKey) -> PermitRecord:
    detail = await registry.get(key)
    assert detail is not None, key
    return detail.permit


async def run_the_daily_job(registry: PermitRegistry, clock: FixedClock) -> list[dict[str, object]]:
    """The node's daily permit job, on this registry and clock; what it logged."""
    node = cast(Node, SimpleNamespace(permits=registry, clock=clock))
    with capture_logs() as logs:
        await expire_permits(node)
    return logs


def renumbered_export(number: str) -> bytes:
    """CH-EA-2026-0001 (1880 g on line 1 of BE-IA-2026-0001) under another number."""
    return (EXAMPLES / "valid" / "CH-EA-2026-0001.xml").read_bytes().replace(b"CH-EA-2026-0001", number.encode())


async def checked_and_recorded(registry: PermitRegistry, data: bytes, as_of: date) -> PermitRecord:
    """Check a document on ``as_of`` as a submission does, then record it with its rules run again."""
    parsed = parse_document(data)
    document = validate_document(data, as_of=as_of, context=await registry.context_for(parsed.outline))
    record, created = await registry.record(
        document, direction=Direction.OUTBOUND, message_id=f"m-{document.number}", recheck=Recheck(parsed, as_of)
    )
    assert created
    return record


async def rule_errors(registry: PermitRegistry, data: bytes, as_of: date) -> list[str]:
    parsed = parse_document(data)
    report = validation_report(parsed, as_of=as_of, context=await registry.context_for(parsed.outline))
    return [f.rule for f in report.findings if f.severity == "error"]


async def test_an_export_cancelled_from_a_later_day_draws_until_then(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """IA line 1 holds 3760 g; EA1 draws them all; EA1 is cancelled from 30 days on. Until then EA1 is valid and
    usable, so another export of the same 3760 g would authorize them twice: it is refused, by the rules and by
    the database, until the cancellation takes effect."""
    ia, everything = example("BE-IA-2026-0001.xml"), export("CH-EA-2026-0002", "3760")
    later = cancellation("CH-CA-2026-0001", everything.key, IN_30_DAYS)
    await keep(registry, ia, everything, later)
    pending = await permit(registry, everything.key)
    assert pending.status is PermitState.ISSUED and pending.cancelled_on == IN_30_DAYS
    assert [line.drawn_grams for line in pending.lines] == [3760]
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]
    assert (await registry.get(later.key)) is not None, "the cancellation is kept"

    with pytest.raises(PermitRefused) as refused:
        await keep(registry, export("CH-EA-2026-0003", "3760"))
    assert refused.value.rule == "EA-009"
    assert "EA-009" in await rule_errors(registry, renumbered_export("CH-EA-2026-0004"), AS_OF)
    context = await registry.context_for(parse_document(renumbered_export("CH-EA-2026-0004")).outline)
    assert context.exports_against(BE_IA) == (everything.key,)
    assert context.remaining_base_grams(BE_IA, 1) == 0
    assert context.status(everything.key, as_of=AS_OF) is DocumentStatus.OPEN
    assert context.status(everything.key, as_of=IN_30_DAYS) is DocumentStatus.CANCELLED
    in_memory = [ia, everything, later]
    assert InMemoryContext(in_memory, tables(), as_of=AS_OF).remaining_base_grams(BE_IA, 1) == 0
    assert InMemoryContext(in_memory, tables(), as_of=AS_OF).exports_against(BE_IA) == (everything.key,)
    assert InMemoryContext(in_memory, tables(), as_of=IN_30_DAYS).remaining_base_grams(BE_IA, 1) == 3760

    clock.advance(IN_30_DAYS - AS_OF - timedelta(hours=12))  # the first minute of the day, the job not run yet
    context = await registry.context_for(parse_document(renumbered_export("CH-EA-2026-0004")).outline)
    assert context.remaining_base_grams(BE_IA, 1) == 3760, "the rules see it given back"
    assert context.exports_against(BE_IA) == ()
    naming = (
        (EXAMPLES / "valid" / "CH-EX-2026-0001.xml").read_bytes().replace(b"CH-EA-2026-0001", b"CH-EA-2026-0002")
    )
    context = await registry.context_for(parse_document(naming).outline)
    assert context.status(everything.key, as_of=IN_30_DAYS) is DocumentStatus.CANCELLED
    assert context.status(everything.key, as_of=IN_30_DAYS - timedelta(days=1)) is DocumentStatus.OPEN
    assert "EA-009" not in await rule_errors(registry, renumbered_export("CH-EA-2026-0004"), IN_30_DAYS)

    logs = await run_the_daily_job(registry, clock)
    cancelled = await permit(registry, everything.key)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == IN_30_DAYS
    assert [line.drawn_grams for line in cancelled.lines] == [0]
    released = await permit(registry, BE_IA)
    assert released.status is PermitState.PARTIALLY_USED and [line.remaining_grams for line in released.lines] == [
        3760,
        1474,
    ]
    took_effect = [entry for entry in logs if entry["event"] == "permit cancellations took effect"]
    assert took_effect and took_effect[0]["cancelled"] == ["ExportAuthorization CH-EA-2026-0002 of CH"]
    await keep(registry, export("CH-EA-2026-0003", "3760"))
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]


async def test_an_execution_cancelled_from_a_later_day_counts_as_shipped_until_then(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), cancellation("CH-CA-2026-0001", FIRST_EX, IN_30_DAYS))
    assert (await permit(registry, FIRST_EX)).status is PermitState.ISSUED
    assert (await permit(registry, CH_EA)).status is PermitState.SHIPPED
    execution = (EXAMPLES / "valid" / "CH-EX-2026-0001.xml").read_bytes()
    replacement = execution.replace(b"CH-EX-2026-0001", b"CH-EX-2026-0002")
    context = await registry.context_for(parse_document(replacement).outline)
    assert context.executed_base_grams(CH_EA, 1) == 1880, "still shipped"
    assert await rule_errors(registry, replacement, AS_OF) == ["EX-004"]

    clock.advance(IN_30_DAYS - AS_OF)
    context = await registry.context_for(parse_document(replacement).outline)
    assert context.executed_base_grams(CH_EA, 1) == 0, "shipped nothing from its date, the job not run yet"
    await run_the_daily_job(registry, clock)
    assert (await permit(registry, FIRST_EX)).status is PermitState.CANCELLED
    assert (await permit(registry, CH_EA)).status is PermitState.ISSUED, "un-shipped"


async def test_an_endorsement_cancelled_from_a_later_day_closes_the_export_until_then(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), example("BE-EN-2026-0001.xml"))
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    assert (await permit(registry, FIRST_EN)).status is PermitState.ISSUED
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_FULL
    clock.advance(IN_30_DAYS - AS_OF)
    await run_the_daily_job(registry, clock)
    assert (await permit(registry, FIRST_EN)).status is PermitState.CANCELLED
    assert (await permit(registry, CH_EA)).status is PermitState.SHIPPED, "reopened, and its execution stands"


async def test_a_second_cancellation_keeps_the_earliest_date(registry: PermitRegistry) -> None:
    ia, everything = example("BE-IA-2026-0001.xml"), export("CH-EA-2026-0002", "3760")
    await keep(registry, ia, everything, cancellation("CH-CA-2026-0001", everything.key, IN_30_DAYS))
    await keep(registry, cancellation("CH-CA-2026-0002", everything.key, AS_OF + timedelta(days=10)))
    await keep(registry, cancellation("CH-CA-2026-0003", everything.key, AS_OF + timedelta(days=20)))
    pending = await permit(registry, everything.key)
    assert pending.status is PermitState.ISSUED and pending.cancelled_on == AS_OF + timedelta(days=10)
    await keep(registry, cancellation("CH-CA-2026-0004", everything.key, AS_OF))
    cancelled = await permit(registry, everything.key)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == AS_OF, "today's at once"
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [3760, 1474]
    with pytest.raises(PermitRefused) as refused:
        await keep(registry, cancellation("CH-CA-2026-0005", everything.key, IN_30_DAYS))
    assert refused.value.rule == "X-025"


async def test_the_daily_job_applies_a_cancellation_once(registry: PermitRegistry, clock: FixedClock) -> None:
    ia, everything = example("BE-IA-2026-0001.xml"), export("CH-EA-2026-0002", "3760")
    await keep(registry, ia, everything, cancellation("CH-CA-2026-0001", everything.key, IN_30_DAYS))
    assert (await registry.apply_cancellations(IN_30_DAYS - timedelta(days=1))).cancelled == (), "not yet"
    clock.advance(IN_30_DAYS - AS_OF)
    runs = await asyncio.gather(*(registry.apply_cancellations(IN_30_DAYS) for _ in range(3)))
    assert [key for run in runs for key in run.cancelled] == [everything.key]
    assert all(run.refused == () for run in runs)
    assert (await registry.apply_cancellations(IN_30_DAYS)).cancelled == (), "a later run has nothing to do"
    assert not [e for e in await run_the_daily_job(registry, clock) if "cancellation" in str(e["event"])]
    assert (await permit(registry, everything.key)).status is PermitState.CANCELLED
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [3760, 1474]


async def test_a_cancellation_effective_today_or_before_applies_at_once(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    ia = example("BE-IA-2026-0001.xml")
    today, yesterday = export("CH-EA-2026-0002", "1000"), export("CH-EA-2026-0003", "1000")
    await keep(registry, ia, today, yesterday)
    await keep(registry, cancellation("CH-CA-2026-0001", today.key, AS_OF))
    await keep(registry, cancellation("CH-CA-2026-0002", yesterday.key, AS_OF - timedelta(days=1)))
    for key, day in ((today.key, AS_OF), (yesterday.key, AS_OF - timedelta(days=1))):
        cancelled = await permit(registry, key)
        assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == day
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [3760, 1474]
    assert (await registry.apply_cancellations(AS_OF)).cancelled == ()


async def test_a_future_cancellation_of_an_endorsed_export_is_refused_at_once(registry: PermitRegistry) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("BE-EN-2026-0001.xml"))
    with pytest.raises(PermitDocumentRejected) as refused:
        await keep(registry, cancellation("CH-CA-2026-0001", CH_EA, IN_30_DAYS))
    assert isinstance(refused.value, PermitRefused) and refused.value.rule == "LIFECYCLE"
    assert (await permit(registry, CH_EA)).cancelled_on is None


async def test_a_new_export_applies_a_due_cancellation_before_the_daily_job_does(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """The review's case: at 00:00:30 on the day EA1's cancellation takes effect, the job not run yet, the rules
    give its 3760 g back to the import, and a new export taking 1880 g of them passes them. The registry applies
    the due cancellation in the new export's transaction (EA1 CANCELLED, its draw given back) before drawing,
    rather than refusing the export with EA-009 and a hint blaming a race; the job later has nothing to do."""
    ia, everything = example("BE-IA-2026-0001.xml"), export("CH-EA-2026-0002", "3760")
    await keep(registry, ia, everything, cancellation("CH-CA-2026-0001", everything.key, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)
    new = renumbered_export("CH-EA-2026-0004")
    assert await rule_errors(registry, new, IN_30_DAYS) == []

    recorded = await checked_and_recorded(registry, new, IN_30_DAYS)
    assert recorded.status is PermitState.ISSUED and [line.drawn_grams for line in recorded.lines] == [1880]
    cancelled = await permit(registry, everything.key)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == IN_30_DAYS
    assert [line.drawn_grams for line in cancelled.lines] == [0]
    drawn = await permit(registry, BE_IA)
    assert drawn.status is PermitState.PARTIALLY_USED
    assert [line.remaining_grams for line in drawn.lines] == [3760 - 1880, 1474], "given back, then drawn"

    logs = await run_the_daily_job(registry, clock)
    assert not [e for e in logs if "cancellation" in str(e["event"])], "nothing left for the job"
    assert (await registry.apply_cancellations(IN_30_DAYS)) == CancellationsApplied()
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [3760 - 1880, 1474]


async def test_a_new_endorsement_applies_the_due_cancellation_of_the_one_it_replaces(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1's cancellation is due, the job not run yet: the rules count EN1 as cancelled and pass a new
    endorsement of the same export. Its transaction cancels EN1 first (which reopens the export, shipped), so
    the export can be endorsed again, rather than refused as already endorsed (EN-005)."""
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), example("BE-EN-2026-0001.xml"))
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)
    again = (
        (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", b"BE-EN-2026-0002")
    )
    await checked_and_recorded(registry, again, IN_30_DAYS)
    assert (await permit(registry, FIRST_EN)).status is PermitState.CANCELLED
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_FULL
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [3760 - 1880, 1474]
    assert (await registry.apply_cancellations(IN_30_DAYS)) == CancellationsApplied()


async def test_a_due_cancellation_the_registry_cannot_apply_is_named_in_the_refusal(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1 endorsed 1000 of EA1's 1880 g; EA2 took the 2760 g that left on the import line; EN1 is cancelled from
    30 days on. On that day the rules count EN1 as cancelled and pass a new endorsement of EA1, but applying
    EN1's cancellation would reopen EA1, which would draw its 1880 g again: they no longer fit, so it is left
    (the job refuses it too), EA1 stays endorsed, and the new endorsement is refused. The refusal's hint names
    EN1's pending cancellation, its date, why it cannot be applied and what to do; not a race."""
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), endorsement("BE-EN-2026-0001", "1000"))
    await keep(registry, export("CH-EA-2026-0002", "2760"))
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]
    clock.advance(JUST_AFTER_MIDNIGHT)
    again = (
        (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", b"BE-EN-2026-0002")
    )
    assert await rule_errors(registry, again, IN_30_DAYS) == []

    with pytest.raises(PermitRefused) as refused:
        await checked_and_recorded(registry, again, IN_30_DAYS)
    finding = refused.value.findings[0]
    assert refused.value.rule == "EN-005" and "ENDORSED_PARTIAL" in finding.message
    assert finding.hint is not None
    assert f"ImportEndorsement BE-EN-2026-0001 of BE is cancelled from {IN_30_DAYS}" in finding.hint
    assert "no longer fits on line 1 of ImportAuthorization BE-IA-2026-0001" in finding.hint, "why"
    assert "cancel or amend one of them first" in finding.hint, "the fix"
    assert "The registry changed while the document was checked" not in finding.hint
    assert (await registry.get(DocumentKey(EN, "BE", "BE-EN-2026-0002"))) is None
    assert (await permit(registry, FIRST_EN)).status is PermitState.ISSUED, "its cancellation undone"
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_PARTIAL
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]
    applied = await registry.apply_cancellations(IN_30_DAYS)
    assert applied.cancelled == () and [key for key, _ in applied.refused] == [FIRST_EN]


async def test_a_due_endorsement_cancellation_that_fits_once_a_due_export_is_cancelled_applies(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1's cancellation reopens EA1, which fits on the import only once EA2's cancellation, due the same day,
    gave its 2760 g back. Applied in lock order (endorsements before exports), EN1 was refused and held back and
    the new endorsement refused; they are applied until nothing more applies, by a record and by the job."""
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), endorsement("BE-EN-2026-0001", "1000"))
    ea2 = export("CH-EA-2026-0002", "2760")
    await keep(registry, ea2)
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    await keep(registry, cancellation("CH-CA-2026-0001", ea2.key, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)
    again = (
        (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", b"BE-EN-2026-0002")
    )
    assert await rule_errors(registry, again, IN_30_DAYS) == []

    await checked_and_recorded(registry, again, IN_30_DAYS)

    assert (await permit(registry, FIRST_EN)).status is PermitState.CANCELLED
    assert (await permit(registry, ea2.key)).status is PermitState.CANCELLED
    assert (await registry.apply_cancellations(IN_30_DAYS)) == CancellationsApplied()


async def test_the_daily_job_applies_until_nothing_more_applies(registry: PermitRegistry, clock: FixedClock) -> None:
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"), endorsement("BE-EN-2026-0001", "1000"))
    ea2 = export("CH-EA-2026-0002", "2760")
    await keep(registry, ea2)
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    await keep(registry, cancellation("CH-CA-2026-0001", ea2.key, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)

    applied = await registry.apply_cancellations(IN_30_DAYS)

    assert set(applied.cancelled) == {FIRST_EN, ea2.key} and applied.refused == ()


async def test_a_document_for_an_export_whose_cancellation_took_effect_as_it_was_recorded_says_so(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EA1 cancelled from day D, endorsed before D by EN1, whose cancellation is due on D too: recording a new
    endorsement of EA1 on D cancels EN1, which reopens EA1, whose own cancellation then takes effect. The new
    endorsement is refused; its hint says why, not that the registry changed while it was checked."""
    await keep(registry, example("BE-IA-2026-0001.xml"), example("CH-EA-2026-0001.xml"))
    await keep(registry, example("CH-EX-2026-0001.xml"))
    await keep(registry, cancellation("CH-CA-2026-0001", CH_EA, IN_30_DAYS))
    await keep(registry, example("BE-EN-2026-0001.xml"))
    await keep(registry, cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)
    again = (
        (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", b"BE-EN-2026-0002")
    )

    with pytest.raises(PermitRefused) as refused:
        await checked_and_recorded(registry, again, IN_30_DAYS)

    hint = refused.value.findings[0].hint or ""
    assert f"ExportAuthorization CH-EA-2026-0001 of CH is cancelled from {IN_30_DAYS}" in hint, hint
    assert "took effect as this document was recorded" in hint and "registry changed" not in hint
