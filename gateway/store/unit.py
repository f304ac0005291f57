"""A unit of work: the permit registry's row and the message's row, its first events and its evidence, in one
transaction. Both are kept or neither is, so no crash can leave a permit recorded without its message (or the
reverse), and a submission or reception costs one commit instead of two. The database still enforces what it
enforces in each store alone: unique keys by insert-or-nothing, quantities and state moves by conditional
UPDATE; a refusal rolls the whole unit back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.documents import DocumentKey, PermitDocument
from gateway.store.lifecycle import Direction, Event
from gateway.store.permits import PermitRegistry, Recheck, document_name
from gateway.store.store import Evidence, MessageRecord, MessageStore, NewMessage


class UnitOfWork:
    """The writes of one submission or reception, on one transaction; see ``unit_of_work``."""

    def __init__(self, conn: AsyncConnection, messages: MessageStore, permits: PermitRegistry) -> None:
        self._conn = conn
        self._messages = messages
        self._permits = permits
        self.cancelled: tuple[DocumentKey, ...] = ()
        """The due cancellations recording permits applied first (the daily job's work): once the unit is
        committed, its caller logs them."""

    async def record_permit(
        self, document: PermitDocument, *, direction: Direction, message_id: str, recheck: Recheck | None = None
    ) -> bool:
        """``PermitRegistry.record`` in this unit; True when newly kept, False when the same document was. With
        ``recheck`` (how the document was checked) its rules run again under the registry's locks, so that a
        document recorded meanwhile by another request or node cannot make it break them."""
        recorded = await self._permits.record_on(
            self._conn, document, direction=direction, message_id=message_id, recheck=recheck
        )
        self.cancelled += recorded.cancelled
        return recorded.created

    def cancellations_said(self, recorded: PermitDocument, message_id: str) -> dict[str, Any]:
        """What its caller logs of ``cancelled`` once the unit is committed: the daily job's fields, and the
        document and message whose recording applied them."""
        names = [document_name(key) for key in self.cancelled]
        return {
            "documents": len(names),
            "cancelled": names,
            "recorded": document_name(recorded.key),
            "message_id": message_id,
        }

    async def first_carrier(self, document: PermitDocument) -> str:
        """The MessageId that carried ``document`` when it was first kept (by this unit or before it)."""
        return await self._permits.first_carrier_on(self._conn, document.key)

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
        """``MessageStore.add`` in this unit."""
        return await self._messages.add_on(
            self._conn, new, detail=detail, then=then, then_detail=then_detail, evidence=evidence, **updates
        )


@asynccontextmanager
async def unit_of_work(messages: MessageStore, permits: PermitRegistry) -> AsyncIterator[UnitOfWork]:
    """One transaction over both stores (which must share the engine): committed when the block ends, rolled
    back when it raises."""
    if permits.engine is not messages.engine:
        raise ValueError("a unit of work needs the message store and the permit registry on one engine")
    async with messages.engine.begin() as conn:
        yield UnitOfWork(conn, messages, permits)
