"""A FAILED message superseded by one built anew hands its permit document over, on SQLite and PostgreSQL: the
registry names the new message as the document's carrier, so once retention purges the FAILED message (kept
``failed_days``, fewer than the ``acknowledged_days`` its successor is kept) the document still leads to the
message that delivered it."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import update

from gateway.clock import FixedClock
from gateway.documents import ControlTables, DocumentKey, DocumentType, PermitDocument, validate_document
from gateway.store import Direction, Event, MessageRecord, MessageStore, PayloadStore, PermitRegistry, State
from gateway.store.migrate import downgrade, upgrade
from gateway.store.retention import purge
from gateway.store.schema import permit_documents
from tests.store.helpers import new_message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
BE_IA = DocumentKey(DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001")
CH_EA = DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", "CH-EA-2026-0001")
WHY = {"reason": "profile fixed", "because": "the To party changed"}


@cache
def _example(name: str) -> PermitDocument:
    return validate_document((EXAMPLES / "valid" / name).read_bytes(), as_of=AS_OF)


@pytest.fixture
def registry(store: MessageStore, clock: FixedClock) -> PermitRegistry:
    return PermitRegistry(store.engine, clock, ControlTables.load(EXAMPLES / "context"))


async def _failed(store: MessageStore, message_id: str) -> MessageRecord:
    await store.add(new_message(message_id))
    (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
    return await store.move(claimed.id, Event.GIVE_UP, detail={"reason": "EBMS:0010"}, last_error="EBMS:0010")


async def _carrier(registry: PermitRegistry, key: DocumentKey) -> str:
    detail = await registry.get(key)
    assert detail is not None, key
    return detail.permit.message_id


async def test_the_successor_carries_the_document_and_survives_the_purge_of_the_failed_one(
    store: MessageStore, registry: PermitRegistry, clock: FixedClock, tmp_path: Path
) -> None:
    await registry.record(_example("BE-IA-2026-0001.xml"), direction=Direction.OUTBOUND, message_id="old@be")
    # a partner's document that came in under the same MessageId (a partner's MessageIds are its own): untouched
    await registry.record(_example("CH-EA-2026-0001.xml"), direction=Direction.INBOUND, message_id="old@be")
    old = await _failed(store, "old@be")

    kept = await store.supersede(old, new_message("new@be"), detail={}, why=WHY)

    assert kept is not None and kept[1]
    assert await _carrier(registry, BE_IA) == "new@be"
    assert await _carrier(registry, CH_EA) == "old@be"
    # the old message is purged (FAILED after 30 days), the new one (still on its way) kept: the link holds
    keep = {State.FAILED: timedelta(days=30), State.ACKNOWLEDGED: timedelta(days=365)}
    report = await purge(store, PayloadStore(tmp_path / "payloads"), keep, now=clock.now() + timedelta(days=31))
    assert report.by_state == {State.FAILED: 1}
    assert await store.find(Direction.OUTBOUND, "old@be") is None
    found = await store.find(Direction.OUTBOUND, await _carrier(registry, BE_IA))
    assert found is not None and found.message_id == "new@be"


async def test_a_supersede_refused_re_points_nothing(store: MessageStore, registry: PermitRegistry) -> None:
    """The old message was sent again meanwhile (no longer FAILED): nothing is written, the link stays."""
    await registry.record(_example("BE-IA-2026-0001.xml"), direction=Direction.OUTBOUND, message_id="old@be")
    old = await _failed(store, "old@be")
    await store.move(old.id, Event.OPERATOR_RETRY, detail={"reason": "sent again"}, attempts=0)

    assert await store.supersede(old, new_message("new@be"), detail={}, why=WHY) is None
    assert await _carrier(registry, BE_IA) == "old@be"
    assert await store.find(Direction.OUTBOUND, "new@be") is None


async def test_a_chain_of_successors_leads_to_the_last(store: MessageStore, registry: PermitRegistry) -> None:
    await registry.record(_example("BE-IA-2026-0001.xml"), direction=Direction.OUTBOUND, message_id="first@be")
    first = await _failed(store, "first@be")
    kept = await store.supersede(first, new_message("second@be"), detail={}, why=WHY)
    assert kept is not None
    (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
    second = await store.move(claimed.id, Event.GIVE_UP, detail={"reason": "EBMS:0010"}, last_error="EBMS:0010")
    assert second.message_id == "second@be"

    await store.supersede(second, new_message("third@be"), detail={}, why=WHY)

    assert await _carrier(registry, BE_IA) == "third@be"


async def test_0009_hands_documents_superseded_before_it_to_the_last_successor(
    store: MessageStore, registry: PermitRegistry
) -> None:
    """Stores that superseded messages before this fix named the FAILED message: 0009 follows the chain."""
    await test_a_chain_of_successors_leads_to_the_last(store, registry)
    await registry.record(_example("CH-EA-2026-0001.xml"), direction=Direction.INBOUND, message_id="first@be")
    async with store.engine.begin() as conn:  # as the store kept them before this fix
        await conn.execute(update(permit_documents).values(message_id="first@be"))

    await downgrade(store.engine, "0008")
    await upgrade(store.engine)

    assert await _carrier(registry, BE_IA) == "third@be"
    assert await _carrier(registry, CH_EA) == "first@be", "a partner's document under that MessageId: untouched"
