"""Migrations 0004 to 0012 on SQLite and PostgreSQL: ``permit-gateway db upgrade`` brings a 0003 store to the
head, the migrated schema is exactly ``schema.metadata``, and the store's purge, payload-file, listing and
queue-depth queries use the indexes they add (asked with EXPLAIN; PostgreSQL with sequential scans discouraged, as its tables are tiny).
0010 gives the received messages still waiting to be delivered the findings they were accepted with; 0011 adds the
received messages' header digests, NULL for those received before it; 0012 indexes permit_documents.cancelled_on
for the daily permit job's due cancellations; 0013 numbers messages' claims (claim_seq, from the attempts of those
still claimable) and records the message that superseded a FAILED one (superseded_by, from its timeline)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from gateway.clock import FixedClock
from gateway.interfaces.cli import app
from gateway.store import Direction, Event, MessageStore, NewMessage, PermitRegistry, State, create_engine, upgrade
from gateway.store.lifecycle import Superseded
from gateway.store.migrate import downgrade, head_revision
from gateway.store.schema import message_events, messages, metadata

NEW_INDEXES = {
    "ix_messages_state_updated_at",
    "ix_messages_payload_sha256",
    "ix_messages_wire_sha256",
    "ix_messages_direction_id",
    "ix_messages_direction_partner_id_state",
}


def _state(connection: Any) -> tuple[str | None, set[str], list[Any]]:
    revision = MigrationContext.configure(connection).get_current_revision()
    indexes = {ix["name"] for ix in inspect(connection).get_indexes("messages") if ix["name"]}
    return revision, indexes, compare_metadata(MigrationContext.configure(connection), metadata)


async def test_db_upgrade_applies_every_later_migration_to_a_0003_store(store_url: str, tmp_path: Path) -> None:
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0003")
        async with engine.connect() as conn:
            revision, indexes, _ = await conn.run_sync(_state)
        assert revision == "0003" and not indexes & NEW_INDEXES
        config = tmp_path / "gateway.toml"
        config.write_text(
            '[identity]\nparty_id = "BE-FAMHP"\ncountry = "BE"\nauthority_name = "FAMHP"\n'
            f'[store]\nurl = "{store_url}"\n'
        )
        # the command runs its own event loop: give it a thread
        result = await asyncio.to_thread(CliRunner().invoke, app, ["db", "upgrade", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert "is up to date" in result.output
        async with engine.connect() as conn:
            revision, indexes, diff = await conn.run_sync(_state)
        assert revision == head_revision() and indexes >= NEW_INDEXES and diff == []
    finally:
        await engine.dispose()


async def _plans(engine: AsyncEngine, work: Callable[[], Awaitable[object]]) -> str:
    """The query plans of every statement ``work`` runs, as one text."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "DELETE")):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await work()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    sqlite = engine.dialect.name == "sqlite"
    lines: list[str] = []
    async with engine.connect() as conn:
        if not sqlite:
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in seen:
            explain = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement
            lines.extend(
                str(row[-1] if sqlite else row[0]) for row in await conn.exec_driver_sql(explain, parameters)
            )
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        ("purge", ["ix_messages_state_updated_at"]),
        ("referenced", ["ix_messages_payload_sha256", "ix_messages_wire_sha256"]),
        ("listing", ["ix_messages_direction_id"]),
        ("queue depth", ["ix_messages_direction_partner_id_state"]),
    ],
)
async def test_the_queries_use_the_indexes(store: MessageStore, query: str, indexes: list[str]) -> None:
    cutoff = FixedClock(datetime(2026, 1, 1, tzinfo=UTC)).now()
    work: dict[str, Callable[[], Awaitable[object]]] = {
        "purge": lambda: store.purge_batch({State.ACKNOWLEDGED: cutoff, State.DELIVERED: cutoff}, limit=10),
        "referenced": lambda: store.referenced(["a" * 64, "b" * 64]),
        "listing": lambda: store.recent(limit=10, direction=Direction.INBOUND),
        "queue depth": store.count_by_state,
    }
    plans = await _plans(store.engine, work[query])
    for index in indexes:
        assert index in plans, plans


FINDING = {
    "rule": "EA-012",
    "severity": "warning",
    "message": "an emergency export without an ImportAuthorization",
    "hint": "Confirm it.",
    "basis": None,
    "path": "/ea:ExportAuthorization/ea:EmergencyDelivery",
    "line": 39,
    "column": 3,
    "text": "line 39, column 3 (/ea:ExportAuthorization/ea:EmergencyDelivery): [EA-012 warning] ...",
}


async def test_0010_gives_the_messages_waiting_for_delivery_their_findings(store_url: str) -> None:
    """A permit accepted with a warning before the upgrade and not yet delivered is delivered with it."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0009")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        rows = {  # message_id: (direction, state, the accept event's detail)
            "waiting@ch": ("in", State.ACCEPTED, {"document_number": "CH-EA-2026-0112", "findings": [FINDING]}),
            "clean@ch": ("in", State.ACCEPTED, {"findings": []}),
            "old@ch": ("in", State.ACCEPTED, {}),  # an accept event from before findings were logged
            "delivered@ch": ("in", State.DELIVERED, {"findings": [FINDING]}),
            "sent@be": ("out", State.SUBMITTED, None),
        }
        async with engine.begin() as conn:
            for message_id, (direction, state, detail) in rows.items():
                values = {
                    "direction": direction,
                    "message_id": message_id,
                    "conversation_id": "c1",
                    "partner_id": "ch-swissmedic",
                    "from_party": "CH-SWISSMEDIC",
                    "to_party": "BE-FAMHP",
                    "service": "svc",
                    "action": "ExportAuthorization",
                    "payload_sha256": "0" * 64,
                    "payload_mime_type": "application/xml",
                    "state": state.value,
                    "attempts": 0,
                    "created_at": at,
                    "updated_at": at,
                }
                added = await conn.execute(insert(messages).values(values).returning(messages.c.id))
                if detail is not None:
                    event = {"message_pk": added.scalar_one(), "at": at, "kind": "accept", "detail": detail}
                    await conn.execute(insert(message_events).values(event | {"state": "ACCEPTED"}))

        await upgrade(engine)

        async with engine.connect() as conn:
            revision, _, diff = await conn.run_sync(_state)
            kept = dict((await conn.execute(select(messages.c.message_id, messages.c.findings))).all())
        assert revision == head_revision() and diff == []
        assert kept == {
            "waiting@ch": [FINDING],
            "clean@ch": [],
            "old@ch": None,
            "delivered@ch": None,  # delivered already: its timeline has them
            "sent@be": None,
        }
        store = MessageStore(engine, FixedClock(at))
        waiting = await store.find(Direction.INBOUND, "waiting@ch")
        old = await store.find(Direction.INBOUND, "old@ch")
        assert waiting is not None and waiting.findings == (FINDING,)
        assert old is not None and old.findings == ()
        await downgrade(engine, "0009")
        async with engine.connect() as conn:
            assert "findings" not in {
                c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("messages"))
            }
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.run_sync(_state))[2] == []
    finally:
        await engine.dispose()


async def test_0011_adds_header_digests_null_for_messages_received_before_and_downgrades(store_url: str) -> None:
    """A message received before 0011 has no header digests (its resends are compared on the columns); a new
    one keeps them; down to 0010 the column goes and up again the schema is the head's."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0010")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        values = {
            "direction": "in",
            "message_id": "old@ch",
            "conversation_id": "c1",
            "partner_id": "ch-swissmedic",
            "from_party": "CH-SWISSMEDIC",
            "to_party": "BE-FAMHP",
            "service": "svc",
            "action": "ExportAuthorization",
            "payload_sha256": "0" * 64,
            "payload_mime_type": "application/xml",
            "state": State.DELIVERED.value,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        async with engine.begin() as conn:
            await conn.execute(insert(messages).values(values))

        await upgrade(engine)

        async with engine.connect() as conn:
            revision, _, diff = await conn.run_sync(_state)
        assert revision == head_revision() and diff == []
        store = MessageStore(engine, FixedClock(at))
        old = await store.find(Direction.INBOUND, "old@ch")
        assert old is not None and old.header_digests is None
        digests = {"MessageProperties": "a" * 64, "PartInfo 1": "b" * 64}
        new, created = await store.add(
            NewMessage(
                direction=Direction.INBOUND,
                message_id="new@ch",
                conversation_id="c2",
                partner_id="ch-swissmedic",
                from_party="CH-SWISSMEDIC",
                to_party="BE-FAMHP",
                service="svc",
                action="ExportAuthorization",
                payload_sha256="1" * 64,
                payload_mime_type="application/xml",
                header_digests=digests,
            )
        )
        assert created and new.header_digests == digests
        found = await store.find(Direction.INBOUND, "new@ch")
        assert found is not None and found.header_digests == digests

        await downgrade(engine, "0010")
        async with engine.connect() as conn:
            assert "header_digests" not in {
                c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("messages"))
            }
            kept = (await conn.execute(select(messages.c.message_id).order_by(messages.c.id))).scalars().all()
        assert kept == ["old@ch", "new@ch"]
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.run_sync(_state))[2] == []
    finally:
        await engine.dispose()


DUE_INDEX = "ix_permit_documents_cancelled_on"


def _permit_indexes(connection: Any) -> set[str]:
    return {ix["name"] for ix in inspect(connection).get_indexes("permit_documents") if ix["name"]}


async def test_0012_indexes_the_due_cancellations_and_downgrades(store_url: str) -> None:
    """Up from 0011 the daily job's due-cancellation query reads the index (asked with EXPLAIN); down to 0011 the
    index goes, and up again the schema is the head's."""
    engine = create_engine(store_url)
    clock = FixedClock(datetime(2026, 11, 26, 12, tzinfo=UTC))
    try:
        await upgrade(engine, "0011")
        async with engine.connect() as conn:
            assert DUE_INDEX not in await conn.run_sync(_permit_indexes)

        await upgrade(engine)

        async with engine.connect() as conn:
            revision, _, diff = await conn.run_sync(_state)
            assert DUE_INDEX in await conn.run_sync(_permit_indexes)
        assert revision == head_revision() and diff == []
        registry = PermitRegistry(engine, clock)
        plans = await _plans(engine, lambda: registry.apply_cancellations(clock.now().date()))
        assert DUE_INDEX in plans, plans

        await downgrade(engine, "0011")
        async with engine.connect() as conn:
            assert DUE_INDEX not in await conn.run_sync(_permit_indexes)
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.run_sync(_state))[2] == []
    finally:
        await engine.dispose()


def _message_columns(connection: Any) -> set[str]:
    return {c["name"] for c in inspect(connection).get_columns("messages")}


async def test_0013_numbers_claims_and_records_successors_and_downgrades(store_url: str) -> None:
    """Up from 0012 a message that may still be claimed numbers its claims from its attempts (a final one from 0,
    as it is never claimed again), and a message superseded before gets its successor from its timeline, so the
    database refuses to send it again; down to 0012 both columns go, the messages stay, and up again the schema
    is the head's."""
    engine = create_engine(store_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        await upgrade(engine, "0012")
        common = {
            "direction": "out",
            "conversation_id": "c1",
            "partner_id": "ch-swissmedic",
            "from_party": "BE-FAMHP",
            "to_party": "CH-SWISSMEDIC",
            "service": "svc",
            "action": "ImportAuthorization",
            "payload_sha256": "0" * 64,
            "payload_mime_type": "application/xml",
            "next_attempt_at": at,
            "created_at": at,
            "updated_at": at,
        }
        rows = [
            ("sending@be", State.SENDING, 2),
            ("done@be", State.ACKNOWLEDGED, 3),
            ("old@be", State.FAILED, 1),
            ("new@be", State.SUBMITTED, 0),
        ]
        async with engine.begin() as conn:
            for message_id, state, attempts in rows:
                values = common | {"message_id": message_id, "state": state.value, "attempts": attempts}
                await conn.execute(insert(messages).values(values))
            old_pk = (
                await conn.execute(select(messages.c.id).where(messages.c.message_id == "old@be"))
            ).scalar_one()
            superseded = {"reason": "profile fixed", "superseded_by": "new@be"}
            event_row = {"message_pk": old_pk, "at": at, "kind": "superseded", "state": None, "detail": superseded}
            await conn.execute(insert(message_events).values(event_row))

        await upgrade(engine)

        async with engine.connect() as conn:
            revision, _, diff = await conn.run_sync(_state)
        assert revision == head_revision() == "0015" and diff == []
        store = MessageStore(engine, FixedClock(at))
        found = {m: await store.find(Direction.OUTBOUND, m) for m, _, _ in rows}
        numbered = {m: (r.claim_seq, r.superseded_by) for m, r in found.items() if r is not None}
        assert numbered == {
            "sending@be": (2, None),
            "done@be": (0, None),
            "old@be": (1, "new@be"),
            "new@be": (0, None),
        }
        with pytest.raises(Superseded, match="'old@be' was superseded by message 'new@be'"):
            await store.move(old_pk, Event.OPERATOR_RETRY, attempts=0, next_attempt_at=at)
        (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
        assert (claimed.message_id, claimed.attempts, claimed.claim_seq) == ("new@be", 1, 1)

        await downgrade(engine, "0012")
        async with engine.connect() as conn:
            assert not {"claim_seq", "superseded_by"} & await conn.run_sync(_message_columns)
            kept = (await conn.execute(select(messages.c.message_id).order_by(messages.c.id))).scalars().all()
        assert kept == [m for m, _, _ in rows]
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.run_sync(_state))[2] == []
    finally:
        await engine.dispose()
