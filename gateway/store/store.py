"""The message store: one SQLAlchemy Core code path for SQLite and PostgreSQL.

Each public method is one transaction and returns frozen records; no Connection or Row leaves this module.
Uniqueness (duplicate detection) and state moves are enforced by the database: insert-or-nothing on the
unique key, and ``UPDATE ... WHERE state IN (...)`` checked by rowcount.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, Select, Table, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.clock import Clock
from gateway.errors import StoreError
from gateway.store.lifecycle import FINAL, INITIAL, Direction, Event, IllegalTransition, State, sources, transition
from gateway.store.schema import evidence, message_events, messages


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    direction: Direction
    message_id: str
    conversation_id: str
    partner_id: str
    from_party: str
    to_party: str
    service: str
    action: str
    payload_sha256: str
    payload_mime_type: str
    ref_to_message_id: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    wire_sha256: str | None = None
    wire_content_type: str | None = None
    signed_references: list[dict[str, str]] | None = None
    expires_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    id: int
    direction: Direction
    message_id: str
    conversation_id: str
    ref_to_message_id: str | None
    partner_id: str
    from_party: str
    to_party: str
    service: str
    action: str
    document_type: str | None
    document_number: str | None
    payload_sha256: str
    payload_mime_type: str
    wire_sha256: str | None
    wire_content_type: str | None
    signed_references: list[dict[str, str]] | None = field(compare=False)
    state: State
    attempts: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    expires_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_final(self) -> bool:
        return self.state in FINAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """A signal kept for non-repudiation: the receipt we sent or received, byte for byte."""

    kind: str
    content_type: str
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    at: datetime
    kind: str
    state: State | None
    detail: dict[str, Any]


_RECORD_FIELDS = tuple(f.name for f in fields(MessageRecord))
_TIMES = ("next_attempt_at", "lease_expires_at", "expires_at", "created_at", "updated_at")


def _record(row: Any) -> MessageRecord:
    values = dict(row._mapping)
    for name in _TIMES:
        values[name] = _utc(values[name])
    values["direction"] = Direction(values["direction"])
    values["state"] = State(values["state"])
    return MessageRecord(**{name: values[name] for name in _RECORD_FIELDS})


def _insert_ignoring_duplicates(dialect: Dialect, table: Table, values: dict[str, Any]) -> Insert:
    """The one place the dialects differ: INSERT ... ON CONFLICT DO NOTHING."""
    if dialect.name == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing()
    return sqlite.insert(table).values(values).on_conflict_do_nothing()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1]
        if database and not database.startswith(":memory:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class MessageStore:
    """Messages, their append-only event log, and the evidence (receipts) kept for non-repudiation."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._skip_locked = engine.dialect.name == "postgresql"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # --- writing ---------------------------------------------------------------------------------------

    async def add(
        self,
        new: NewMessage,
        *,
        detail: dict[str, Any] | None = None,
        then: Event | None = None,
        then_detail: dict[str, Any] | None = None,
        evidence: Evidence | None = None,
        **updates: Any,
    ) -> tuple[MessageRecord, bool]:
        """Insert a message in its initial state, or return the stored one with ``created=False``.

        ``then`` applies a first lifecycle event, and ``evidence`` is kept with it, in the same transaction: a
        received message and its receipt are stored together or not at all.
        """
        now = self._clock.now()
        initial = INITIAL[new.direction]
        state = transition(initial, then) if then is not None else initial
        values = {f.name: getattr(new, f.name) for f in fields(NewMessage)}
        values.update(state=state, attempts=0, created_at=now, updated_at=now, **updates)
        values["next_attempt_at"] = new.next_attempt_at or now
        async with self._engine.begin() as conn:
            result = await conn.execute(_insert_ignoring_duplicates(conn.dialect, messages, values))
            found = await self._find(conn, new.direction, new.message_id, new.from_party)
            assert found is not None
            created = result.rowcount == 1
            if created:
                kind = "submitted" if new.direction is Direction.OUTBOUND else "received"
                await self._log(conn, found.id, kind, initial, detail or {})
                if then is not None:
                    await self._log(conn, found.id, then.value, state, then_detail or {})
                if evidence is not None:
                    await self._keep(conn, found.id, evidence)
        return found, created

    async def move(
        self,
        pk: int,
        event: Event,
        *,
        detail: dict[str, Any] | None = None,
        evidence: Evidence | None = None,
        **updates: Any,
    ) -> MessageRecord:
        """Apply a lifecycle event; the database refuses it unless the message is in a state that allows it.

        ``evidence`` (a receipt) is kept in the same transaction as the move it justifies.
        """
        target = transition(sources(event)[0], event)
        now = self._clock.now()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(messages)
                .where(messages.c.id == pk, messages.c.state.in_(sources(event)))
                .values(state=target, updated_at=now, **updates)
            )
            if result.rowcount != 1:
                current = await self._get(conn, pk)
                raise IllegalTransition(current.state, event, current.message_id)
            await self._log(conn, pk, event.value, target, detail or {})
            if evidence is not None:
                await self._keep(conn, pk, evidence)
            return await self._get(conn, pk)

    async def note(self, pk: int, kind: str, detail: dict[str, Any] | None = None, **updates: Any) -> None:
        """Append an event that does not change the state (an attempt, a delivery try, an operator note)."""
        async with self._engine.begin() as conn:
            if updates:
                await conn.execute(
                    update(messages).where(messages.c.id == pk).values(updated_at=self._clock.now(), **updates)
                )
            await self._log(conn, pk, kind, None, detail or {})

    async def claim_due(
        self, owner: str, *, limit: int, lease: timedelta, direction: Direction = Direction.OUTBOUND
    ) -> list[MessageRecord]:
        """Lease up to ``limit`` due messages to ``owner``; on PostgreSQL rows locked by another node are skipped."""
        now = self._clock.now()
        due_states = (State.SUBMITTED, State.RETRY_WAIT) if direction is Direction.OUTBOUND else (State.ACCEPTED,)
        query: Select[Any] = (
            select(messages.c.id)
            .where(
                messages.c.direction == direction,
                messages.c.state.in_(due_states),
                messages.c.next_attempt_at <= now,
            )
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        async with self._engine.begin() as conn:
            ids = [row.id for row in await conn.execute(query)]
            if direction is Direction.OUTBOUND:
                return await self._claim_outbound(conn, ids, owner, now, lease)
            return await self._lease_inbound(conn, ids, owner, now, lease)

    async def _claim_outbound(
        self, conn: AsyncConnection, ids: Sequence[int], owner: str, now: datetime, lease: timedelta
    ) -> list[MessageRecord]:
        claimed = []
        for pk in ids:
            result = await conn.execute(
                update(messages)
                .where(messages.c.id == pk, messages.c.state.in_(sources(Event.CLAIM)))
                .values(
                    state=State.SENDING,
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    attempts=messages.c.attempts + 1,
                    updated_at=now,
                )
            )
            if result.rowcount == 1:
                claimed.append(await self._get(conn, pk))
        return claimed

    async def _lease_inbound(
        self, conn: AsyncConnection, ids: Sequence[int], owner: str, now: datetime, lease: timedelta
    ) -> list[MessageRecord]:
        """Delivery leases keep the state ACCEPTED and push next_attempt_at past the lease instead."""
        leased = []
        for pk in ids:
            result = await conn.execute(
                update(messages)
                .where(messages.c.id == pk, messages.c.state == State.ACCEPTED, messages.c.next_attempt_at <= now)
                .values(
                    lease_owner=owner, lease_expires_at=now + lease, next_attempt_at=now + lease, updated_at=now
                )
            )
            if result.rowcount == 1:
                leased.append(await self._get(conn, pk))
        return leased

    async def recover_leases(self) -> int:
        """Messages whose sender died mid-send go back to RETRY_WAIT, due at once."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                select(messages.c.id).where(messages.c.state == State.SENDING, messages.c.lease_expires_at < now)
            )
            recovered = 0
            for pk in [row.id for row in rows]:
                result = await conn.execute(
                    update(messages)
                    .where(
                        messages.c.id == pk, messages.c.state == State.SENDING, messages.c.lease_expires_at < now
                    )
                    .values(state=State.RETRY_WAIT, next_attempt_at=now, lease_owner=None, updated_at=now)
                )
                if result.rowcount == 1:
                    recovered += 1
                    await self._log(conn, pk, Event.LEASE_EXPIRED.value, State.RETRY_WAIT, {})
            return recovered

    async def _keep(self, conn: AsyncConnection, pk: int, kept: Evidence) -> None:
        """Keep evidence once: the first receipt stored for a message stays."""
        values = {"message_pk": pk, "kind": kept.kind, "content_type": kept.content_type, "body": kept.body}
        await conn.execute(
            _insert_ignoring_duplicates(conn.dialect, evidence, values | {"created_at": self._clock.now()})
        )

    # --- reading ---------------------------------------------------------------------------------------

    async def get(self, pk: int) -> MessageRecord:
        async with self._engine.connect() as conn:
            return await self._get(conn, pk)

    async def find(
        self, direction: Direction, message_id: str, from_party: str | None = None
    ) -> MessageRecord | None:
        async with self._engine.connect() as conn:
            return await self._find(conn, direction, message_id, from_party)

    async def recent(self, *, limit: int = 50, direction: Direction | None = None) -> list[MessageRecord]:
        query = select(messages).order_by(messages.c.id.desc()).limit(limit)
        if direction is not None:
            query = query.where(messages.c.direction == direction)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def count_by_state(self) -> dict[tuple[str, str, str], int]:
        """(direction, partner, state) -> number of messages; feeds the queue-depth metric."""
        query = select(messages.c.direction, messages.c.partner_id, messages.c.state, func.count()).group_by(
            messages.c.direction, messages.c.partner_id, messages.c.state
        )
        async with self._engine.connect() as conn:
            return {(r[0], r[1], r[2]): r[3] for r in await conn.execute(query)}

    async def events(self, pk: int) -> list[EventRecord]:
        query = select(message_events).where(message_events.c.message_pk == pk).order_by(message_events.c.id)
        async with self._engine.connect() as conn:
            return [
                EventRecord(
                    at=_utc(row.at) or row.at,
                    kind=row.kind,
                    state=State(row.state) if row.state else None,
                    detail=dict(row.detail),
                )
                for row in await conn.execute(query)
            ]

    async def get_evidence(self, pk: int, kind: str) -> tuple[str, bytes] | None:
        query = select(evidence.c.content_type, evidence.c.body).where(
            evidence.c.message_pk == pk, evidence.c.kind == kind
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.content_type, bytes(row.body)) if row else None

    # --- helpers ---------------------------------------------------------------------------------------

    async def _get(self, conn: AsyncConnection, pk: int) -> MessageRecord:
        row = (await conn.execute(select(messages).where(messages.c.id == pk))).first()
        if row is None:
            raise StoreError(f"no message with store id {pk}")
        return _record(row)

    async def _find(
        self, conn: AsyncConnection, direction: Direction, message_id: str, from_party: str | None
    ) -> MessageRecord | None:
        query = select(messages).where(messages.c.direction == direction, messages.c.message_id == message_id)
        if from_party is not None:
            query = query.where(messages.c.from_party == from_party)
        row = (await conn.execute(query)).first()
        return _record(row) if row else None

    async def _log(
        self, conn: AsyncConnection, pk: int, kind: str, state: State | None, detail: dict[str, Any]
    ) -> None:
        await conn.execute(
            insert(message_events).values(
                message_pk=pk, at=self._clock.now(), kind=kind, state=state, detail=detail
            )
        )
