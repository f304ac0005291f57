"""An export endorsed before its Cancellation's date, on SQLite and PostgreSQL: an endorsed export cannot be
cancelled, so the cancellation is held while the endorsement stands (the daily job warns of it, the REST view
shows no cancellation date beside ENDORSED) and takes effect once the endorsement is cancelled. The rules, on
the registry's context and on an ``InMemoryContext``, follow that chain as the registry does; a due cancellation
applied as a document is recorded is returned to the caller, to be logged."""

from __future__ import annotations

from datetime import date, timedelta

from gateway.clock import FixedClock
from gateway.documents import DocumentStatus, InMemoryContext, PermitDocument, parse_document
from gateway.interfaces.rest import permit_json
from gateway.store import Direction, MessageStore, PermitRegistry, PermitState
from gateway.store.unit import unit_of_work
from tests.store.test_future_cancellation import (
    FIRST_EN,
    IN_30_DAYS,
    JUST_AFTER_MIDNIGHT,
    cancellation,
    checked_and_recorded,
    keep,
    permit,
    registry,
    renumbered_export,
    rule_errors,
    run_the_daily_job,
)
from tests.store.test_permits import BE_IA, CH_EA, EXAMPLES, example, export, tables

__all__ = ["registry"]  # the fixture, on SQLite and PostgreSQL

EA_CANCELLED = cancellation("CH-CA-2026-0001", CH_EA, IN_30_DAYS)
EN_CANCELLED = cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS)


async def endorsed_before_its_cancellation(registry: PermitRegistry) -> list[PermitDocument]:
    """EA1 (1880 g of line 1) shipped, cancelled from IN_30_DAYS, then endorsed (EN1, 1880 g) before that day;
    EA2 takes the other 1880 g of the line, so nothing is left on it."""
    documents = [
        example("BE-IA-2026-0001.xml"),
        example("CH-EA-2026-0001.xml"),
        example("CH-EX-2026-0001.xml"),
        EA_CANCELLED,
        example("BE-EN-2026-0001.xml"),
        export("CH-EA-2026-0002", "1880"),
    ]
    await keep(registry, *documents)
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]
    return documents


def endorsement_issued_on(day: date) -> bytes:
    """BE-EN-2026-0001 renumbered, issued on ``day``."""
    data = (
        (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", b"BE-EN-2026-0002")
    )
    return data.replace(b"<IssueDate>2026-11-26</IssueDate>", f"<IssueDate>{day}</IssueDate>".encode(), 1)


async def test_the_rules_follow_an_endorsement_cancelled_from_the_export_cancellation_day(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1 is cancelled from the export's cancellation day too. On that day the registry cancels EN1, which
    reopens EA1, whose own cancellation then takes effect: the rules see EA1 cancelled (a new endorsement of it
    issued that day breaks X-025, as the registry would refuse it) and its 1880 g back on the import line (a new
    export of them passes, and the registry records it, applying both cancellations first)."""
    documents = [*await endorsed_before_its_cancellation(registry), EN_CANCELLED]
    await keep(registry, EN_CANCELLED)
    clock.advance(JUST_AFTER_MIDNIGHT)

    again = endorsement_issued_on(IN_30_DAYS)
    assert "X-025" in await rule_errors(registry, again, IN_30_DAYS)
    context = await registry.context_for(parse_document(again).outline)
    assert context.status(CH_EA, as_of=IN_30_DAYS) is DocumentStatus.CANCELLED
    in_memory = InMemoryContext(documents, tables(), as_of=IN_30_DAYS)
    assert in_memory.status(CH_EA, as_of=IN_30_DAYS) is DocumentStatus.CANCELLED
    assert in_memory.remaining_base_grams(BE_IA, 1) == 1880

    new = renumbered_export("CH-EA-2026-0004")
    context = await registry.context_for(parse_document(new).outline)
    assert context.remaining_base_grams(BE_IA, 1) == 1880, "EA1 cancelled: what it drew is given back"
    assert CH_EA not in context.exports_against(BE_IA)
    assert await rule_errors(registry, new, IN_30_DAYS) == []
    recorded = await checked_and_recorded(registry, new, IN_30_DAYS)

    assert [line.drawn_grams for line in recorded.lines] == [1880]
    assert (await permit(registry, FIRST_EN)).status is PermitState.CANCELLED
    cancelled = await permit(registry, CH_EA)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == IN_30_DAYS
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [0, 1474]
    assert (await registry.apply_cancellations(IN_30_DAYS)).cancelled == (), "nothing left for the job"


async def test_the_daily_job_follows_the_chain(registry: PermitRegistry, clock: FixedClock) -> None:
    await endorsed_before_its_cancellation(registry)
    await keep(registry, EN_CANCELLED)
    clock.advance(JUST_AFTER_MIDNIGHT)

    logs = await run_the_daily_job(registry, clock)

    took_effect = [entry for entry in logs if entry["event"] == "permit cancellations took effect"]
    assert took_effect[0]["cancelled"] == [
        "ImportEndorsement BE-EN-2026-0001 of BE",
        "ExportAuthorization CH-EA-2026-0001 of CH",
    ]
    assert not [entry for entry in logs if entry["log_level"] in ("warning", "error")], logs
    assert (await permit(registry, CH_EA)).status is PermitState.CANCELLED


async def test_a_cancellation_held_by_an_endorsement_is_said_and_applies_once_the_endorsement_is_cancelled(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1 stands: EA1 cannot be cancelled. Its REST view shows no cancellation date beside ENDORSED_FULL (the
    held one apart), the rules on either context see it endorsed, not cancelled, and the daily job warns of it,
    naming it, why and what to do. Once EN1 is cancelled, EA1's cancellation takes effect in the same
    transaction, and the registry says so to its caller."""
    documents = await endorsed_before_its_cancellation(registry)
    held = await permit(registry, CH_EA)
    assert held.status is PermitState.ENDORSED_FULL
    assert held.cancelled_on is None and held.cancellation_held == IN_30_DAYS
    assert permit_json(held)["cancelled_on"] is None
    clock.advance(JUST_AFTER_MIDNIGHT)

    context = await registry.context_for(parse_document(endorsement_issued_on(IN_30_DAYS)).outline)
    assert context.status(CH_EA, as_of=IN_30_DAYS) is DocumentStatus.CLOSED
    in_memory = InMemoryContext(documents, tables(), as_of=IN_30_DAYS)
    assert in_memory.status(CH_EA, as_of=IN_30_DAYS) is DocumentStatus.CLOSED
    assert in_memory.exports_against(BE_IA) == (CH_EA, documents[-1].key)
    assert in_memory.remaining_base_grams(BE_IA, 1) == 0, "EA1 still draws what was endorsed"
    assert await rule_errors(registry, endorsement_issued_on(IN_30_DAYS), IN_30_DAYS) == ["EN-005"]

    logs = await run_the_daily_job(registry, clock)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    warning = warnings[0]
    assert warning["document"] == "ExportAuthorization CH-EA-2026-0001 of CH"
    assert warning["cancelled_on"] == IN_30_DAYS.isoformat()
    assert warning["endorsed_by"] == ["ImportEndorsement BE-EN-2026-0001 of BE"]
    assert warning["rule"] == "LIFECYCLE" and "cannot be cancelled" in str(warning["reason"])
    assert "ask the importing authority to cancel it" in str(warning["fix"])
    assert (await permit(registry, CH_EA)).status is PermitState.ENDORSED_FULL

    clock.advance(timedelta(days=1))
    correction = cancellation("BE-CA-2026-0002", FIRST_EN, IN_30_DAYS + timedelta(days=1))
    async with registry.engine.begin() as conn:
        recorded = await registry.record_on(conn, correction, direction=Direction.INBOUND, message_id="m-ca")
    assert (recorded.created, recorded.cancelled) == (True, (CH_EA,))
    cancelled = await permit(registry, CH_EA)
    assert cancelled.status is PermitState.CANCELLED and cancelled.cancelled_on == IN_30_DAYS
    assert cancelled.cancellation_held is None
    assert [line.remaining_grams for line in (await permit(registry, BE_IA)).lines] == [1880, 1474]
    assert not [e for e in await run_the_daily_job(registry, clock) if e["log_level"] == "warning"]


async def test_a_later_cancelled_endorsement_holds_the_export_until_its_own_date(
    registry: PermitRegistry, clock: FixedClock
) -> None:
    """EN1 is cancelled from 10 days after the export's date: from that day, not before, both contexts count EA1
    cancelled, as the job then applies both."""
    documents = await endorsed_before_its_cancellation(registry)
    later = cancellation("BE-CA-2026-0001", FIRST_EN, IN_30_DAYS + timedelta(days=10))
    await keep(registry, later)
    documents.append(later)
    for day, expected in ((IN_30_DAYS, DocumentStatus.CLOSED), (later.effective_date, DocumentStatus.CANCELLED)):
        assert day is not None
        assert InMemoryContext(documents, tables(), as_of=day).status(CH_EA, as_of=day) is expected, day
    outline = parse_document(endorsement_issued_on(IN_30_DAYS)).outline
    clock.advance(JUST_AFTER_MIDNIGHT)
    assert (await registry.context_for(outline)).status(CH_EA, as_of=IN_30_DAYS) is DocumentStatus.CLOSED
    assert (await registry.apply_cancellations(IN_30_DAYS)).cancelled == ()
    clock.advance(timedelta(days=10))
    context = await registry.context_for(outline)
    assert context.status(CH_EA, as_of=IN_30_DAYS + timedelta(days=10)) is DocumentStatus.CANCELLED
    applied = await registry.apply_cancellations(IN_30_DAYS + timedelta(days=10))
    assert applied.cancelled == (FIRST_EN, CH_EA) and applied.held == ()


async def test_a_recording_unit_of_work_returns_the_due_cancellations_it_applied(
    store: MessageStore, clock: FixedClock
) -> None:
    """The caller that records (a submission, a reception) logs what the daily job would have: the store
    returns it, and the unit gathers it for after the commit."""
    registry = PermitRegistry(store.engine, clock, tables())
    everything = export("CH-EA-2026-0002", "3760")
    await keep(registry, example("BE-IA-2026-0001.xml"), everything)
    await keep(registry, cancellation("CH-CA-2026-0001", everything.key, IN_30_DAYS))
    clock.advance(JUST_AFTER_MIDNIGHT)
    new = export("CH-EA-2026-0003", "1880")
    async with unit_of_work(store, registry) as work:
        assert await work.record_permit(new, direction=Direction.OUTBOUND, message_id="m-new") is True
    assert work.cancelled == (everything.key,)
    assert (await permit(registry, everything.key)).status is PermitState.CANCELLED
    async with unit_of_work(store, registry) as work:
        assert await work.record_permit(new, direction=Direction.OUTBOUND, message_id="m-new") is False
    assert work.cancelled == ()
