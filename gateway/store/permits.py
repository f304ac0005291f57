"""The permit registry: the permit documents this gateway has sent or received, where each stands, and what is
left on each import authorization line.

``PermitRegistry.record`` keeps an accepted document and, in the same transaction, does what it does to the
document it names: an ExportAuthorization draws its base quantities from its ImportAuthorization's lines, an
ExportExecution marks it shipped, an ImportEndorsement closes it (and gives back what was not imported), an
Amendment replaces the content of the amended document and bumps its version, a Cancellation cancels (a
cancelled export gives back what it drew; a cancelled endorsement reopens its export, which draws what it
authorizes again). A Cancellation effective on a later day only sets the document's ``cancelled_on``: it keeps
its state and quantities until the daily job (``apply_cancellations``) cancels it on that day, or a document
recorded that day before the job has run, whose effects meet it, does so first (``record_on`` says which, for
its caller to log). An endorsed export cannot be cancelled: a later-dated cancellation of an export endorsed
before that date is held while the endorsement stands, and takes effect once the endorsement is cancelled (its
cancellation first, then the export's: the rules follow the same chain); the daily job warns of each one held
(``CancellationsApplied.held``). The database
enforces all of it: the document key is unique (insert-or-nothing, then the content hashes are compared), a draw
is ``UPDATE ... SET remaining = remaining - :q WHERE remaining >= :q`` checked by rowcount (and a CHECK keeps
remaining at zero or more), and each state move is ``UPDATE ... WHERE status IN (...)`` over the table of
``LIFECYCLES``. Every other rule across documents
(one consignment, a cancelled or shortened document named, shipments, the year's estimate) is run again as the
document is recorded (``Recheck``): after its own row is written, the estimate year and the documents it names
locked, on what the registry holds then.

``PermitRegistry.context_for`` is the other half. The documents layer validates without I/O, so the registry
first loads what a document's cross-document rules will ask (the ``DocumentOutline`` names it) into a
``PermitContext``: a ``DocumentContext`` held in memory, with the administrator's control tables.

Quantities are kept as whole micrograms of anhydrous base, exact on SQLite and PostgreSQL alike; an import
line's capacity is rounded down and a draw up, so the database and the rules agree on what fits.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clock import Clock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentOutline,
    DocumentReference,
    DocumentStatus,
    DocumentType,
    Estimate,
    Finding,
    ParsedDocument,
    Party,
    PermitDocument,
    PermitDocumentRejected,
    PermitLine,
    Prohibition,
    cross_document_findings,
)
from gateway.store.lifecycle import Direction
from gateway.store.schema import permit_documents, permit_lines
from gateway.store.store import as_utc, insert_or_nothing, reader
from gateway.tasks import on_recheck_thread, to_end

IA = DocumentType.IMPORT_AUTHORIZATION
EA = DocumentType.EXPORT_AUTHORIZATION
EX = DocumentType.EXPORT_EXECUTION
EN = DocumentType.IMPORT_ENDORSEMENT
AM = DocumentType.AMENDMENT
CA = DocumentType.CANCELLATION

MICROGRAMS_PER_GRAM = Decimal(1_000_000)
_doc = permit_documents.c
_line = permit_lines.c


class PermitState(StrEnum):
    """Where a document stands (PERMITS-NOTES 4.4). Types without a lifecycle stay ISSUED unless cancelled."""

    ISSUED = "ISSUED"
    PARTIALLY_USED = "PARTIALLY_USED"
    EXHAUSTED = "EXHAUSTED"
    EXPIRED = "EXPIRED"
    SHIPPED = "SHIPPED"
    ENDORSED_FULL = "ENDORSED_FULL"
    ENDORSED_PARTIAL = "ENDORSED_PARTIAL"
    EXPIRED_UNENDORSED = "EXPIRED_UNENDORSED"
    CANCELLED = "CANCELLED"


class PermitEvent(StrEnum):
    """What moves a document; ``LIFECYCLES`` says from which state to which."""

    USE = "use"  # an export drew on the import authorization
    EXHAUST = "exhaust"  # nothing is left on any of its lines
    RELEASE = "release"  # a cancelled or short-endorsed export gave quantity back
    SHIP = "ship"
    ENDORSE_FULL = "endorse_full"
    ENDORSE_PARTIAL = "endorse_partial"
    UNENDORSE = "unendorse"  # its endorsement was cancelled
    UNSHIP = "unship"  # its only live ExportExecution was cancelled
    EXPIRE = "expire"
    CANCEL = "cancel"


_S, _E = PermitState, PermitEvent
_AWAITING_ENDORSEMENT = (_S.ISSUED, _S.SHIPPED, _S.EXPIRED_UNENDORSED)
_ENDORSED = (_S.ENDORSED_FULL, _S.ENDORSED_PARTIAL)

Lifecycle = Mapping[tuple[PermitState, PermitEvent], PermitState]

LIFECYCLES: Mapping[DocumentType, Lifecycle] = MappingProxyType(
    {
        IA: MappingProxyType(
            {
                (_S.ISSUED, _E.USE): _S.PARTIALLY_USED,
                (_S.ISSUED, _E.EXHAUST): _S.EXHAUSTED,
                (_S.PARTIALLY_USED, _E.EXHAUST): _S.EXHAUSTED,
                (_S.EXHAUSTED, _E.RELEASE): _S.PARTIALLY_USED,
                (_S.ISSUED, _E.EXPIRE): _S.EXPIRED,
                (_S.PARTIALLY_USED, _E.EXPIRE): _S.EXPIRED,
                (_S.ISSUED, _E.CANCEL): _S.CANCELLED,
                (_S.PARTIALLY_USED, _E.CANCEL): _S.CANCELLED,
                (_S.EXHAUSTED, _E.CANCEL): _S.CANCELLED,
                (_S.EXPIRED, _E.CANCEL): _S.CANCELLED,
            }
        ),
        EA: MappingProxyType(
            {
                (_S.ISSUED, _E.SHIP): _S.SHIPPED,
                (_S.SHIPPED, _E.UNSHIP): _S.ISSUED,
                **{(s, _E.ENDORSE_FULL): _S.ENDORSED_FULL for s in _AWAITING_ENDORSEMENT},
                **{(s, _E.ENDORSE_PARTIAL): _S.ENDORSED_PARTIAL for s in _AWAITING_ENDORSEMENT},
                (_S.ENDORSED_FULL, _E.UNENDORSE): _S.ISSUED,
                (_S.ENDORSED_PARTIAL, _E.UNENDORSE): _S.ISSUED,
                (_S.ISSUED, _E.EXPIRE): _S.EXPIRED_UNENDORSED,
                (_S.SHIPPED, _E.EXPIRE): _S.EXPIRED_UNENDORSED,
                **{(s, _E.CANCEL): _S.CANCELLED for s in _AWAITING_ENDORSEMENT},
            }
        ),
    }
)
# Every other type is a plain record: issued, and cancelled if a Cancellation names it.
OTHER_LIFECYCLE: Lifecycle = MappingProxyType({(_S.ISSUED, _E.CANCEL): _S.CANCELLED})
# The states in which an Amendment may replace a document's content (BR-14).
AMENDABLE: Mapping[DocumentType, tuple[PermitState, ...]] = MappingProxyType(
    {IA: (_S.ISSUED, _S.PARTIALLY_USED), EA: (_S.ISSUED, _S.SHIPPED)}
)


def lifecycle(document_type: DocumentType) -> Lifecycle:
    return LIFECYCLES.get(document_type, OTHER_LIFECYCLE)


def move_sources(document_type: DocumentType, event: PermitEvent) -> tuple[PermitState, ...]:
    """The states from which ``event`` moves a document of this type."""
    return tuple(state for (state, e) in lifecycle(document_type) if e is event)


def _cancellation_due(
    document_type: DocumentType, status: PermitState, cancelled_on: date | None, as_of: date
) -> bool:
    """Whether a cancellation has taken effect on ``as_of`` but is still to be applied by the daily job: its date
    has come and the document stands where a cancellation moves it from. One whose document was endorsed before
    its date never takes effect: an endorsed export cannot be cancelled."""
    return cancelled_on is not None and cancelled_on <= as_of and status in move_sources(document_type, _E.CANCEL)


def _uncounted(
    document_type: DocumentType,
    status: PermitState,
    cancelled_on: date | None,
    as_of: date,
    chained_on: date | None = None,
) -> bool:
    """Whether a document no longer counts on ``as_of`` (what it draws, ships, endorses or authorizes): it is
    cancelled, or its cancellation is due that day, directly or (``chained_on``, an export endorsed before its
    cancellation's date) once its endorsement's is. One cancelled from a later day counts until then."""
    due = _cancellation_due(document_type, status, cancelled_on, as_of)
    return status is _S.CANCELLED or due or (chained_on is not None and chained_on <= as_of)


def _chained_on(cancelled_on: date, endorsements: Sequence[date | None]) -> date | None:
    """The day the cancellation of an export endorsed before its date takes effect: its endorsements (those not
    cancelled) are cancelled first, which reopens it, so the latest of its date and theirs. None while one of
    them has no cancellation: an endorsed export cannot be cancelled."""
    if not endorsements or None in endorsements:
        return None
    return max(cancelled_on, *(day for day in endorsements if day is not None))


_X022_HINT = (
    "If this is the same permit, it was changed on its way (its content, or its encoding or line ends for a "
    "permit kept before such changes were ignored): send the original bytes again. If it is a different permit, "
    "give it a new number; to change an issued document, send an Amendment."
)


def _same_content(kept_sha256: str, content_sha256: str, raw_sha256: str) -> bool:
    """Whether a kept document's hash is this document's: of its canonical form, or, for one kept before the
    registry hashed canonical forms, of its bytes (which the same bytes sent again still match)."""
    return kept_sha256 in {h for h in (content_sha256, raw_sha256) if h}


class PermitRefused(PermitDocumentRejected):
    """The registry refuses a document its rules let through: another document changed what this one draws
    on between the check and the record, or the move is not in the document's lifecycle."""

    def __init__(self, rule: str, message: str, *, hint: str | None = None) -> None:
        hint = hint or (
            "The registry changed while the document was checked, or the document it names is no longer in "
            "a state that allows this; look the document up under /api/v1/permits and send a corrected one."
        )
        super().__init__([Finding(rule=rule, severity="error", message=message, hint=hint)])
        self.rule = rule


class PermitChangedMeanwhile(PermitRefused):
    """The document's cross-document rules, run again as it is recorded (under the registry's locks), find
    errors its check did not: a document recorded meanwhile changed what this one names or counts against."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        meanwhile = " (found as the document was recorded: another document was recorded after it was checked)"
        PermitDocumentRejected.__init__(self, [replace(f, message=f.message + meanwhile) for f in findings])
        self.rule = findings[0].rule


@dataclass(frozen=True, slots=True)
class Recheck:
    """How a document was checked (parsed, and on which day), so that ``record`` runs its rules again on what
    the registry holds once the documents they ask about are locked."""

    parsed: ParsedDocument
    as_of: date | None


# --- records --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitLineRecord:
    """A line as the registry keeps it: ``remaining_grams`` on an ImportAuthorization line, ``drawn_grams``
    (what it takes from its import line) on an ExportAuthorization line."""

    line_number: int
    substance_id: str
    base_grams: Decimal | None
    reference_line_number: int | None
    remaining_grams: Decimal | None
    drawn_grams: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitRecord:
    """A document in the registry; ``version`` and the content are the current ones, ``content_sha256`` the
    original's (what a duplicate is compared with); ``refers_to`` is the document it draws on or is about.
    ``cancelled_on`` is the day it is (or will be) cancelled from; an endorsed export, which a cancellation
    cannot move, has none: ``cancellation_held`` is then the date of the cancellation it holds, which takes
    effect only if its endorsement is cancelled."""

    key: DocumentKey
    version: int
    status: PermitState
    issue_date: date
    valid_from: date | None
    valid_until: date | None
    importing_country: str
    exporting_country: str
    importer: Party | None
    exporter: Party | None
    refers_to: DocumentKey | None
    cancelled_on: date | None
    content_sha256: str
    direction: Direction
    message_id: str
    lines: tuple[PermitLineRecord, ...]
    created_at: datetime
    updated_at: datetime
    cancellation_held: date | None = None

    @property
    def document_type(self) -> DocumentType:
        return self.key.document_type


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitDetail:
    """A document and the documents issued against it (the exports drawn on an import; the executions and
    endorsements of an export; amendments, cancellations, answers), oldest first."""

    permit: PermitRecord
    against: tuple[PermitRecord, ...]


# --- the registry ---------------------------------------------------------------------------------------


class PermitRegistry:
    """Permit documents sent and received; their lifecycle and remaining quantities, kept by the database."""

    def __init__(self, engine: AsyncEngine, clock: Clock, tables: ControlTables | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._tables = tables or ControlTables()
        self._reads = reader(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def tables(self) -> ControlTables:
        return self._tables

    def use_tables(self, tables: ControlTables) -> None:
        """The administrator's new control tables: documents checked or recorded from now on use them."""
        self._tables = tables

    async def context_for(self, outline: DocumentOutline | None) -> PermitContext:
        """What the cross-document rules will ask about the outlined document, loaded in one go."""
        if outline is None:
            return PermitContext(tables=self._tables)
        async with self._reads.connect() as conn:
            return await _Snapshot(conn, self._tables, self._clock.now().date()).load(outline)

    @to_end
    async def record(
        self,
        document: PermitDocument,
        *,
        direction: Direction,
        message_id: str,
        recheck: Recheck | None = None,
    ) -> tuple[PermitRecord, bool]:
        """Keep an accepted document and apply it to the document it names; ``created=False`` when the same
        document (same key, same content) is already kept. Raises ``PermitRefused`` when the database refuses:
        the key taken by other content (X-022), a quantity no longer there (EA-009), a move not allowed; and,
        given ``recheck``, when the document's cross-document rules, run again under locks on what the
        registry now holds, find an error (``PermitChangedMeanwhile``)."""
        async with self._engine.begin() as conn:
            tx = _Tx(conn, self._clock.now(), self._tables)
            pk, recorded = await tx.record(document, direction, message_id, recheck)
            return await tx.load(pk), recorded.created

    async def record_on(
        self,
        conn: AsyncConnection,
        document: PermitDocument,
        *,
        direction: Direction,
        message_id: str,
        recheck: Recheck | None = None,
    ) -> Recorded:
        """``record`` inside a transaction the caller holds (a ``UnitOfWork``): whether newly kept, and the due
        cancellations it applied first (the daily job's work, for the caller to log once committed)."""
        tx = _Tx(conn, self._clock.now(), self._tables)
        _, recorded = await tx.record(document, direction, message_id, recheck)
        return recorded

    async def first_carrier_on(self, conn: AsyncConnection, key: DocumentKey) -> str:
        """The MessageId that carried the kept document ``key`` when it was first kept."""
        message_id: str = (await conn.execute(_KEPT_AS, _key_params([key]))).one().message_id
        return message_id

    @to_end
    async def expire(self, as_of: date) -> int:
        """Authorizations whose validity ended before ``as_of`` move to EXPIRED / EXPIRED_UNENDORSED."""
        now = self._clock.now()
        moved = 0
        async with self._engine.begin() as conn:
            for document_type in (IA, EA):
                result = await conn.execute(
                    update(permit_documents)
                    .where(
                        _doc.document_type == document_type,
                        _doc.status.in_(move_sources(document_type, _E.EXPIRE)),
                        _doc.valid_until < as_of,
                    )
                    .values(status=_target(document_type, _E.EXPIRE), updated_at=now)
                )
                moved += result.rowcount
        return moved

    async def apply_cancellations(self, as_of: date) -> CancellationsApplied:
        """Cancellations effective on ``as_of`` or before, recorded earlier, take effect: each document moves to
        CANCELLED and gives back what it drew, shipped or endorsed, as a cancellation effective at once does,
        each in its own transaction. A document cancelled meanwhile (another run, another node) is left alone;
        one whose effects the registry refuses stays as it is, to be tried again at the next run. An export endorsed
        before its cancellation's date cannot be cancelled: it is held (``held``) while its endorsement stands,
        and cancelled by the run after its endorsement's cancellation takes effect."""
        cancelled: list[DocumentKey] = []
        refused: dict[int, tuple[DocumentKey, PermitRefused]] = {}
        while True:  # again while one applies: cancelling an endorsement can reopen an export whose own
            # cancellation is due, and what an export gives back can make a refused endorsement's fit
            async with self._reads.connect() as conn:
                due = list(await conn.execute(_DUE_CANCELLATIONS, {"as_of": as_of}))
            applied = False
            for row in due:
                try:
                    if await self._cancel_due(row.id, DocumentType(row.document_type)):
                        cancelled.append(_key(row))
                        refused.pop(row.id, None)
                        applied = True
                except PermitRefused as exc:
                    refused[row.id] = (_key(row), exc)
            if not applied:
                held = await self.held_by_endorsements(as_of)
                return CancellationsApplied(cancelled=tuple(cancelled), refused=tuple(refused.values()), held=held)

    async def held_by_endorsements(self, as_of: date) -> tuple[HeldCancellation, ...]:
        """The endorsed exports whose cancellation's date has come by ``as_of``, each with what holds it."""
        async with self._reads.connect() as conn:
            exports = list(await conn.execute(_HELD_BY_ENDORSEMENTS, {"as_of": as_of}))
            if not exports:
                return ()
            standing = await conn.execute(_STANDING_ENDORSEMENTS, {"pks": [row.id for row in exports]})
            endorsements: dict[int, list[tuple[DocumentKey, date | None]]] = defaultdict(list)
            for row in standing:
                endorsements[row.refers_to].append((_key(row), row.cancelled_on))
        return tuple(HeldCancellation(_key(row), row.cancelled_on, tuple(endorsements[row.id])) for row in exports)

    @to_end
    async def _cancel_due(self, pk: int, document_type: DocumentType) -> bool:
        """The guarded move comes first: it locks the document's row (before its export's and its import's, as
        every registry transaction locks them), and does nothing where another transaction cancelled it."""
        async with self._engine.begin() as conn:
            return await _Tx(conn, self._clock.now(), self._tables).cancel_due(pk, document_type)

    async def get(self, key: DocumentKey) -> PermitDetail | None:
        """The document under ``key`` and the documents issued against it."""
        async with self._engine.connect() as conn:  # records() streams: a server-side cursor needs a transaction
            tx = _Tx(conn, self._clock.now())
            pk = await tx.pk_of(key)
            if pk is None:
                return None
            against = select(permit_documents).where(_doc.refers_to == pk).order_by(_doc.id)
            return PermitDetail(permit=await tx.load(pk), against=tuple(await tx.records(against)))

    async def find(
        self,
        *,
        document_type: DocumentType | None = None,
        issuing_country: str | None = None,
        status: PermitState | None = None,
        limit: int = 100,
        after: DocumentKey | None = None,
    ) -> list[PermitRecord]:
        """The newest documents matching every filter given; with ``after`` (the last document of the page
        before), those registered before it. Documents are never deleted, so ``after`` names one for good."""
        query = select(permit_documents).order_by(_doc.id.desc()).limit(limit)
        if after is not None:
            query = query.where(_doc.id < _PK_OF_KEY.params(_key_params([after])).scalar_subquery())
        for column, value in (
            (_doc.document_type, document_type),
            (_doc.issuing_country, issuing_country),
            (_doc.status, status),
        ):
            if value is not None:
                query = query.where(column == value)
        async with self._engine.connect() as conn:
            return await _Tx(conn, self._clock.now()).records(query)

    async def overdue_endorsements(
        self, as_of: date, *, days: int = 10, limit: int = 500, after: tuple[date, DocumentKey] | None = None
    ) -> list[PermitRecord]:
        """ExportAuthorizations whose validity ended more than ``days`` days before ``as_of``, not endorsed
        (BR-17 ENDORSEMENT_OVERDUE), the longest overdue first; with ``after`` (the valid_until and key of the
        last document of the page before), those listed after it. Its valid_until comes with it, as an amendment
        may have moved the document since."""
        query = (
            select(permit_documents)
            .where(
                _doc.document_type == EA,
                _doc.status.in_(_AWAITING_ENDORSEMENT),
                _doc.valid_until < as_of - timedelta(days=days),
            )
            .order_by(_doc.valid_until, _doc.id)
            .limit(limit)
        )
        if after is not None:
            until, key = after
            anchor = _PK_OF_KEY.params(_key_params([key])).scalar_subquery()
            query = query.where(or_(_doc.valid_until > until, and_(_doc.valid_until == until, _doc.id > anchor)))
        async with self._engine.connect() as conn:
            return await _Tx(conn, self._clock.now()).records(query)


@dataclass(frozen=True, slots=True)
class HeldCancellation:
    """An export endorsed before its cancellation's date (``cancelled_on``): an endorsed export cannot be
    cancelled, so the cancellation waits on its endorsements, each with the day it is cancelled from (None: it
    stands, and the export's cancellation never takes effect unless it is cancelled)."""

    export: DocumentKey
    cancelled_on: date
    endorsements: tuple[tuple[DocumentKey, date | None], ...] = ()


@dataclass(frozen=True, slots=True)
class CancellationsApplied:
    """What ``apply_cancellations`` did: the documents it cancelled, those whose cancellation the registry
    refused (with why, and what to do), and the endorsed exports whose cancellation their endorsement holds."""

    cancelled: tuple[DocumentKey, ...] = ()
    refused: tuple[tuple[DocumentKey, PermitRefused], ...] = ()
    held: tuple[HeldCancellation, ...] = ()


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_on`` did: whether the document was newly kept, and the due cancellations it applied first
    (those of the documents it names or meets, as the daily job would have)."""

    created: bool
    cancelled: tuple[DocumentKey, ...] = ()


def document_name(key: DocumentKey) -> str:
    """How logs and messages name a document: "ExportAuthorization CH-EA-2026-0001 of CH"."""
    return f"{key.document_type} {key.number} of {key.issuing_country}"


# --- one transaction's work -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Tx:
    """The steps of a registry transaction, on its connection. An import line's remaining quantity changes
    only by a conditional UPDATE of a delta, so concurrent transactions cannot lose each other's draws; rows
    are locked in one order (the export, then its import, then the import's lines by id), so that on
    PostgreSQL they cannot deadlock either."""

    conn: AsyncConnection
    now: datetime
    tables: ControlTables = field(default_factory=ControlTables)

    async def pk_of(self, key: DocumentKey | None) -> int | None:
        if key is None:
            return None
        pk: int | None = (await self.conn.execute(_PK_OF_KEY, _key_params([key]))).scalar()
        return pk

    async def row(self, pk: int) -> Any:
        return (await self.conn.execute(_DOCUMENT_BY_PK, {"pk": pk})).one()

    async def lines(self, pk: int) -> list[Any]:
        return list(await self.conn.execute(_LINES_OF_DOCUMENT, {"pk": pk}))

    async def load(self, pk: int) -> PermitRecord:
        return _record(await self.row(pk), await self.lines(pk))

    async def records(self, query: Select[Any]) -> list[PermitRecord]:
        rows = [row async for row in await self.conn.stream(query)]
        lines = await _lines_by_document(self.conn, [row.id for row in rows])
        return [_record(row, lines.get(row.id, [])) for row in rows]

    async def record(
        self, document: PermitDocument, direction: Direction, message_id: str, recheck: Recheck | None = None
    ) -> tuple[int, Recorded]:
        """Keep the document and apply it to the one it names; its row id, and what was done (not created when
        already kept).

        The document's own row is written first, so on SQLite this transaction already holds the write lock.
        On PostgreSQL it then locks the year's estimate totals (given ``recheck``) and the documents this one
        names or whose quantities its effects count on, in the order every registry transaction takes them
        (estimates, then endorsements and executions, exports, imports). Cancellations due today among those
        are applied first, as the daily job would (the rules already count them as applied from 00:00, and
        the job skips a document cancelled meanwhile); one the registry refuses is left to the job, and a
        refusal of this document's effects then names it. One its effects make applicable (the export a
        cancelled endorsement reopens) is applied after them."""
        refers_to = await self.pk_of(_primary_reference(document))
        values = _document_values(document, direction, message_id, self.now) | {"refers_to": refers_to}
        insert_document = insert_or_nothing(self.conn.dialect.name, permit_documents, (_doc.id,))
        pk = (await self.conn.execute(insert_document, values)).scalar()
        if pk is None:
            return await self.already_recorded(document), Recorded(created=False)
        await self.insert_lines(pk, document.document_type, document.lines)
        outline = recheck.parsed.outline if recheck is not None else None
        if outline is not None:
            await self.lock_estimates(outline)
        due = await self.lock_named(document)
        applied, held_back = await self.apply_due(due)
        if recheck is not None and outline is not None:
            await self.check_again(recheck, outline, fresh=pk)
        if refers_to is not None:
            try:
                await _EFFECTS.get(document.document_type, _no_effect)(self, pk, document, refers_to)
            except PermitRefused as refused:
                if held_back:
                    raise _held_back_by(refused, held_back) from None
                if any(row.id == refers_to for row in applied):
                    raise _cancelled_today(refused, next(row for row in applied if row.id == refers_to)) from None
                raise
            done = {row.id for row in applied} | {row.id for row, _ in held_back}
            applied += (await self.apply_due([row for row in due if row.id not in done]))[0]
        return pk, Recorded(created=True, cancelled=tuple(_key(row) for row in applied))

    async def check_again(self, recheck: Recheck, outline: DocumentOutline, *, fresh: int | None = None) -> None:
        """Run the document's rules again on what the registry holds once nothing they ask can change: the
        document's check read the registry without locks, and another document recorded since may have
        changed what it names (cancelled it, drawn on it, amended it) or the year's totals it counts against.

        ``record`` has locked what the rules ask (``lock_estimates``, ``lock_named``), so the snapshot read here
        holds what the transactions that held those locks committed. The rules see this document as kept,
        which they allow for (a document sent again): they leave it out of what it is checked against.

        Only the cross-document rules run again (the document's own rules and its schema passed, and cannot
        have changed), and not on the documents thread: this transaction must not wait behind other
        documents' parsing with its locks held (on SQLite, the one pooled connection every store call needs)."""
        context = await _Snapshot(self.conn, self.tables, self.now.date(), fresh=fresh).load(outline)
        findings = await on_recheck_thread(
            cross_document_findings, recheck.parsed, as_of=recheck.as_of, context=context
        )
        errors = [finding for finding in findings if finding.severity == "error"]
        if errors:
            raise PermitChangedMeanwhile(errors)

    async def lock_estimates(self, outline: DocumentOutline) -> None:
        """One lock per importing country and estimate year an authorization counts against (PostgreSQL; an
        advisory lock for the transaction): a concurrent authorization of the same year waits for its totals."""
        if self.conn.dialect.name != "postgresql":
            return
        parts = (outline, outline.replacement) if outline.replacement else (outline,)
        counted = {
            (part.importing_country, part.year)
            for part in parts
            if part.key.document_type in (IA, EA)
            and any(self.tables.estimate(part.importing_country, s, part.year) for s in part.substance_ids)
        }
        for country, year in sorted(counted):
            await self.conn.execute(_ESTIMATE_LOCK, {"key": _estimate_lock_key(country, year)})

    async def lock_named(self, document: PermitDocument) -> list[Any]:
        """Lock the rows of the documents this one (and an amendment's replacement) names, and find the
        documents whose cancellation is due today and whose effects the document's own could meet: those
        named, the endorsements and executions of the exports named (or of the export a named endorsement or
        execution is of), and the exports drawing on the imports named (or on those exports' imports). Where
        there are any, they are locked too, with the exports and imports their cancellation changes, all in
        the one lock order. An endorsed export drawing on an import named, whose cancellation's date has come,
        counts as named: cancelling its endorsement, if due, reopens it, and its cancellation then applies.
        Returns them in that order (an endorsement before its export: cancelling it can reopen an export whose
        own cancellation is due)."""
        keys = _named_keys(document)
        if not keys:
            return []
        named = list(await self.conn.execute(_documents_with_keys(len(keys)), _key_params(keys)))
        subjects = [row.refers_to for row in named if row.document_type in (EN, EX) and row.refers_to is not None]
        exports = [row for row in named if row.document_type == EA]
        if subjects:
            exports += list(await self.conn.execute(_EXPORTS_BY_PK, {"pks": subjects}))
        imports = {row.id for row in named if row.document_type == IA}
        imports |= {row.refers_to for row in exports if row.refers_to is not None}
        if imports:
            held = {"imports": sorted(imports), "as_of": self.now.date()}
            exports += list(await self.conn.execute(_ENDORSED_DUE_EXPORTS, held))
        params = {
            "as_of": self.now.date(),
            "documents": sorted({row.id for row in (*named, *exports)} | imports),
            "exports": sorted({row.id for row in exports}),
            "imports": sorted(imports),
        }
        due = list(await self.conn.execute(_DUE_AMONG, params))
        locked = {row.id: str(row.document_type) for row in named}
        if due:
            locked |= {pk: IA.value for pk in imports} | {row.id: row.document_type for row in (*exports, *due)}
        for pk in sorted(locked, key=lambda pk: (_LOCK_ORDER.get(locked[pk], 0), pk)):
            await self.lock(pk)
        return sorted(due, key=lambda row: (_LOCK_ORDER.get(row.document_type, 0), row.id))

    async def apply_due(self, due: Sequence[Any]) -> tuple[list[Any], list[tuple[Any, PermitRefused]]]:
        """Apply these due cancellations, each as the daily job does: those applied, and those the registry
        refuses (a cancelled endorsement's export no longer fits on its import), undone, with why. A refused
        one is tried again after a pass that applied another: what that gave back may make it fit."""
        applied: list[Any] = []
        waiting = list(due)
        while waiting:
            held_back: list[tuple[Any, PermitRefused]] = []
            for row in waiting:
                try:
                    async with self.conn.begin_nested():
                        if await self.cancel_due(row.id, DocumentType(row.document_type)):
                            applied.append(row)
                except PermitRefused as refused:
                    held_back.append((row, refused))
            if len(held_back) == len(waiting):  # nothing applied in this pass: nothing more will
                return applied, held_back
            waiting = [row for row, _ in held_back]
        return applied, []

    async def cancel_due(self, pk: int, document_type: DocumentType) -> bool:
        """Apply a cancellation that has taken effect: the guarded move to CANCELLED, then what it gives back;
        False (nothing done) where the document is already cancelled or cannot be."""
        if not await self.move(pk, document_type, _E.CANCEL):
            return False
        await self.release(await self.row(pk))
        return True

    async def lock(self, pk: int) -> None:
        """Lock a document's row until the transaction ends (PostgreSQL; SQLite's writer holds the file)."""
        await self.conn.execute(_LOCK_DOCUMENT, {"pk": pk})

    async def already_recorded(self, document: PermitDocument) -> int:
        """The row id of the same document kept before; refused when the key holds other content."""
        kept = (await self.conn.execute(_KEPT_AS, _key_params([document.key]))).one()
        if not _same_content(kept.content_sha256, document.content_sha256, document.raw_sha256):
            raise PermitRefused(
                "X-022",
                f"{document.issuing_country} already issued a different {document.document_type} numbered "
                f"{document.number}",
                hint=_X022_HINT,
            )
        return int(kept.id)

    async def insert_lines(self, pk: int, document_type: DocumentType, lines: Sequence[PermitLine]) -> None:
        if lines:
            await self.conn.execute(_INSERT_LINES, [_line_values(pk, document_type, ln) for ln in lines])

    async def move(self, pk: int, document_type: DocumentType, event: PermitEvent) -> bool:
        """One conditional UPDATE: True when the document was in a state the event moves it from."""
        sources = move_sources(document_type, event)
        if not sources:
            return False
        result = await self.conn.execute(
            update(permit_documents)
            .where(_doc.id == pk, _doc.status.in_(sources))
            .values(status=_target(document_type, event), updated_at=self.now)
        )
        return result.rowcount == 1

    async def must_move(self, pk: int, document_type: DocumentType, event: PermitEvent, rule: str) -> None:
        if not await self.move(pk, document_type, event):
            raise _cannot_move(await self.row(pk), event, rule)

    async def cancel_on(self, pk: int, effective: date) -> None:
        """The day a document is cancelled from: the earliest of its cancellations'."""
        await self.conn.execute(
            update(permit_documents)
            .where(_doc.id == pk, or_(_doc.cancelled_on.is_(None), _doc.cancelled_on > effective))
            .values(cancelled_on=effective, updated_at=self.now)
        )

    async def release(self, cancelled: Any) -> None:
        """What cancelling a document gives back: an export all it drew; an endorsement reopens its export; an
        execution un-ships its export."""
        document_type = DocumentType(cancelled.document_type)
        if document_type is EA:
            await self.redraw_export(cancelled.id, {})
        elif document_type is EN and cancelled.refers_to is not None:
            await self.unendorse(cancelled.refers_to, cancelled.number)
        elif document_type is EX and cancelled.refers_to is not None:
            await self.unship(cancelled.refers_to)

    async def import_lines(self, ia_pk: int) -> dict[int, tuple[int, int]]:
        """Line number -> (line id, remaining micrograms), for an ImportAuthorization's lines that have a
        quantity to draw on."""
        query = select(_line.line_number, _line.id, _line.remaining_micrograms).where(
            _line.document_pk == ia_pk, _line.remaining_micrograms.is_not(None)
        )
        return {number: (pk, remaining) for number, pk, remaining in await self.conn.execute(query)}

    async def redraw_export(self, ea_pk: int, drawn: Mapping[int, int] | None) -> None:
        """Set what each line of an export draws, by line number (each line's base quantity when ``drawn``
        is None), then settle its import authorization's state."""
        ea = await self.row(ea_pk)
        if ea.refers_to is None:
            return
        await self.touch(ea.refers_to)
        targets = await self.import_lines(ea.refers_to)
        number = _cited(ea.cited, "import").number if "import" in ea.cited else ""
        draws = []
        for line in await self.lines(ea_pk):
            target = targets.get(line.reference_line_number)
            if line.drawn_micrograms is not None and target is not None:
                wanted = line.base_micrograms if drawn is None else drawn.get(line.line_number, 0)
                if wanted != line.drawn_micrograms:
                    draws.append(_Draw(line, target[0], wanted))
        await self.redraw(sorted(draws, key=lambda draw: draw.import_line), targets, number)
        await self.settle_import(ea.refers_to)

    async def redraw(self, draws: Sequence[_Draw], targets: Mapping[int, tuple[int, int]], number: str) -> None:
        """Make export lines take what they now draw from their import lines, in one statement for all of them.
        The import authorization's row is locked (``touch``), so its lines hold what ``targets`` read; and the
        database refuses to take a line's remaining quantity below zero (a CHECK) should they not."""
        if not draws:
            return
        remaining = {pk: left for pk, left in targets.values()}
        for draw in draws:
            remaining[draw.import_line] -= draw.delta
            if remaining[draw.import_line] < 0:
                raise _no_longer_fits(draw, number)
        try:
            await self.conn.execute(_DRAW, [{"target": d.import_line, "delta": d.delta} for d in draws])
        except IntegrityError:
            raise PermitRefused(
                "EA-009", f"the export draws more than is left on the lines of ImportAuthorization {number}"
            ) from None
        await self.conn.execute(_SET_DRAWN, [{"export_line": d.export_line.id, "drawn": d.drawn} for d in draws])

    async def touch(self, pk: int) -> None:
        """Mark a document changed (its quantities), which on PostgreSQL also locks its row."""
        await self.conn.execute(update(permit_documents).where(_doc.id == pk).values(updated_at=self.now))

    async def settle_import(self, ia_pk: int) -> None:
        """Move an ImportAuthorization to the state its remaining quantities say, where its lifecycle allows."""
        query = select(_line.base_micrograms, _line.remaining_micrograms).where(
            _line.document_pk == ia_pk, _line.remaining_micrograms.is_not(None)
        )
        quantities = list(await self.conn.execute(query))
        if not quantities:
            return
        if all(remaining == 0 for _, remaining in quantities):
            await self.move(ia_pk, IA, _E.EXHAUST)
            return
        await self.move(ia_pk, IA, _E.RELEASE)
        if any(remaining < base for base, remaining in quantities):
            await self.move(ia_pk, IA, _E.USE)

    async def shipped(self, ea_pk: int) -> bool:
        """A live ExportExecution says the export shipped."""
        live = select(_doc.id).where(
            _doc.refers_to == ea_pk, _doc.document_type == EX, _doc.status != _S.CANCELLED
        )
        return (await self.conn.execute(live.limit(1))).first() is not None

    async def unship(self, ea_pk: int) -> None:
        """An export whose executions are all cancelled did not ship: back to ISSUED, as if none was recorded (an
        endorsed or expired one stays where it is: the endorsement or the date moved it, not the shipment). The
        export is locked first: two of its executions cancelled at once on two nodes each saw the other live."""
        await self.lock(ea_pk)
        if not await self.shipped(ea_pk):
            await self.move(ea_pk, EA, _E.UNSHIP)

    async def unendorse(self, ea_pk: int, endorsement: str) -> None:
        """Put an export whose endorsement was cancelled back where it stood before it: awaiting endorsement
        (shipped if a live execution says so, expired if its validity has ended), drawing what it authorizes."""
        if not await self.move(ea_pk, EA, _E.UNENDORSE):
            return
        if await self.shipped(ea_pk):
            await self.move(ea_pk, EA, _E.SHIP)
        ea = await self.row(ea_pk)
        if ea.valid_until is not None and ea.valid_until < self.now.date():
            await self.move(ea_pk, EA, _E.EXPIRE)
        try:
            await self.redraw_export(ea_pk, None)
        except PermitRefused as refused:
            ia = _cited(ea.cited, "import").number if "import" in ea.cited else "it names"
            raise PermitRefused(
                refused.rule,
                f"cancelling ImportEndorsement {endorsement} gives ExportAuthorization {ea.number} back the "
                f"quantities it authorizes, and {refused.findings[0].message}",
                hint=f"Exports issued since took what the endorsement left on ImportAuthorization {ia}: cancel "
                "or amend one of them first, or correct the endorsement without cancelling it.",
            ) from None

    async def amend(self, pk: int, replacement: PermitDocument) -> None:
        """Replace a document's content and bump its version; the original's content hash stays."""
        row = await self.row(pk)
        document_type = DocumentType(row.document_type)
        result = await self.conn.execute(
            update(permit_documents)
            .where(
                _doc.id == pk,
                _doc.version < replacement.version,
                _doc.status.in_(AMENDABLE.get(document_type, ())),
            )
            .values(_content_values(replacement) | {"updated_at": self.now})
        )
        if result.rowcount != 1:
            raise PermitRefused(
                "AM-006" if row.version >= replacement.version else "AM-004",
                f"{document_type} {row.number} is version {row.version} and {row.status}; it cannot become "
                f"version {replacement.version}",
            )
        if document_type is IA:
            await self.amend_import_lines(pk, replacement.lines, row.number)
        elif document_type is EA:
            await self.amend_export_lines(pk, replacement.lines)

    async def amend_import_lines(self, pk: int, lines: Sequence[PermitLine], number: str) -> None:
        old = {line.line_number: line for line in await self.lines(pk)}
        new = {line.line_number: line for line in lines}
        for line_number, line in new.items():
            if line_number in old:
                await self.resize_import_line(old[line_number], line, number)
        for line_number in old.keys() - new.keys():
            await self.resize_import_line(old[line_number], None, number)
        await self.insert_lines(pk, IA, [line for n, line in new.items() if n not in old])
        await self.settle_import(pk)

    async def resize_import_line(self, old: Any, new: PermitLine | None, number: str) -> None:
        """An import line amended (or dropped, when ``new`` is None) must still hold what exports drew on it
        (AM-005): its remaining quantity changes by the same delta, and may not go below zero."""
        base = _micrograms(new.base_quantity_grams, IA) if new is not None else 0
        delta = (base or 0) - (old.base_micrograms or 0)
        fits = func.coalesce(_line.remaining_micrograms, 0) >= -delta
        if new is None:
            statement: Any = delete(permit_lines).where(_line.id == old.id, fits)
        else:
            remaining = func.coalesce(_line.remaining_micrograms, 0) + delta if base is not None else None
            values = _line_values(old.document_pk, IA, new) | {"remaining_micrograms": remaining}
            statement = update(permit_lines).where(_line.id == old.id, fits).values(values)
        if (await self.conn.execute(statement)).rowcount != 1:
            raise PermitRefused(
                "AM-005",
                f"line {old.line_number} of ImportAuthorization {number}: exports drew more on it than the "
                f"amended quantity ({_grams(base or 0)} g)",
            )

    async def amend_export_lines(self, pk: int, lines: Sequence[PermitLine]) -> None:
        """Give back everything the export drew, replace its lines, and draw the new quantities."""
        await self.redraw_export(pk, {})
        await self.conn.execute(delete(permit_lines).where(_line.document_pk == pk))
        await self.insert_lines(pk, EA, lines)
        await self.redraw_export(pk, None)


@dataclass(frozen=True, slots=True)
class _Draw:
    """An export line to draw ``drawn`` micrograms from ``import_line``, the id of its import line."""

    export_line: Any
    import_line: int
    drawn: int

    @property
    def delta(self) -> int:
        return self.drawn - (self.export_line.drawn_micrograms or 0)


def _cannot_move(row: Any, event: PermitEvent, rule: str) -> PermitRefused:
    document_type = DocumentType(row.document_type)
    allowed = ", ".join(move_sources(document_type, event)) or "no state"
    return PermitRefused(
        "X-025" if row.status == _S.CANCELLED else rule,
        f"{document_type} {row.number} of {row.issuing_country} is {row.status}; it can take the "
        f"{event.value} move only from {allowed}",
    )


def _held_back_by(refused: PermitRefused, held_back: Sequence[tuple[Any, PermitRefused]]) -> PermitRefused:
    """The refusal of a document's effects, whose hint names the due cancellations the registry could not
    apply before them (the rules counted them as applied): not a race, so sending it again alone does not help."""
    pending = " ".join(
        f"{row.document_type} {row.number} of {row.issuing_country} is cancelled from {row.cancelled_on}, but "
        f"its cancellation could not be applied ({why.rule}: {why.findings[0].message}). {why.findings[0].hint}"
        for row, why in held_back
    )
    hint = (
        f"{pending} The rules count that cancellation as applied, but the registry still holds the document as it "
        "stood before it, and this document does not fit on that: do that first, then send this document again "
        "(the cancellation is applied before it)."
    )
    return _with_hint(refused, hint)


def _cancelled_today(refused: PermitRefused, row: Any) -> PermitRefused:
    """The refusal of a document whose subject's own cancellation took effect today, as it was recorded (the
    cancellation of an endorsement due the same day reopened an export whose cancellation is due): not a race."""
    hint = (
        f"{row.document_type} {row.number} of {row.issuing_country} is cancelled from {row.cancelled_on}, and that "
        "cancellation took effect as this document was recorded (the cancellations of what stood in its way are "
        "due today too): this document cannot apply to it; issue it against a document in force instead."
    )
    return _with_hint(refused, hint)


def _with_hint(refused: PermitRefused, hint: str) -> PermitRefused:
    return PermitRefused(refused.rule, refused.findings[0].message, hint=hint)


def _no_longer_fits(draw: _Draw, number: str) -> PermitRefused:
    line = draw.export_line
    return PermitRefused(
        "EA-009",
        f"line {line.line_number}: {_grams(draw.delta)} g more no longer fits on line "
        f"{line.reference_line_number} of ImportAuthorization {number}",
    )


# --- what each document type does to the document it names ----------------------------------------------


async def _draw(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    await tx.redraw_export(pk, None)


async def _ship(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    await tx.move(subject, EA, _E.SHIP)


async def _endorse(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    """Close the export; from now on it draws what was imported, not what was authorized (BR-08)."""
    endorsed: dict[int, int] = defaultdict(int)
    for line in document.lines:
        if line.reference_line_number is not None:
            endorsed[line.reference_line_number] += _micrograms(line.base_quantity_grams, EN) or 0
    await tx.lock(subject)  # before its lines are read: an amendment of the export may be replacing them
    authorized = [line for line in await tx.lines(subject) if line.base_micrograms is not None]
    full = all(endorsed.get(line.line_number, 0) >= line.base_micrograms for line in authorized)
    await tx.must_move(subject, EA, _E.ENDORSE_FULL if full else _E.ENDORSE_PARTIAL, "EN-005")
    await tx.redraw_export(subject, endorsed)


async def _amend(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    if document.replacement is not None:
        await tx.amend(subject, document.replacement)


async def _cancel(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    """Cancel the document from the cancellation's effective date: at once (a cancelled export gives back all it
    drew, a cancelled endorsement reopens its export) when that is today or earlier. One effective later only
    records its date: the document keeps its state and what it draws, and is usable, until the daily job cancels
    it on that day (``apply_cancellations``); until then, the cancellation must still be allowed."""
    effective = document.effective_date or document.issue_date
    await tx.lock(subject)
    row = await tx.row(subject)
    document_type = DocumentType(row.document_type)
    if effective > tx.now.date():
        if PermitState(row.status) not in move_sources(document_type, _E.CANCEL):
            raise _cannot_move(row, _E.CANCEL, "LIFECYCLE")
        await tx.cancel_on(subject, effective)
        return
    await tx.must_move(subject, document_type, _E.CANCEL, "LIFECYCLE")
    await tx.cancel_on(subject, effective)
    await tx.release(row)


async def _no_effect(tx: _Tx, pk: int, document: PermitDocument, subject: int) -> None:
    return None


_EFFECTS = {EA: _draw, EX: _ship, EN: _endorse, AM: _amend, CA: _cancel}


# --- the context the rules ask --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownDocument:
    """A document the registry holds, as the rules see it, with where it stands."""

    pk: int
    document: PermitDocument
    status: PermitState
    cancelled_on: date | None
    content_sha256: str
    refers_to: int | None
    lines: tuple[PermitLineRecord, ...]
    direction: Direction
    message_id: str
    """The message that first carried it, sent or received."""
    chained_on: date | None = None
    """An export endorsed before its cancellation's date: the day that cancellation takes effect, once its
    endorsement's has (``_chained_on``)."""
    by_number: Mapping[int, PermitLineRecord] = field(init=False, repr=False, compare=False)
    drawn_by_reference: Mapping[int, Decimal] = field(init=False, repr=False, compare=False)
    """Grams its lines draw (an export) per line of the document it names."""
    base_by_reference: Mapping[int, Decimal] = field(init=False, repr=False, compare=False)
    """Base grams of its lines (an execution) per line of the document it names."""
    base_by_substance: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)
    """Base grams of its lines per substance, less those for re-export: what it counts against an estimate."""

    def __post_init__(self) -> None:
        # the rules ask per line: indexed once, a 9,999-line document is not walked once per line
        drawn: dict[int, Decimal] = defaultdict(Decimal)
        based: dict[int, Decimal] = defaultdict(Decimal)
        by_substance: dict[str, Decimal] = defaultdict(Decimal)
        for counted in self.document.lines:
            if counted.base_quantity_grams is not None and not counted.re_export:  # as ``authorized`` counts
                by_substance[counted.substance_id] += counted.base_quantity_grams
        for line in self.lines:
            if line.reference_line_number is None:
                continue
            if line.drawn_grams is not None:
                drawn[line.reference_line_number] += line.drawn_grams
            if line.base_grams is not None:
                based[line.reference_line_number] += line.base_grams
        object.__setattr__(self, "by_number", {line.line_number: line for line in self.lines})
        object.__setattr__(self, "drawn_by_reference", dict(drawn))
        object.__setattr__(self, "base_by_reference", dict(based))
        object.__setattr__(self, "base_by_substance", dict(by_substance))

    def line(self, line_number: int) -> PermitLineRecord | None:
        return self.by_number.get(line_number)


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitContext:
    """A ``DocumentContext`` over what the registry held when it was loaded: the documents one document names
    (and that document, if already kept), the exports, executions and endorsements against them (the exports
    against an import, and their endorsements, as documents too), the year's authorized quantities it counts
    against, and the control tables."""

    tables: ControlTables
    known: Mapping[DocumentKey, KnownDocument] = field(default_factory=dict)
    exports: Mapping[DocumentKey, tuple[DocumentKey, ...]] = field(default_factory=dict)
    executed: Mapping[DocumentKey, Mapping[int, Decimal]] = field(default_factory=dict)
    endorsements: Mapping[DocumentKey, tuple[DocumentKey, ...]] = field(default_factory=dict)
    dispatched: Mapping[DocumentKey, date] = field(default_factory=dict)
    authorized: Mapping[tuple[DocumentType, str, str, int], Decimal] = field(default_factory=dict)

    def find(self, key: DocumentKey) -> PermitDocument | None:
        known = self.known.get(key)
        return known.document if known else None

    def is_duplicate(self, key: DocumentKey, content_sha256: str) -> bool:
        known = self.known.get(key)
        return known is not None and known.content_sha256 != content_sha256

    def status(self, key: DocumentKey, *, as_of: date) -> DocumentStatus | None:
        known = self.known.get(key)
        if known is None:
            return None
        if _cancelled(known, as_of):
            return DocumentStatus.CANCELLED
        if _closed(known):
            return DocumentStatus.CLOSED
        valid_until = known.document.valid_until
        if valid_until is not None and valid_until < as_of:
            return DocumentStatus.EXPIRED
        return DocumentStatus.OPEN

    def remaining_base_grams(
        self, import_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal | None:
        known = self.known.get(import_authorization)
        line = known.line(line_number) if known else None
        if known is None or line is None or line.remaining_grams is None:
            return None
        excluded = self.known.get(excluding) if excluding else None
        if excluded is None or excluded.refers_to != known.pk:
            return line.remaining_grams
        return line.remaining_grams + excluded.drawn_by_reference.get(line_number, Decimal(0))

    def exports_against(
        self, import_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        return tuple(key for key in self.exports.get(import_authorization, ()) if key != excluding)

    def exported_base_grams(self, export_authorization: DocumentKey, line_number: int) -> Decimal | None:
        known = self.known.get(export_authorization)
        line = known.line(line_number) if known else None
        if line is None:
            return None
        shipped = self.executed.get(export_authorization)
        return shipped.get(line_number, Decimal(0)) if shipped is not None else line.base_grams

    def executed_base_grams(
        self, export_authorization: DocumentKey, line_number: int, *, excluding: DocumentKey | None = None
    ) -> Decimal:
        total = self.executed.get(export_authorization, {}).get(line_number, Decimal(0))
        export, excluded = self.known.get(export_authorization), self.known.get(excluding) if excluding else None
        if export is None or excluded is None or excluded.document.document_type is not EX:
            return total
        if excluded.status is _S.CANCELLED:  # not in the total: it shipped nothing
            return total
        if excluded.refers_to != export.pk:
            return total
        return total - excluded.base_by_reference.get(line_number, Decimal(0))

    def dispatch_date(self, export_authorization: DocumentKey) -> date | None:
        return self.dispatched.get(export_authorization)

    def endorsements_of(
        self, export_authorization: DocumentKey, *, excluding: DocumentKey | None = None
    ) -> tuple[DocumentKey, ...]:
        return tuple(key for key in self.endorsements.get(export_authorization, ()) if key != excluding)

    def authorized_base_grams(
        self,
        document_type: DocumentType,
        importing_country: str,
        substance_id: str,
        year: int,
        *,
        excluding: DocumentKey | None = None,
    ) -> Decimal:
        total = self.authorized.get((document_type, importing_country, substance_id, year), Decimal(0))
        excluded = self.known.get(excluding) if excluding else None
        if excluded is None or excluded.status is _S.CANCELLED:
            return total
        counted = excluded.document
        if (counted.document_type, counted.importing_country, counted.estimate_year) != (
            document_type,
            importing_country,
            year,
        ):
            return total
        return total - excluded.base_by_substance.get(substance_id, Decimal(0))

    def estimate(self, country: str, substance_id: str, year: int) -> Estimate | None:
        return self.tables.estimate(country, substance_id, year)

    def prohibition(self, country: str, substance_id: str) -> Prohibition | None:
        return self.tables.prohibition(country, substance_id)

    def import_authorization_required(self, country: str, treaty: str, schedule: str) -> bool:
        return self.tables.import_authorization_required(country, treaty, schedule)


def _cancelled(known: KnownDocument, as_of: date) -> bool:
    """Cancelled on ``as_of``: from its cancellation's effective date, whether the daily job has applied it yet
    or not (a document cancelled before the registry kept dates counts as cancelled on any day)."""
    if known.cancelled_on is None:
        return known.status is _S.CANCELLED
    due = _cancellation_due(known.document.document_type, known.status, known.cancelled_on, as_of)
    chained = known.chained_on is not None and known.chained_on <= as_of
    return due or chained or (known.status is _S.CANCELLED and known.cancelled_on <= as_of)


def _closed(known: KnownDocument) -> bool:
    """An export once endorsed; an import drawn to nothing on every line."""
    if known.document.document_type is EA:
        return known.status in (_S.ENDORSED_FULL, _S.ENDORSED_PARTIAL)
    if known.document.document_type is IA:
        return all(line.remaining_grams is not None and line.remaining_grams <= 0 for line in known.lines)
    return False


@dataclass(slots=True)
class _Snapshot:
    """Loads a ``PermitContext`` for one outlined document (and an amendment's replacement), as on ``as_of`` (the
    registry's day). A cancellation due that day counts as applied, though the daily job that applies it runs
    just after midnight: its document is CANCELLED, an export draws nothing and its import has it back. So does
    the cancellation of an export endorsed before its date once its endorsement's is due, as the registry
    applies them one after the other (``_chained_on``)."""

    conn: AsyncConnection
    tables: ControlTables
    as_of: date
    fresh: int | None = None
    """The row of a document this transaction has just inserted (``check_again``): no other row can name it yet
    (its id is new, and uncommitted for every other transaction), so the reads of what names a document, which
    would find nothing for it, leave it out."""

    async def load(self, outline: DocumentOutline) -> PermitContext:
        parts = (outline, outline.replacement) if outline.replacement else (outline,)
        keys = {key for part in parts for key in (part.key, *part.references)}
        rows = list(await self.conn.execute(_documents_with_keys(len(keys)), _key_params(keys)))
        lines = await _lines_by_document(self.conn, [row.id for row in rows])
        chained = await self.chained(rows)
        known = {_key(row): self.settled(_known(row, lines.get(row.id, []), chained.get(row.id))) for row in rows}
        for part in parts:
            kept = known.get(part.key)
            if kept is not None and part.raw_sha256 and kept.content_sha256 == part.raw_sha256:
                # kept before the registry hashed canonical forms: these are the very bytes it kept
                known[part.key] = replace(kept, content_sha256=part.content_sha256)
        older = [row for row in rows if row.id != self.fresh]
        await self.give_back(known, {row.id: _key(row) for row in older if row.document_type == IA})
        named = await self.named_by({row.id: _key(row) for row in older if row.document_type in (IA, EA)})
        taken = await self.exports_and_endorsements(known, [row.id for row in older if row.document_type == IA])
        if taken:
            named["endorsements"] = taken | named.get("endorsements", {})
        authorized: dict[tuple[DocumentType, str, str, int], Decimal] = {}
        for part in parts:
            authorized |= await self.authorized(part)
        return PermitContext(tables=self.tables, known=known, authorized=authorized, **named)

    def settled(self, known: KnownDocument) -> KnownDocument:
        """The document as it stands once a cancellation due today is applied."""
        document_type = known.document.document_type
        chained = known.chained_on is not None and known.chained_on <= self.as_of
        if not (chained or _cancellation_due(document_type, known.status, known.cancelled_on, self.as_of)):
            return known
        lines = tuple(
            replace(line, drawn_grams=None if line.drawn_grams is None else Decimal(0)) for line in known.lines
        )
        return replace(known, status=_S.CANCELLED, lines=lines)

    async def give_back(self, known: dict[DocumentKey, KnownDocument], imports: Mapping[int, DocumentKey]) -> None:
        """Give the imports what the exports whose cancellation is due today still draw on them."""
        if not imports:
            return
        drawn: dict[int, dict[int, int]] = defaultdict(dict)
        params = {"imports": list(imports), "as_of": self.as_of}
        for row in await self.conn.execute(_DRAWN_BY_DUE_EXPORTS, params):
            drawn[row.refers_to][row.reference_line_number] = int(row.drawn)
        for pk, by_line in drawn.items():
            ia = known[imports[pk]]
            lines = tuple(
                replace(line, remaining_grams=line.remaining_grams + _grams(by_line.get(line.line_number, 0)))
                if line.remaining_grams is not None
                else line
                for line in ia.lines
            )
            known[imports[pk]] = replace(ia, lines=lines)

    async def exports_and_endorsements(
        self, known: dict[DocumentKey, KnownDocument], imports: Sequence[int]
    ) -> dict[DocumentKey, tuple[DocumentKey, ...]]:
        """Add the live exports against the imports, and their live endorsements, to ``known``; return those
        endorsements by export. EA-008 totals the units an import line in a volume or count unit has given
        from what each export takes (what was endorsed, once endorsed): base grams cannot tell it."""
        if not imports:
            return {}
        query = select(permit_documents).where(_counted_on(self.as_of)).order_by(_doc.id)
        exports = list(await self.conn.execute(query.where(_doc.refers_to.in_(imports), _doc.document_type == EA)))
        export_keys = {row.id: _key(row) for row in exports}
        endorsements = []
        if export_keys:
            of_exports = query.where(_doc.refers_to.in_(list(export_keys)), _doc.document_type == EN)
            endorsements = list(await self.conn.execute(of_exports))
        new = [row for row in (*exports, *endorsements) if _key(row) not in known]
        lines = await _lines_by_document(self.conn, [row.id for row in new])
        for row in new:
            known[_key(row)] = _known(row, lines.get(row.id, []))
        found: dict[DocumentKey, list[DocumentKey]] = defaultdict(list)
        for row in endorsements:
            found[export_keys[row.refers_to]].append(_key(row))
        return {key: tuple(keys) for key, keys in found.items()}

    async def named_by(self, subjects: Mapping[int, DocumentKey]) -> dict[str, Any]:
        """The exports against the imports, and the executions (what and when they shipped) and endorsements
        of the exports."""
        if not subjects:
            return {}
        query = (
            select(permit_documents)
            .where(_doc.refers_to.in_(list(subjects)), _doc.document_type.in_((EA, EX, EN)))
            .order_by(_doc.id)
        )
        rows = list(await self.conn.execute(query))
        exports: dict[DocumentKey, list[DocumentKey]] = defaultdict(list)
        endorsements: dict[DocumentKey, list[DocumentKey]] = defaultdict(list)
        chained = await self.chained(rows)
        live = [row for row in rows if not self.uncounted(row, chained.get(row.id))]
        for row in live:
            if row.document_type == EA:
                exports[subjects[row.refers_to]].append(_key(row))
            elif row.document_type == EN:
                endorsements[subjects[row.refers_to]].append(_key(row))
        # A cancelled execution shipped nothing.
        live = [row for row in live if row.document_type == EX]
        return {
            "exports": {key: tuple(found) for key, found in exports.items()},
            "endorsements": {key: tuple(found) for key, found in endorsements.items()},
            "executed": await self.executed({row.id: subjects[row.refers_to] for row in live}),
            "dispatched": _dispatched(live, subjects),
        }

    def uncounted(self, row: Any, chained_on: date | None) -> bool:
        document_type, status = DocumentType(row.document_type), PermitState(row.status)
        return _uncounted(document_type, status, row.cancelled_on, self.as_of, chained_on)

    async def chained(self, rows: Sequence[Any]) -> dict[int, date]:
        """For the endorsed exports among ``rows`` that have a cancellation, the day it takes effect once their
        endorsements' cancellations have (those whose endorsement stands are left out)."""
        held = {row.id: row.cancelled_on for row in rows if row.status in _ENDORSED and row.cancelled_on}
        if not held:
            return {}
        endorsements: dict[int, list[date | None]] = defaultdict(list)
        for row in await self.conn.execute(_STANDING_ENDORSEMENTS, {"pks": list(held)}):
            endorsements[row.refers_to].append(row.cancelled_on)
        found = {pk: _chained_on(cancelled_on, endorsements[pk]) for pk, cancelled_on in held.items()}
        return {pk: day for pk, day in found.items() if day is not None}

    async def executed(self, executions: Mapping[int, DocumentKey]) -> dict[DocumentKey, dict[int, Decimal]]:
        """Base grams shipped per export line, for each export that has executions."""
        shipped: dict[DocumentKey, dict[int, Decimal]] = {key: defaultdict(Decimal) for key in executions.values()}
        for pk, lines in (await _lines_by_document(self.conn, list(executions))).items():
            for line in lines:
                if line.reference_line_number is not None and line.base_micrograms is not None:
                    shipped[executions[pk]][line.reference_line_number] += _grams(line.base_micrograms)
        return shipped

    async def authorized(self, part: DocumentOutline) -> dict[tuple[DocumentType, str, str, int], Decimal]:
        """The year's quantities on documents of the part's type for its importing country, for the
        substances that have an estimate or assessment to check against."""
        country, year, document_type = part.importing_country, part.year, part.key.document_type
        substances = [s for s in part.substance_ids if self.tables.estimate(country, s, year) is not None]
        if not substances:
            return {}
        query = (
            select(_line.substance_id, func.sum(_line.base_micrograms))
            .join(permit_documents, _doc.id == _line.document_pk)
            .where(
                _doc.document_type == document_type,
                _doc.importing_country == country,
                _doc.estimate_year == year,
                _counted_on(self.as_of),
                _line.substance_id.in_(substances),
                _line.re_export.is_(False),
            )
            .group_by(_line.substance_id)
        )
        totals = {substance: total for substance, total in await self.conn.execute(query)}
        return {(document_type, country, s, year): _grams(totals.get(s) or 0) for s in substances}


def _dispatched(executions: Sequence[Any], subjects: Mapping[int, DocumentKey]) -> dict[DocumentKey, date]:
    """The earliest DispatchDate (kept as effective_date) of each export's executions; an export with an
    execution kept without it (before dispatch dates were kept) is left out, its earliest not known."""
    days: dict[DocumentKey, list[date | None]] = defaultdict(list)
    for row in executions:
        days[subjects[row.refers_to]].append(row.effective_date)
    return {key: min(d for d in found if d is not None) for key, found in days.items() if None not in found}


# --- rows and values ------------------------------------------------------------------------------------


def _target(document_type: DocumentType, event: PermitEvent) -> PermitState:
    return lifecycle(document_type)[(move_sources(document_type, event)[0], event)]


def _key_matches(n: int) -> ColumnElement[bool]:
    """The document whose key is the ``n``-th of ``_key_params``."""
    return and_(
        _doc.document_type == bindparam(f"type_{n}"),
        _doc.issuing_country == bindparam(f"country_{n}"),
        _doc.number == bindparam(f"number_{n}"),
    )


def _key_params(keys: Iterable[DocumentKey]) -> dict[str, str]:
    params: dict[str, str] = {}
    for n, key in enumerate(keys):
        params |= {f"type_{n}": key.document_type, f"country_{n}": key.issuing_country, f"number_{n}": key.number}
    return params


@functools.cache
def _documents_with_keys(count: int) -> Select[Any]:
    """The documents whose keys are any of ``count`` keys given by ``_key_params``."""
    return select(permit_documents).where(or_(*(_key_matches(n) for n in range(count))))


# Built once: each call finds the compiled statement in SQLAlchemy's cache (see store.py).
_PK_OF_KEY = select(_doc.id).where(_key_matches(0))
_KEPT_AS = select(_doc.id, _doc.content_sha256, _doc.message_id).where(_key_matches(0))
_DOCUMENT_BY_PK = select(permit_documents).where(_doc.id == bindparam("pk"))
_LINES_OF_DOCUMENT = select(permit_lines).where(_line.document_pk == bindparam("pk")).order_by(_line.line_number)
_LINES_OF_DOCUMENTS = (
    select(permit_lines)
    .where(_line.document_pk.in_(bindparam("pks", expanding=True)))
    .order_by(_line.document_pk, _line.line_number)
)
_INSERT_LINES = insert(permit_lines)


def _cancellable() -> ColumnElement[bool]:
    """The documents a cancellation may move to CANCELLED: in a state their type's lifecycle moves it from."""
    typed = [and_(_doc.document_type == t, _doc.status.in_(move_sources(t, _E.CANCEL))) for t in LIFECYCLES]
    plain = (state for (state, event) in OTHER_LIFECYCLE if event is _E.CANCEL)
    others = and_(_doc.document_type.not_in(list(LIFECYCLES)), _doc.status.in_(list(plain)))
    return or_(*typed, others)


_endorsement = permit_documents.alias("endorsement")


def _chained(as_of: Any) -> ColumnElement[bool]:
    """An export endorsed before its cancellation's date whose cancellation takes effect by ``as_of`` (a date or
    a bound parameter), once its endorsements' have: ``_chained_on`` in SQL."""
    standing = and_(
        _endorsement.c.refers_to == _doc.id,
        _endorsement.c.document_type == EN,
        _endorsement.c.status != _S.CANCELLED,
    )
    stays = or_(_endorsement.c.cancelled_on.is_(None), _endorsement.c.cancelled_on > as_of)
    return and_(
        _doc.document_type == EA,
        _doc.status.in_(_ENDORSED),
        _doc.cancelled_on <= as_of,
        select(_endorsement.c.id).where(standing).exists(),
        ~select(_endorsement.c.id).where(standing, stays).exists(),
    )


def _counted_on(as_of: date) -> ColumnElement[bool]:
    """``_uncounted``'s opposite in SQL: not cancelled, and no cancellation due on ``as_of`` (chained or not)."""
    not_due = or_(_doc.cancelled_on.is_(None), _doc.cancelled_on > as_of, ~_cancellable())
    return and_(_doc.status != _S.CANCELLED, not_due, ~_chained(as_of))


# The oldest first; in the order of ix_permit_documents_cancelled_on (which holds the row id), so that the
# daily job reads a range of it rather than the whole table.
_DUE_CANCELLATIONS = (
    select(_doc.id, _doc.document_type, _doc.issuing_country, _doc.number)
    .where(_doc.cancelled_on <= bindparam("as_of"), _cancellable())
    .order_by(_doc.cancelled_on, _doc.id)
)
# What the exports against some imports draw where their cancellation is due (chained or not), per import line.
_DRAWN_BY_DUE_EXPORTS = (
    select(_doc.refers_to, _line.reference_line_number, func.sum(_line.drawn_micrograms).label("drawn"))
    .join(permit_documents, _doc.id == _line.document_pk)
    .where(
        _doc.refers_to.in_(bindparam("imports", expanding=True)),
        _doc.document_type == EA,
        or_(
            and_(_doc.status.in_(move_sources(EA, _E.CANCEL)), _doc.cancelled_on <= bindparam("as_of")),
            _chained(bindparam("as_of")),
        ),
        _line.drawn_micrograms.is_not(None),
        _line.reference_line_number.is_not(None),
    )
    .group_by(_doc.refers_to, _line.reference_line_number)
)
# The documents whose cancellation is due among those a new document names or meets: the named ones (an
# export still endorsed is taken too, as cancelling its endorsement first reopens it), the cancellable
# endorsements and executions of some exports, and the cancellable exports drawing on some imports.
_DUE_AMONG = select(_doc.id, _doc.document_type, _doc.issuing_country, _doc.number, _doc.cancelled_on).where(
    _doc.cancelled_on <= bindparam("as_of"),
    _doc.status != _S.CANCELLED,
    or_(
        _doc.id.in_(bindparam("documents", expanding=True)),
        and_(
            _cancellable(),
            or_(
                and_(_doc.refers_to.in_(bindparam("exports", expanding=True)), _doc.document_type.in_((EN, EX))),
                and_(_doc.refers_to.in_(bindparam("imports", expanding=True)), _doc.document_type == EA),
            ),
        ),
    ),
)
_EXPORTS_BY_PK = select(_doc.id, _doc.document_type, _doc.refers_to).where(
    _doc.id.in_(bindparam("pks", expanding=True)), _doc.document_type == EA
)
# The endorsed exports against some imports whose cancellation's date has come: cancelling their endorsements,
# if due, reopens them, and their own cancellation then takes effect.
_ENDORSED_DUE_EXPORTS = select(_doc.id, _doc.document_type, _doc.refers_to).where(
    _doc.refers_to.in_(bindparam("imports", expanding=True)),
    _doc.document_type == EA,
    _doc.status.in_(_ENDORSED),
    _doc.cancelled_on <= bindparam("as_of"),
)
# The endorsements of some exports that are not cancelled, with the day they are cancelled from, if any.
_STANDING_ENDORSEMENTS = select(
    _doc.id, _doc.document_type, _doc.issuing_country, _doc.number, _doc.refers_to, _doc.cancelled_on
).where(
    _doc.refers_to.in_(bindparam("pks", expanding=True)),
    _doc.document_type == EN,
    _doc.status != _S.CANCELLED,
)
# The endorsed exports whose cancellation's date has come: their endorsements hold it.
_HELD_BY_ENDORSEMENTS = (
    select(_doc.id, _doc.document_type, _doc.issuing_country, _doc.number, _doc.cancelled_on)
    .where(_doc.cancelled_on <= bindparam("as_of"), _doc.document_type == EA, _doc.status.in_(_ENDORSED))
    .order_by(_doc.cancelled_on, _doc.id)
)
# NO KEY UPDATE, as an UPDATE takes: a plain FOR UPDATE would wait for the key-share lock that inserting a
# document referring to the row takes, and two such inserts would deadlock.
_LOCK_DOCUMENT = select(_doc.id).where(_doc.id == bindparam("pk")).with_for_update(key_share=True)
_ESTIMATE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# Rows are locked in this order by every registry transaction (an endorsement or execution before its
# export, an export before its import); other types are never locked together with those.
_LOCK_ORDER: Mapping[str, int] = MappingProxyType({EN.value: 0, EX.value: 0, EA.value: 1, IA.value: 2})
_DRAW = (
    update(permit_lines)
    .where(_line.id == bindparam("target"))
    .values(remaining_micrograms=_line.remaining_micrograms - bindparam("delta"))
)
_SET_DRAWN = (
    update(permit_lines).where(_line.id == bindparam("export_line")).values(drawn_micrograms=bindparam("drawn"))
)


def _estimate_lock_key(country: str, year: int) -> int:
    """The advisory lock of a country's estimate year: the same number on every node (``hash`` is not)."""
    digest = hashlib.sha256(f"permit-gateway estimate {country} {year}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key(row: Any) -> DocumentKey:
    return DocumentKey(DocumentType(row.document_type), row.issuing_country, row.number)


def _micrograms(grams: Decimal | None, document_type: DocumentType) -> int | None:
    """An import line's capacity rounds down, anything drawn or reported rounds up."""
    if grams is None:
        return None
    rounding = ROUND_FLOOR if document_type is IA else ROUND_CEILING
    return int((grams * MICROGRAMS_PER_GRAM).to_integral_value(rounding=rounding))


def _exact_text(quantity: Decimal) -> str:
    """The quantity's exact value in plain digits, without its text's trailing zeros or exponent (``5.000`` is
    ``5``, ``1E+3`` is ``1000``): the schema bounds the digits that are left (components.xsd QuantityValueType)
    to fit the column, whereas ``5.`` followed by sixty zeros, a valid xs:decimal, would not."""
    text = format(quantity, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _grams(micrograms: int) -> Decimal:
    return Decimal(micrograms) / MICROGRAMS_PER_GRAM


def _optional_grams(micrograms: int | None) -> Decimal | None:
    return None if micrograms is None else _grams(micrograms)


def _named_keys(document: PermitDocument) -> set[DocumentKey]:
    """The documents this one, and an amendment's replacement, names."""
    parts = (document, document.replacement) if document.replacement else (document,)
    refs = (ref for p in parts for ref in (p.import_authorization_ref, p.export_authorization_ref, p.subject_ref))
    return {ref.key for ref in refs if ref is not None} - {document.key}


def _primary_reference(document: PermitDocument) -> DocumentKey | None:
    """The document this one draws on or is about: the subject of an amendment, cancellation or answer, the
    export of an execution or endorsement, the import of an export."""
    for ref in (document.subject_ref, document.export_authorization_ref, document.import_authorization_ref):
        if ref is not None:
            return ref.key
    return None


def _party_json(party: Party | None) -> dict[str, Any] | None:
    if party is None:
        return None
    return {"name": party.name, "country": party.country, "licence": party.licence, "category": party.category}


def _party(data: Mapping[str, Any] | None) -> Party | None:
    return Party(**data) if data else None


def _reference_json(ref: DocumentReference) -> dict[str, str]:
    return {
        "document_type": ref.document_type.value,
        "number": ref.number,
        "issue_date": ref.issue_date.isoformat(),
        "issuing_country": ref.issuing_country,
        "issuing_authority": ref.issuing_authority,
    }


def _cited(cited: Mapping[str, Any], role: str) -> DocumentReference:
    data = cited[role]
    return DocumentReference(
        document_type=DocumentType(data["document_type"]),
        number=data["number"],
        issue_date=date.fromisoformat(data["issue_date"]),
        issuing_country=data["issuing_country"],
        issuing_authority=data["issuing_authority"],
    )


def _cited_or_none(cited: Mapping[str, Any], role: str) -> DocumentReference | None:
    return _cited(cited, role) if role in cited else None


_ROLES = ("import", "export", "subject")


def _content_values(document: PermitDocument) -> dict[str, Any]:
    """The columns an amendment replaces."""
    refs = (document.import_authorization_ref, document.export_authorization_ref, document.subject_ref)
    return {
        "version": document.version,
        "issue_date": document.issue_date,
        "issuing_authority": document.issuing_authority,
        "importing_country": document.importing_country,
        "exporting_country": document.exporting_country,
        "valid_from": document.valid_from,
        "valid_until": document.valid_until,
        "importer": _party_json(document.importer),
        "exporter": _party_json(document.exporter),
        "multiple_consignments": document.multiple_consignments_allowed,
        "estimate_year": document.estimate_year or document.issue_date.year,
        "emergency_reason": document.emergency_reason,
        "effective_date": document.effective_date,
        "cited": {role: _reference_json(ref) for role, ref in zip(_ROLES, refs, strict=True) if ref},
    }


def _document_values(
    document: PermitDocument, direction: Direction, message_id: str, now: datetime
) -> dict[str, Any]:
    return _content_values(document) | {
        "document_type": document.document_type.value,
        "issuing_country": document.issuing_country,
        "number": document.number,
        "status": _S.ISSUED,
        "content_sha256": document.content_sha256,
        "direction": direction.value,
        "message_id": message_id,
        "created_at": now,
        "updated_at": now,
    }


def _line_values(document_pk: int, document_type: DocumentType, line: PermitLine) -> dict[str, Any]:
    base = _micrograms(line.base_quantity_grams, document_type)
    return {
        "document_pk": document_pk,
        "line_number": line.line_number,
        "substance_id": line.substance_id,
        "inn": line.inn,
        "pharmaceutical_form": line.pharmaceutical_form,
        "preparation_name": line.preparation_name,
        "re_export": line.re_export,
        "gross_quantity": _exact_text(line.gross_quantity),
        "unit_code": line.unit_code,
        "base_micrograms": base,
        "reference_line_number": line.reference_line_number,
        "remaining_micrograms": base if document_type is IA else None,
        "drawn_micrograms": 0 if document_type is EA and base is not None else None,
    }


async def _lines_by_document(conn: AsyncConnection, pks: Sequence[int]) -> dict[int, list[Any]]:
    if not pks:
        return {}
    found: dict[int, list[Any]] = defaultdict(list)
    for line in await conn.execute(_LINES_OF_DOCUMENTS, {"pks": list(pks)}):
        found[line.document_pk].append(line)
    return found


def _line_record(line: Any) -> PermitLineRecord:
    return PermitLineRecord(
        line_number=line.line_number,
        substance_id=line.substance_id,
        base_grams=_optional_grams(line.base_micrograms),
        reference_line_number=line.reference_line_number,
        remaining_grams=_optional_grams(line.remaining_micrograms),
        drawn_grams=_optional_grams(line.drawn_micrograms),
    )


def _permit_line(line: Any) -> PermitLine:
    return PermitLine(
        line_number=line.line_number,
        substance_id=line.substance_id,
        inn=line.inn,
        base_quantity_grams=_optional_grams(line.base_micrograms),
        gross_quantity=Decimal(line.gross_quantity),
        unit_code=line.unit_code,
        reference_line_number=line.reference_line_number,
        pharmaceutical_form=line.pharmaceutical_form,
        preparation_name=line.preparation_name,
        re_export=line.re_export,
    )


def _record(row: Any, lines: Sequence[Any]) -> PermitRecord:
    primary = next((_cited(row.cited, role) for role in reversed(_ROLES) if role in row.cited), None)
    held = row.status in _ENDORSED and row.cancelled_on is not None
    return PermitRecord(
        key=_key(row),
        version=row.version,
        status=PermitState(row.status),
        issue_date=row.issue_date,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        importing_country=row.importing_country,
        exporting_country=row.exporting_country,
        importer=_party(row.importer),
        exporter=_party(row.exporter),
        refers_to=primary.key if primary else None,
        cancelled_on=None if held else row.cancelled_on,
        content_sha256=row.content_sha256,
        direction=Direction(row.direction),
        message_id=row.message_id,
        lines=tuple(_line_record(line) for line in lines),
        created_at=as_utc(row.created_at) or row.created_at,
        updated_at=as_utc(row.updated_at) or row.updated_at,
        cancellation_held=row.cancelled_on if held else None,
    )


def _document(row: Any, lines: Sequence[Any]) -> PermitDocument:
    """The current version of a kept document, as validation made it (less its findings)."""
    return PermitDocument(
        document_type=DocumentType(row.document_type),
        number=row.number,
        issue_date=row.issue_date,
        issuing_country=row.issuing_country,
        issuing_authority=row.issuing_authority,
        importing_country=row.importing_country,
        exporting_country=row.exporting_country,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        import_authorization_ref=_cited_or_none(row.cited, "import"),
        export_authorization_ref=_cited_or_none(row.cited, "export"),
        subject_ref=_cited_or_none(row.cited, "subject"),
        lines=tuple(_permit_line(line) for line in lines),
        findings=(),
        importer=_party(row.importer),
        exporter=_party(row.exporter),
        version=row.version,
        multiple_consignments_allowed=row.multiple_consignments,
        estimate_year=row.estimate_year,
        emergency_reason=row.emergency_reason,
        effective_date=row.effective_date,
        content_sha256=row.content_sha256,
    )


def _known(row: Any, lines: Sequence[Any], chained_on: date | None = None) -> KnownDocument:
    return KnownDocument(
        pk=row.id,
        document=_document(row, lines),
        status=PermitState(row.status),
        cancelled_on=row.cancelled_on,
        content_sha256=row.content_sha256,
        refers_to=row.refers_to,
        lines=tuple(_line_record(line) for line in lines),
        direction=Direction(row.direction),
        message_id=row.message_id,
        chained_on=chained_on,
    )
