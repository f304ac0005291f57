"""The retention purge bounds its batches on SQLite (review fix): a batch's delete holds the node's one SQLite
connection, so ``[retention] batch_size`` 5,000 deletes in transactions of at most ``SQLITE_PURGE_BATCH``
messages there, while PostgreSQL, where other work goes on beside the delete, keeps the configured size."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from gateway.clock import FixedClock
from gateway.store import MessageStore, PayloadStore, State
from gateway.store.retention import purge
from gateway.store.schema import messages
from gateway.store.store import SQLITE_PURGE_BATCH

MESSAGES = 1200
BATCH_SIZE = 5000


def _row(n: int, clock: FixedClock) -> dict[str, object]:
    old = clock.now() - timedelta(days=800)
    return {
        "direction": "out",
        "message_id": f"m-{n}@be-famhp.test",
        "conversation_id": "c",
        "partner_id": "ch-swissmedic",
        "from_party": "BE-FAMHP",
        "to_party": "CH-SWISSMEDIC",
        "service": "s",
        "action": "a",
        "payload_sha256": f"{n:064x}",
        "payload_mime_type": "application/xml",
        "state": State.ACKNOWLEDGED.value,
        "attempts": 1,
        "created_at": old,
        "updated_at": old,
    }


async def test_a_purge_deletes_in_bounded_transactions_on_sqlite_and_in_the_configured_size_on_postgresql(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(insert(messages), [_row(n, clock) for n in range(MESSAGES)])
    deletes: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "DELETE FROM messages" in statement:
            deletes.append(statement)

    sizes: list[int] = []
    original = store.purge_batch

    async def counting(older_than, *, limit):  # type: ignore[no-untyped-def]
        batch = await original(older_than, limit=limit)
        sizes.append(batch.messages)
        return batch

    store.purge_batch = counting  # type: ignore[method-assign]
    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        report = await purge(
            store,
            PayloadStore(tmp_path / "payloads"),
            {State.ACKNOWLEDGED: timedelta(days=365)},
            now=clock.now(),
            batch_size=BATCH_SIZE,
        )
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)

    assert report.by_state == {State.ACKNOWLEDGED: MESSAGES}
    if store.engine.dialect.name == "sqlite":
        assert sizes == [SQLITE_PURGE_BATCH, SQLITE_PURGE_BATCH, MESSAGES - 2 * SQLITE_PURGE_BATCH], sizes
    else:
        assert sizes == [MESSAGES], sizes
    assert len(deletes) == len(sizes), deletes  # one DELETE, in its own transaction, per batch
