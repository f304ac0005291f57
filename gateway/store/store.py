"""The message store: one SQLAlchemy Core code path for SQLite and PostgreSQL.

Each public method is one transaction and returns frozen records; no Connection or Row leaves this module.
Uniqueness (duplicate detection) and state moves are enforced by the database: insert-or-nothing on the
unique key, and ``UPDATE ... WHERE state IN (...)`` checked by rowcount.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.sql import Subquery

from gateway.clock import Clock
from gateway.errors import StoreError
from gateway.store import node_lock
from gateway.store.group import GroupCommit
from gateway.store.lifecycle import (
    FINAL,
    INITIAL,
    SENT_AGAIN,
    Direction,
    Event,
    IllegalTransition,
    StaleClaim,
    State,
    Superseded,
    sources,
    transition,
)
from gateway.store.schema import (
    evidence,
    message_attachments,
    message_events,
    messages,
    permit_documents,
    pull_requests_answered,
)
from gateway.tasks import to_end

log = structlog.get_logger("gateway.store")


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _when(moment: datetime | None) -> datetime:
    found = as_utc(moment)
    assert found is not None  # the column is NOT NULL
    return found


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
    mpc: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    wire_sha256: str | None = None
    wire_content_type: str | None = None
    signed_references: list[dict[str, str]] | None = None
    attachments: list[dict[str, Any]] | None = None
    header_digests: dict[str, str] | None = None
    expires_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    id: int
    direction: Direction
    message_id: str
    conversation_id: str
    ref_to_message_id: str | None
    mpc: str | None
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
    attachments: list[dict[str, Any]] | None = field(compare=False)
    findings: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    """What the received document was accepted with (``Finding.to_json()`` each); empty when none or not kept."""
    header_digests: dict[str, str] | None = field(default=None, compare=False)
    """A received message's signed header, one SHA-256 per item; None for outbound ones and those stored before
    migration 0011."""
    state: State
    attempts: int
    """This round's attempts: an operator's retry or a resubmission starts them again from 0."""
    claim_seq: int = 0
    """The number of the message's last claim, counted over its life and never reset: what a claim's outcomes
    are fenced on (``claimed``)."""
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    expires_at: datetime | None
    last_error: str | None
    superseded_by: str | None = None
    """The MessageId of the message built anew in this FAILED one's place, which carries its document now."""
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
class PurgedBatch:
    """What one retention batch deleted: messages by final state (their events and evidence went with them)
    and the payload files (SHA-256) those messages named."""

    by_state: dict[State, int]
    files: frozenset[str]

    @property
    def messages(self) -> int:
        return sum(self.by_state.values())


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
        values[name] = as_utc(values[name])
    values["direction"] = Direction(values["direction"])
    values["state"] = State(values["state"])
    values["findings"] = tuple(values["findings"] or ())
    return MessageRecord(**{name: values[name] for name in _RECORD_FIELDS})


# Statements are built once and their rows passed as execute parameters: SQLAlchemy then finds the compiled
# form in its cache on every call, instead of coercing each value into a new statement, hashing it and (for a
# multi-row VALUES) compiling it again.


@functools.cache
def insert_or_nothing(dialect: str, table: Table, returning: tuple[ColumnElement[Any], ...] = ()) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING [RETURNING ...]`` for dialect ``dialect`` (its name), the one place the
    dialects differ. Built once; pass the row (or a list of rows) to ``execute``."""
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).on_conflict_do_nothing()
    return statement.returning(*returning) if returning else statement


_ALL_COLUMNS = tuple(messages.c)
_INSERT_EVENTS = insert(message_events)
_INSERT_ATTACHMENTS = insert(message_attachments)
_BY_PK = select(messages).where(messages.c.id == bindparam("pk"))
_BY_MESSAGE_ID = select(messages).where(
    messages.c.direction == bindparam("direction"), messages.c.message_id == bindparam("message_id")
)
_BY_MESSAGE_ID_FROM = _BY_MESSAGE_ID.where(messages.c.from_party == bindparam("from_party"))
# The message sent under a MessageId and the one received under it from a sender: each part looks its row up on the
# unique key, as ``_BY_MESSAGE_ID`` and ``_BY_MESSAGE_ID_FROM`` do.
_SENT_AND_RECEIVED = union_all(
    select(messages).where(
        messages.c.direction == Direction.OUTBOUND, messages.c.message_id == bindparam("message_id")
    ),
    select(messages).where(
        messages.c.direction == Direction.INBOUND,
        messages.c.message_id == bindparam("message_id"),
        messages.c.from_party == bindparam("from_party"),
    ),
)


def _by_id(records: Iterable[MessageRecord]) -> list[MessageRecord]:
    """The few messages one MessageId names, sorted here: an ORDER BY id let SQLite without statistics walk
    ix_messages_direction_id through a whole direction instead of looking the MessageId up on the unique key."""
    return sorted(records, key=lambda record: record.id)


# SET columns come from the parameters; a parameter named like a column is reserved for SET, hence "pk"
_UPDATE_BY_PK = update(messages).where(messages.c.id == bindparam("pk"))
# a rebuild racing another builds the same MessageId (it follows from the old one's): both may supersede
_STILL_FAILED = _UPDATE_BY_PK.where(
    messages.c.state == State.FAILED,
    or_(messages.c.superseded_by.is_(None), messages.c.superseded_by == bindparam("successor")),
)
# the document a superseded message carried is carried by its successor now: the registry names the message
# that may still deliver it, which outlives the FAILED one under retention (failed_days < acknowledged_days)
_CARRIED_BY_SUCCESSOR = (
    update(permit_documents)
    .where(permit_documents.c.direction == Direction.OUTBOUND.value)
    .where(permit_documents.c.message_id == bindparam("old_message_id"))
    .values(message_id=bindparam("new_message_id"))
)


@functools.cache
def _move_statement(event: Event, fenced: bool) -> Update:
    """``UPDATE messages SET ... WHERE id = :pk AND state IN (<the states event moves from>) RETURNING *``;
    ``fenced``: also ``AND claim_seq = :claimed``, the message still in the claim that asks for the move (not
    ``attempts``, which an operator's retry starts again, so an old claim's number would come round). Sending a
    FAILED message again also needs it not superseded: checked on the row, so a supersede committed after the
    caller looked wins on every database."""
    statement = _UPDATE_BY_PK.where(messages.c.state.in_(sources(event)))
    if fenced:
        statement = statement.where(messages.c.claim_seq == bindparam("claimed"))
    if event in SENT_AGAIN:  # a new round: no claim of an earlier one may settle it
        statement = statement.where(messages.c.superseded_by.is_(None)).values(claim_seq=messages.c.claim_seq + 1)
    return statement.returning(*messages.c)


@dataclass(frozen=True, slots=True)
class _Move:
    pk: int
    event: Event
    detail: dict[str, Any]
    evidence: Evidence | None
    updates: dict[str, Any]
    claimed: int | None = None


def _evidence_values(pk: int, kept: Evidence, now: datetime) -> dict[str, Any]:
    return {
        "message_pk": pk,
        "kind": kept.kind,
        "content_type": kept.content_type,
        "body": kept.body,
        "created_at": now,
    }


ANALYSIS_LIMIT = 2000
"""Rows of each index SQLite's ANALYZE (and PRAGMA optimize) samples: a few milliseconds at any size."""
SQLITE_PURGE_BATCH = 500
"""Messages one retention purge transaction deletes at most on SQLite, whatever ``[retention] batch_size`` says:
the delete holds the write lock on the node's one connection (about 135 ms for 500 messages with their ~4,000
events), and every other store operation waits for it."""


def _sqlite_pragmas(wait_seconds: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # Setting the mode takes a lock without SQLite's busy handler: a node opening the file while another
        # writes failed at once. Once a file is in WAL it stays so, and reading the mode takes no such lock.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(wait_seconds * 1000)}")
        # Without statistics SQLite served ORDER BY id from ix_messages_direction_id and read every message of a
        # direction (150 ms and more at 300,000). The limit samples each index instead of reading it whole, as
        # SQLite 3.46 does on its own; optimize is what SQLite advises for a long-lived connection as it opens.
        cursor.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        with suppress(sqlite3.OperationalError):  # busy: statistics are a hint, the daily job gathers them again
            cursor.execute("PRAGMA optimize=0x10002")
        cursor.close()

    return on_connect


def _rollback_if_open(dbapi_connection: Any, record: Any, reset: PoolResetState) -> None:
    """SQLite's reset of a connection going back to the pool, in place of the pool's rollback-on-return: only a
    connection that still holds a transaction is rolled back (the driver opens one only for a write; ``begin()``
    has committed or rolled back its own by then). This saves a rollback that does nothing, and its round trip
    through aiosqlite's thread, after every transaction and read. When in doubt (no pool record) it rolls back."""
    if not reset.asyncio_safe or reset.transaction_was_reset:
        return
    driver = record.driver_connection if record is not None else None
    if driver is None or driver.in_transaction:
        dbapi_connection.rollback()


def is_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (a restart, a failover, SQLite busy past its
    time-out, no pooled connection free within it): the operation did not happen or, for a drop during COMMIT, may
    have. Callers answer "try again", which duplicate detection makes safe. asyncpg reports a refused connection
    as a bare ConnectionError; one raised where no database code ran (aiohttp's, as a client drops its connection
    mid-body) is no outage."""
    import traceback

    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    if isinstance(exc, ConnectionError):
        frames = traceback.walk_tb(exc.__traceback__)
        packages = {frame.f_globals.get("__name__", "").partition(".")[0] for frame, _ in frames}
        return not packages or bool(packages & {"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"})
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def create_engine(url: str, *, wait_seconds: float = 30.0) -> AsyncEngine:
    """``wait_seconds`` bounds how long a statement waits for another process's lock (SQLite) or a connection
    (PostgreSQL); an operation queued for a pooled connection waits twice that, as the one ahead of it may wait
    its whole share. Past it the operation fails as unavailable: a 503 to the caller, not a 500."""
    if url.startswith("sqlite"):
        database = url.split(":///", 1)[-1]
        if database and not database.startswith(":memory:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite takes one writer at a time, and writers queueing in the pool wait
        # far less than writers retrying in SQLite's busy handler, which sleeps up to 100 ms a try.
        engine = create_async_engine(
            url,
            connect_args={"timeout": wait_seconds},
            pool_size=1,
            max_overflow=0,
            pool_timeout=2 * wait_seconds,
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(wait_seconds))
        event.listen(engine.sync_engine, "reset", _rollback_if_open)
        return engine
    # No overflow: connections opened past the pool and closed on return cost a server process each time. No
    # ping per checkout either (a round trip per transaction): a connection a server restart dropped fails
    # one operation, which its caller retries (the sender's retry, the next sweep), and SQLAlchemy then
    # replaces every pooled connection.
    engine = create_async_engine(
        url, pool_size=20, max_overflow=0, pool_timeout=2 * wait_seconds, connect_args={"timeout": wait_seconds}
    )
    event.listen(engine.sync_engine, "handle_error", _broken_protocol_is_a_disconnect)
    return engine


def _broken_protocol_is_a_disconnect(context: ExceptionContext) -> None:
    """asyncpg's "cannot switch to state N; another operation is in progress" follows a session the server
    ended mid-transaction (a restart, a failover), before the connection knows it is closed; SQLAlchemy would
    pool the broken connection again (sqlalchemy/sqlalchemy#13241). Counted as a disconnect, it is replaced."""
    error = context.original_exception
    if type(error).__name__ == "InternalClientError" and "another operation" in str(error):
        context.is_disconnect = True


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine the read-only methods use. On PostgreSQL it runs in autocommit: under READ COMMITTED each
    SELECT sees its own snapshot even inside a transaction, so one around reads buys nothing and costs a BEGIN
    and a ROLLBACK round trip. SQLite's driver starts no transaction for a SELECT anyway."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


class MessageStore:
    """Messages, their append-only event log, and the evidence (receipts) kept for non-repudiation."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, serving: bool = False) -> None:
        """``serving``: a node serves from this store (not a command that opens it briefly). On an SQLite file it
        marks the file as served until ``close`` and warns if another live node marks it already."""
        self._engine = engine
        self._clock = clock
        self._skip_locked = engine.dialect.name == "postgresql"
        self._reads = reader(engine)
        self._moves: GroupCommit[_Move, MessageRecord] = GroupCommit(engine, self._apply_moves)
        self._node_lock = node_lock.hold(engine.url) if serving else None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        try:
            await self._engine.dispose()
        finally:
            node_lock.release(self._node_lock)
            self._node_lock = None

    # --- writing ---------------------------------------------------------------------------------------

    @to_end
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
        async with self._engine.begin() as conn:
            return await self.add_on(
                conn, new, detail=detail, then=then, then_detail=then_detail, evidence=evidence, **updates
            )

    async def add_on(
        self,
        conn: AsyncConnection,
        new: NewMessage,
        *,
        detail: dict[str, Any] | None = None,
        then: Event | None = None,
        then_detail: dict[str, Any] | None = None,
        evidence: Evidence | None = None,
        **updates: Any,
    ) -> tuple[MessageRecord, bool]:
        """``add`` inside a transaction the caller holds (a ``UnitOfWork``)."""
        now = self._clock.now()
        initial = INITIAL[new.direction]
        state = transition(initial, then) if then is not None else initial
        values = {f.name: getattr(new, f.name) for f in fields(NewMessage)}
        values.update(state=state, attempts=0, created_at=now, updated_at=now, **updates)
        values["next_attempt_at"] = new.next_attempt_at or now
        inserted = await conn.execute(insert_or_nothing(conn.dialect.name, messages, _ALL_COLUMNS), values)
        row = inserted.first()
        if row is None:  # a duplicate: nothing was inserted
            found = await self._find(conn, new.direction, new.message_id, new.from_party)
            assert found is not None
            return found, False
        record = _record(row)
        kind = "submitted" if new.direction is Direction.OUTBOUND else "received"
        logged = [(kind, initial, detail or {})]
        if then is not None:
            logged.append((then.value, state, then_detail or {}))
        await self._log_many(conn, record.id, logged)
        if evidence is not None:
            await self._keep(conn, record.id, evidence)
        if new.attachments:
            rows = [
                {"message_pk": record.id, "position": a["position"], "sha256": a["sha256"]}
                for a in new.attachments
            ]
            await conn.execute(_INSERT_ATTACHMENTS, rows)
        return record, True

    @to_end
    async def supersede(
        self, old: MessageRecord, new: NewMessage, *, detail: dict[str, Any], why: dict[str, Any]
    ) -> tuple[MessageRecord, bool] | None:
        """Insert ``new``, built anew in place of the FAILED message ``old``: its ``submitted`` event (``detail``)
        and a ``supersedes`` event naming ``old``, on ``old`` a ``superseded`` event naming ``new`` (``old`` stays
        FAILED), and the registry's permit document that ``old`` carried now carried by ``new``, in one
        transaction. ``created=False`` when ``new``'s MessageId was stored already; None, with nothing written,
        when ``old`` is no longer FAILED (sent again meanwhile). ``old`` records its successor (``superseded_by``)
        in the same conditional update, so a retry of ``old`` racing this one is refused by the database."""
        async with self._engine.begin() as conn:
            successor = {"superseded_by": new.message_id, "successor": new.message_id}
            touched = await conn.execute(
                _STILL_FAILED, {"pk": old.id, "updated_at": self._clock.now()} | successor
            )
            if touched.rowcount != 1:  # nothing written: the UPDATE changed no row
                return None
            record, created = await self.add_on(conn, new, detail=detail)
            if created:
                await self._log(conn, record.id, "supersedes", None, why | {"supersedes": old.message_id})
                await self._log(conn, old.id, "superseded", None, why | {"superseded_by": new.message_id})
                carried = {"old_message_id": old.message_id, "new_message_id": new.message_id}
                await conn.execute(_CARRIED_BY_SUCCESSOR, carried)
            return record, created

    async def move(
        self,
        pk: int,
        event: Event,
        *,
        detail: dict[str, Any] | None = None,
        evidence: Evidence | None = None,
        claimed: int | None = None,
        **updates: Any,
    ) -> MessageRecord:
        """Apply a lifecycle event; the database refuses it unless the message is in a state that allows it.

        ``evidence`` (a receipt) is kept in the same transaction as the move it justifies. ``claimed``: the
        ``claim_seq`` of the caller's claim; the move is refused (``StaleClaim``) once the message has left that
        claim, so an attempt that outlived its lease cannot overwrite a newer attempt's outcome. Sending a FAILED
        message again is refused (``Superseded``) once a message built anew superseded it.
        Moves requested while another commits go together in the next transaction (group commit); this
        returns after it.
        """
        return await self._moves.submit(_Move(pk, event, detail or {}, evidence, updates, claimed))

    async def _apply_moves(self, conn: AsyncConnection, moves: Sequence[_Move]) -> list[MessageRecord | Exception]:
        """Each move a conditional ``UPDATE ... RETURNING``, rows taken in id order (two nodes' batches
        cannot deadlock); then their events in one INSERT and their evidence in another."""
        now = self._clock.now()
        outcomes: dict[int, MessageRecord | Exception] = {}
        logged: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for n, move in sorted(enumerate(moves), key=lambda item: item[1].pk):
            target = transition(sources(move.event)[0], move.event)
            changes = {"pk": move.pk, "state": target, "updated_at": now, **move.updates}
            if move.claimed is not None:
                changes["claimed"] = move.claimed
            row = (await conn.execute(_move_statement(move.event, move.claimed is not None), changes)).first()
            if row is None:
                outcomes[n] = await self._refused(conn, move)
                continue
            outcomes[n] = _record(row)
            event_row = {"message_pk": move.pk, "at": now, "kind": move.event.value, "state": target}
            logged.append(event_row | {"detail": move.detail})
            if move.evidence is not None:
                kept.append(_evidence_values(move.pk, move.evidence, now))
        if logged:
            await conn.execute(_INSERT_EVENTS, logged)
        if kept:
            await conn.execute(insert_or_nothing(conn.dialect.name, evidence), kept)
        return [outcomes[n] for n in range(len(moves))]

    async def _refused(self, conn: AsyncConnection, move: _Move) -> StoreError:
        """Why a move's UPDATE changed nothing: the message is in another state, or there is no such message."""
        try:
            current = await self._get(conn, move.pk)
        except StoreError as exc:
            return exc
        if move.claimed is not None and (current.claim_seq != move.claimed or current.state is not State.SENDING):
            return StaleClaim(
                current.state,
                move.event,
                current.message_id,
                claimed=move.claimed,
                current=current.claim_seq,
                attempts=current.attempts,
            )
        if move.event in SENT_AGAIN and current.state is State.FAILED and current.superseded_by is not None:
            return Superseded(move.event, current.message_id, current.superseded_by)
        return IllegalTransition(current.state, move.event, current.message_id)

    @to_end
    async def note(self, pk: int, kind: str, detail: dict[str, Any] | None = None, **updates: Any) -> None:
        """Append an event that does not change the state (an attempt, a delivery try, an operator note)."""
        async with self._engine.begin() as conn:
            if updates:
                await conn.execute(_UPDATE_BY_PK, {"pk": pk, "updated_at": self._clock.now(), **updates})
            await self._log(conn, pk, kind, None, detail or {})

    @to_end
    async def claim_due(
        self,
        owner: str,
        *,
        limit: int,
        lease: timedelta,
        direction: Direction = Direction.OUTBOUND,
        partners: Sequence[str] | None = None,
        exclude_partners: Sequence[str] = (),
        mpc: str | None = None,
    ) -> list[MessageRecord]:
        """Lease up to ``limit`` due messages to ``owner`` in one statement, oldest due first.

        ``mpc``: only messages signed for that MPC (or stored before the MPC was recorded), for a PullRequest.

        ``partners`` limits the claim to those partners' messages (a PullRequest gets only its signer's);
        ``exclude_partners`` leaves theirs alone, due but untouched: the push loop never claims what a partner
        pulls nor what waits for a suspended partner, and the delivery worker leaves REST-pull partners' messages;
        callers name them from the profiles in use at each claim, so a profile change needs nothing reset.

        ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) AND <still due> RETURNING *``: on PostgreSQL the subquery
        locks its rows ``FOR UPDATE SKIP LOCKED``, so rows another node is claiming are skipped; SQLite takes its
        write lock with the statement's first step, so the choice and the update see the same rows. The
        outer conditions are repeated so a row that stopped being due is never claimed. The choice is a
        ``MATERIALIZED`` CTE: as a plain ``IN (subquery)`` PostgreSQL may run the subquery again per row, and
        with SKIP LOCKED each run skips the rows already taken, so far more than ``limit`` rows were changed.
        """
        now = self._clock.now()
        if direction is Direction.OUTBOUND:
            due: tuple[ColumnElement[bool], ...] = (
                messages.c.state.in_(sources(Event.CLAIM)),
                messages.c.next_attempt_at <= now,
            )
            changes: dict[str, Any] = {"state": State.SENDING}
        else:  # delivery leases keep the state ACCEPTED and push next_attempt_at past the lease instead
            due = (messages.c.state == State.ACCEPTED, messages.c.next_attempt_at <= now)
            changes = {"next_attempt_at": now + lease}
        # each claim its number, the fence of its outcomes (claimed=); attempts counts the round's attempts
        changes |= {"attempts": messages.c.attempts + 1, "claim_seq": messages.c.claim_seq + 1}
        if partners is not None:
            due = (*due, messages.c.partner_id.in_(partners))
        if exclude_partners:
            due = (*due, messages.c.partner_id.not_in(exclude_partners))
        if mpc is not None:
            due = (*due, or_(messages.c.mpc == mpc, messages.c.mpc.is_(None)))
        chosen: Select[Any] = (
            select(messages.c.id)
            .where(messages.c.direction == direction, *due)
            .order_by(messages.c.next_attempt_at, messages.c.id)
            .limit(limit)
        )
        if self._skip_locked:
            chosen = chosen.with_for_update(skip_locked=True)
        picked = chosen.cte("picked").prefix_with("MATERIALIZED")
        claim = (
            update(messages)
            .where(messages.c.id.in_(select(picked.c.id)), *due)
            .values(lease_owner=owner, lease_expires_at=now + lease, updated_at=now, **changes)
            .returning(*messages.c)
        )
        async with self._engine.begin() as conn:
            claimed = [_record(row) for row in await conn.execute(claim)]
        # RETURNING order is unspecified: oldest due first, as chosen (a delivery lease moved them all alike)
        return sorted(claimed, key=lambda r: (r.next_attempt_at or now, r.id))

    async def waiting_partners(self, *, exclude_partners: Sequence[str] = ()) -> list[tuple[str, datetime]]:
        """Each partner with outbound messages waiting to be sent, and when the first of them is due, soonest
        first (a message due now or earlier means the partner has messages due)."""
        earliest = func.min(messages.c.next_attempt_at)
        query = (
            select(messages.c.partner_id, earliest)
            .where(messages.c.direction == Direction.OUTBOUND, messages.c.state.in_(sources(Event.CLAIM)))
            .group_by(messages.c.partner_id)
            .order_by(earliest)
        )
        if exclude_partners:
            query = query.where(messages.c.partner_id.not_in(exclude_partners))
        async with self._reads.connect() as conn:
            return [(str(row[0]), _when(row[1])) for row in await conn.execute(query)]

    async def unfinished_outbound_partners(self) -> list[str]:
        """Each partner with outbound messages not yet in a final state, by name: any of them may still fail."""
        unfinished = sorted(set(State) - FINAL)  # IN, not NOT IN: the state index skips the final ones, the most
        query = (
            select(messages.c.partner_id)
            .where(messages.c.direction == Direction.OUTBOUND, messages.c.state.in_(unfinished))
            .group_by(messages.c.partner_id)
            .order_by(messages.c.partner_id)
        )
        async with self._reads.connect() as conn:
            return [str(row[0]) for row in await conn.execute(query)]

    @to_end
    async def give_up_waiting(
        self,
        *,
        partners: Collection[str],
        reason: str,
        waiting: Collection[State] = (State.SUBMITTED, State.RETRY_WAIT),
    ) -> list[MessageRecord]:
        """Outbound messages of ``partners`` waiting to be sent (in one of the ``waiting`` states) whose time to
        live has run out move to FAILED with ``reason``, in one statement, however many; returns them."""
        if not partners:
            return []
        now = self._clock.now()
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                update(messages)
                .where(
                    messages.c.direction == Direction.OUTBOUND,
                    messages.c.state.in_(waiting),
                    messages.c.partner_id.in_(sorted(partners)),
                    messages.c.expires_at < now,
                )
                .values(state=transition(State.SUBMITTED, Event.GIVE_UP), last_error=reason, updated_at=now)
                .returning(*messages.c)
            )
            failed = [_record(row) for row in rows]
            if failed:
                await conn.execute(
                    _INSERT_EVENTS,
                    [
                        {
                            "message_pk": record.id,
                            "at": now,
                            "kind": Event.GIVE_UP.value,
                            "state": record.state,
                            "detail": {"reason": reason},
                        }
                        for record in failed
                    ],
                )
        return failed

    @to_end
    async def renew_lease(
        self, pk: int, owner: str, *, claimed: int, lease: timedelta, direction: Direction = Direction.OUTBOUND
    ) -> bool:
        """Extend ``owner``'s lease on a message it is still sending (inbound: delivering) under its claim
        ``claimed`` (the claim's ``claim_seq``); False once the message has left that claim (its lease ran out
        and it was taken back or claimed again, or it was delivered). An inbound message is due again when its
        lease runs out, so its next attempt moves with the lease."""
        now = self._clock.now()
        changes: dict[str, Any] = {"lease_expires_at": now + lease}
        if direction is Direction.INBOUND:
            changes["next_attempt_at"] = now + lease
        async with self._engine.begin() as conn:
            renewed = await conn.execute(
                update(messages)
                .where(
                    messages.c.id == pk,
                    messages.c.direction == direction,
                    messages.c.state == (State.SENDING if direction is Direction.OUTBOUND else State.ACCEPTED),
                    messages.c.lease_owner == owner,
                    messages.c.claim_seq == claimed,
                )
                .values(**changes)
                .returning(messages.c.id)
            )
            return renewed.first() is not None

    @to_end
    async def note_claimed(
        self, pk: int, kind: str, detail: dict[str, Any], *, owner: str, claimed: int, **updates: Any
    ) -> bool:
        """``note`` for an inbound delivery under ``owner``'s claim ``claimed`` (its ``claim_seq``): nothing is
        changed nor logged (False) once the message has left that claim, delivered or claimed again after its
        lease ran out, so an attempt that outlived its claim never writes over a newer one's outcome."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            noted = await conn.execute(
                update(messages)
                .where(
                    messages.c.id == pk,
                    messages.c.direction == Direction.INBOUND,
                    messages.c.state == State.ACCEPTED,
                    messages.c.lease_owner == owner,
                    messages.c.claim_seq == claimed,
                )
                .values(updated_at=now, **updates)
                .returning(messages.c.id)
            )
            if noted.first() is None:
                return False
            await self._log(conn, pk, kind, None, detail)
            return True

    async def recover_leases(self) -> int:
        """Messages whose sender died mid-send go back to RETRY_WAIT, due at once."""
        return await self._back_to_retry(messages.c.lease_expires_at < self._clock.now(), {})

    async def clock_offset(self) -> timedelta | None:
        """How far this node's clock runs ahead of the database server's (negative: behind), or None on SQLite,
        whose only clock is this host's. Leases are written and compared on each node's own clock, so nodes
        whose clocks differ by more than a lease take over each other's live sends; the database's clock is
        the one reference they all share."""
        if not self._skip_locked:
            return None
        async with self._reads.connect() as conn:
            before = self._clock.now()
            server: datetime = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
            after = self._clock.now()
        return before + (after - before) / 2 - server

    async def release_leases(self, owner: str) -> int:
        """A node that stops gives back what it was sending, due at once: another node (or its own restart)
        sends it again now instead of when the lease runs out. The partner's duplicate detection makes a resend
        of a message that did arrive safe."""
        detail = {"released": f"node {owner} stopped while sending it"}
        try:
            return await self._back_to_retry(messages.c.lease_owner == owner, detail)
        except (SQLAlchemyError, OSError) as exc:  # at shutdown the database may be gone already
            raise StoreError(f"the messages node {owner} was sending could not be given back: {exc}") from exc

    @to_end
    async def _back_to_retry(self, which: ColumnElement[bool], detail: dict[str, Any]) -> int:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                update(messages)
                .where(messages.c.state == State.SENDING, which)
                .values(state=State.RETRY_WAIT, next_attempt_at=now, lease_owner=None, updated_at=now)
                .returning(messages.c.id)
            )
            moved = [row.id for row in rows]
            if moved:
                kind, state = Event.LEASE_EXPIRED.value, State.RETRY_WAIT
                logged = [
                    {"message_pk": pk, "at": now, "kind": kind, "state": state, "detail": detail} for pk in moved
                ]
                await conn.execute(_INSERT_EVENTS, logged)
            return len(moved)

    @to_end
    async def first_answer(self, message_id: str, partner_id: str, *, fresh_until: datetime) -> bool:
        """Record that PullRequest ``message_id`` is answered now: False if some node answered it already.

        It is remembered until ``fresh_until``, after which a replay is refused as stale anyway.
        """
        now = self._clock.now()
        table = pull_requests_answered
        row = {"message_id": message_id, "partner_id": partner_id, "answered_at": now, "fresh_until": fresh_until}
        async with self._engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.fresh_until < now))
            inserted = await conn.execute(insert_or_nothing(conn.dialect.name, table, (table.c.message_id,)), row)
            return inserted.first() is not None

    def purge_batch_limit(self, limit: int) -> int:
        """The messages ``purge_batch`` deletes at most for ``limit``: ``limit``, but no more than
        ``SQLITE_PURGE_BATCH`` on SQLite, whose one connection the delete holds for the whole batch."""
        if self._engine.dialect.name == "sqlite":
            return min(limit, SQLITE_PURGE_BATCH)
        return limit

    @to_end
    async def purge_batch(self, older_than: Mapping[State, datetime], *, limit: int) -> PurgedBatch:
        """Delete up to ``purge_batch_limit(limit)`` messages in a final state whose last move is before that
        state's cutoff.

        One ``DELETE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` per call (PostgreSQL skips rows other
        nodes hold locked); events and evidence go with their message (ON DELETE CASCADE). Callers loop until
        a batch comes back short of ``purge_batch_limit(limit)``, so the table is never read whole.

        Each state's due messages are a range of ix_messages_state_updated_at, read oldest first up to ``limit``
        each: one query over all of them ordered by id made PostgreSQL walk pk_messages and filter every row
        when few were due (200-350 ms a batch at 300,000 messages).
        """
        if any(state not in FINAL for state in older_than):
            raise StoreError(f"only final states are purged, not {sorted(set(older_than) - FINAL)}")
        if not older_than:
            return PurgedBatch(by_state={}, files=frozenset())
        limit = self.purge_batch_limit(limit)
        # checked again on each picked row, never a way to the rows: state || '' is on no index, so SQLite looks
        # the picked ids up instead of reading every due message through the OR of state_updated_at ranges
        unindexed = messages.c.state.concat("")
        old = or_(*(and_(unindexed == s, messages.c.updated_at < as_utc(c)) for s, c in older_than.items()))
        picked = (
            union_all(*(select(each.c.id) for each in self._due(older_than, limit))).limit(limit).cte("picked")
        ).prefix_with("MATERIALIZED")
        purge = (
            delete(messages)
            .where(messages.c.id.in_(select(picked.c.id)), old)
            .returning(messages.c.state, messages.c.payload_sha256, messages.c.wire_sha256, messages.c.attachments)
        )
        by_state: dict[State, int] = {}
        files: set[str] = set()
        async with self._engine.begin() as conn:
            for row in await conn.execute(purge):
                state = State(row.state)
                by_state[state] = by_state.get(state, 0) + 1
                files.update(sha for sha in (row.payload_sha256, row.wire_sha256) if sha)
                files.update(a["sha256"] for a in row.attachments or [])
        return PurgedBatch(by_state=by_state, files=frozenset(files))

    def _due(self, older_than: Mapping[State, datetime], limit: int) -> list[Subquery]:
        """Per state, up to ``limit`` messages last moved before its cutoff, oldest first (a subquery each:
        neither database takes a LIMIT or, on PostgreSQL, FOR UPDATE on a member of a UNION)."""
        due: list[Subquery] = []
        for n, (state, cutoff) in enumerate(sorted(older_than.items())):
            chosen: Select[Any] = (
                select(messages.c.id)
                .where(messages.c.state == state, messages.c.updated_at < as_utc(cutoff))
                .order_by(messages.c.updated_at)
                .limit(limit)
            )
            if self._skip_locked:
                chosen = chosen.with_for_update(skip_locked=True)
            due.append(chosen.subquery(f"due_{n}"))
        return due

    async def refresh_statistics(self, *, only_if_none: bool = False) -> None:
        """Bring SQLite's planner statistics up to date (the daily retention job, after its purge): without
        them SQLite chose indexes that read a whole direction. PRAGMA optimize refreshes statistics an ANALYZE
        gathered once, but before SQLite 3.46 never gathers the first, so a store without any is analyzed (each
        index sampled: ``ANALYSIS_LIMIT``, set as the connection opens). ``only_if_none``: only that first
        ANALYZE (before the purge: a store upgraded with a year of messages and no statistics purged its first
        batches at seconds each). PostgreSQL's autovacuum keeps its own."""
        if self._engine.dialect.name != "sqlite":
            return
        try:
            async with self._engine.connect() as conn:
                found = (
                    await conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
                ).first()
                if found and only_if_none:
                    return
                await conn.exec_driver_sql("PRAGMA optimize=0x10002" if found else "ANALYZE")
                await conn.commit()
        except (DBAPIError, OSError) as exc:  # a full disk, a lock held: only speed is lost, and tried again tomorrow
            log.warning(
                "SQLite planner statistics not refreshed; the daily job tries again",
                reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            )

    async def referenced(self, sha256s: Iterable[str]) -> set[str]:
        """Which of these payload files some message still names (as its payload, wire bytes or attachment)."""
        wanted = sorted(set(sha256s))
        if not wanted:
            return set()
        query = union(
            select(messages.c.payload_sha256.label("sha")).where(messages.c.payload_sha256.in_(wanted)),
            select(messages.c.wire_sha256.label("sha")).where(messages.c.wire_sha256.in_(wanted)),
            select(message_attachments.c.sha256.label("sha")).where(message_attachments.c.sha256.in_(wanted)),
        )
        async with self._reads.connect() as conn:
            return {row.sha for row in await conn.execute(query)}

    async def _keep(self, conn: AsyncConnection, pk: int, kept: Evidence) -> None:
        """Keep evidence once: the first receipt stored for a message stays."""
        await conn.execute(
            insert_or_nothing(conn.dialect.name, evidence), _evidence_values(pk, kept, self._clock.now())
        )

    # --- reading ---------------------------------------------------------------------------------------

    async def get(self, pk: int) -> MessageRecord:
        async with self._reads.connect() as conn:
            return await self._get(conn, pk)

    async def find(
        self, direction: Direction, message_id: str, from_party: str | None = None
    ) -> MessageRecord | None:
        async with self._reads.connect() as conn:
            return await self._find(conn, direction, message_id, from_party)

    async def find_sent_and_received(
        self, message_id: str, from_party: str
    ) -> tuple[MessageRecord | None, MessageRecord | None]:
        """``find(OUTBOUND, message_id)`` and ``find(INBOUND, message_id, from_party)`` in one read: what a
        received message's MessageId names already, a message we sent and the same sender's message."""
        async with self._reads.connect() as conn:
            rows = await conn.execute(_SENT_AND_RECEIVED, {"message_id": message_id, "from_party": from_party})
            found = [_record(row) for row in rows]
        sent = next((r for r in found if r.direction is Direction.OUTBOUND), None)
        received = next((r for r in found if r.direction is Direction.INBOUND), None)
        return sent, received

    async def find_all(self, direction: Direction, message_id: str) -> list[MessageRecord]:
        """Every message of ``direction`` with this MessageId, whoever sent it (the key includes the sender)."""
        async with self._reads.connect() as conn:
            rows = await conn.execute(_BY_MESSAGE_ID, {"direction": direction, "message_id": message_id})
            return _by_id(_record(row) for row in rows)

    async def ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        """MessageIds that start with ``prefix`` (one a terminal cut short), newest first: for suggestions."""
        # Not LIKE: SQLite's ignores ASCII case and PostgreSQL's does not, and MessageIds are case-sensitive.
        # Comparing the leading characters is case-sensitive on both and reads no character as a wildcard.
        query = (
            select(messages.c.message_id)
            .where(func.substr(messages.c.message_id, 1, len(prefix)) == prefix)
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
        async with self._reads.connect() as conn:
            return list(dict.fromkeys((await conn.execute(query)).scalars()))

    async def find_either(self, message_id: str) -> MessageRecord | None:
        """The message with this MessageId, the one we sent before one we received (the REST API and the CLI
        name messages by MessageId alone)."""
        async with self._reads.connect() as conn:
            for direction in (Direction.OUTBOUND, Direction.INBOUND):
                found = await self._find(conn, direction, message_id, None)
                if found is not None:
                    return found
        return None

    async def find_named(
        self, message_id: str, *, direction: Direction | None = None, from_party: str | None = None
    ) -> list[MessageRecord]:
        """Every message with this MessageId, of ``direction`` and sent by ``from_party`` when given, ours first:
        a partner may reuse a MessageId, so a caller naming a message by MessageId alone checks it names one.
        One look-up per direction, each on the unique key's index."""
        query = _BY_MESSAGE_ID if from_party is None else _BY_MESSAGE_ID_FROM
        found: list[MessageRecord] = []
        async with self._reads.connect() as conn:
            for each in (Direction.OUTBOUND, Direction.INBOUND) if direction is None else (direction,):
                key = {"direction": each, "message_id": message_id}
                if from_party is not None:
                    key["from_party"] = from_party
                found.extend(_by_id(_record(row) for row in await conn.execute(query, key)))
        return found

    async def find_many(
        self, direction: Direction, message_ids: Sequence[str], *, batch: int = 500
    ) -> dict[str, MessageRecord]:
        """The messages of ``direction`` with these MessageIds (those still stored), by MessageId."""
        found: dict[str, MessageRecord] = {}
        async with self._reads.connect() as conn:
            for start in range(0, len(message_ids), batch):
                wanted = list(message_ids[start : start + batch])
                query = select(messages).where(
                    messages.c.direction == direction, messages.c.message_id.in_(wanted)
                )
                found.update((row.message_id, _record(row)) for row in await conn.execute(query))
        return found

    async def recent(
        self,
        *,
        limit: int = 50,
        direction: Direction | None = None,
        state: State | None = None,
        before: int | None = None,
    ) -> list[MessageRecord]:
        """The newest messages first, of one direction and in one state if given; with ``before`` (the id of the
        last message of the page before), those older than it: the id orders them, so a page of them stays the
        same while new messages come."""
        query = select(messages).order_by(messages.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(messages.c.id < before)
        if direction is not None:
            query = query.where(messages.c.direction == direction)
        if state is not None:
            query = query.where(messages.c.state == state)
        async with self._reads.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def oldest(
        self,
        direction: Direction,
        state: State,
        *,
        partners: Sequence[str],
        limit: int,
        after: int | None = None,
    ) -> list[MessageRecord]:
        """Up to ``limit`` messages of these partners in ``state``, oldest first; with ``after`` (the id of the
        last message of the page before), only those newer than it."""
        query = (
            select(messages)
            .where(
                messages.c.direction == direction, messages.c.state == state, messages.c.partner_id.in_(partners)
            )
            .order_by(messages.c.id)
            .limit(limit)
        )
        if after is not None:
            # id + 0: a range on id let SQLite without statistics take ix_messages_direction_id (direction, id) for
            # ix_messages_direction_state_id, by the order the indexes were made in, and read the whole direction
            query = query.where(messages.c.id + 0 > after)
        async with self._reads.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def ping(self) -> None:
        """One trivial query, for readiness: the database answers."""
        async with self._reads.connect() as conn:
            await conn.execute(select(literal(1)))

    async def count_by_state(self) -> dict[tuple[str, str, str], int]:
        """(direction, partner, state) -> number of messages; feeds the queue-depth metric."""
        query = select(messages.c.direction, messages.c.partner_id, messages.c.state, func.count()).group_by(
            messages.c.direction, messages.c.partner_id, messages.c.state
        )
        async with self._reads.connect() as conn:
            return {(r[0], r[1], r[2]): r[3] for r in await conn.execute(query)}

    async def events(self, pk: int) -> list[EventRecord]:
        query = select(message_events).where(message_events.c.message_pk == pk).order_by(message_events.c.id)
        async with self._reads.connect() as conn:
            return [
                EventRecord(
                    at=as_utc(row.at) or row.at,
                    kind=row.kind,
                    state=State(row.state) if row.state else None,
                    detail=dict(row.detail),
                )
                for row in await conn.execute(query)
            ]

    async def count_events(self, pk: int, kind: str) -> int:
        """How many ``kind`` events message ``pk`` has: the delivery worker counts its failures so (attempts
        counts its claims), by the events' message index."""
        query = (
            select(func.count())
            .select_from(message_events)
            .where(message_events.c.message_pk == pk, message_events.c.kind == kind)
        )
        async with self._reads.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def get_evidence(self, pk: int, kind: str) -> tuple[str, bytes] | None:
        query = select(evidence.c.content_type, evidence.c.body).where(
            evidence.c.message_pk == pk, evidence.c.kind == kind
        )
        async with self._reads.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.content_type, bytes(row.body)) if row else None

    # --- helpers ---------------------------------------------------------------------------------------

    async def _get(self, conn: AsyncConnection, pk: int) -> MessageRecord:
        row = (await conn.execute(_BY_PK, {"pk": pk})).first()
        if row is None:
            raise StoreError(f"no message with store id {pk}")
        return _record(row)

    async def _find(
        self, conn: AsyncConnection, direction: Direction, message_id: str, from_party: str | None
    ) -> MessageRecord | None:
        key = {"direction": direction, "message_id": message_id}
        if from_party is None:
            row = (await conn.execute(_BY_MESSAGE_ID, key)).first()
        else:
            row = (await conn.execute(_BY_MESSAGE_ID_FROM, key | {"from_party": from_party})).first()
        return _record(row) if row else None

    async def _log_many(
        self, conn: AsyncConnection, pk: int, logged: Sequence[tuple[str, State | None, dict[str, Any]]]
    ) -> None:
        """Several events of one message in one executemany."""
        at = self._clock.now()
        await conn.execute(
            _INSERT_EVENTS,
            [
                {"message_pk": pk, "at": at, "kind": kind, "state": state, "detail": detail}
                for kind, state, detail in logged
            ],
        )

    async def _log(
        self, conn: AsyncConnection, pk: int, kind: str, state: State | None, detail: dict[str, Any]
    ) -> None:
        await conn.execute(
            _INSERT_EVENTS,
            {"message_pk": pk, "at": self._clock.now(), "kind": kind, "state": state, "detail": detail},
        )
