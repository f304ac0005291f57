"""Group commit on SQLite and PostgreSQL: moves requested together are committed in one transaction, each
caller gets its own answer (an illegal move fails alone), and a failed transaction keeps none of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import StoreError
from gateway.store import Event, Evidence, IllegalTransition, MessageStore, State
from gateway.store.group import GroupCommit
from gateway.store.schema import evidence
from tests.conftest import NOW
from tests.store.helpers import new_message


async def _sending(store: MessageStore, count: int) -> list[int]:
    for n in range(count):
        await store.add(new_message(f"m{n}@be"))
    claimed = await store.claim_due("node-a", limit=count, lease=timedelta(minutes=1))
    return [record.id for record in claimed]


async def test_concurrent_moves_commit_together_and_an_illegal_one_fails_alone(store: MessageStore) -> None:
    pks = await _sending(store, 5)
    commits = 0

    def count(*_: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(store.engine.sync_engine, "commit", count)
    receipt = Evidence(kind="receipt", content_type="application/xml", body=b"<r/>")
    moves = [store.move(pk, Event.RECEIPT_OK, detail={"n": n}, evidence=receipt) for n, pk in enumerate(pks)]
    moves.append(store.move(pks[0], Event.SEND_FAILED))  # after its RECEIPT_OK in the same batch: illegal
    moves.append(store.move(999_999, Event.RECEIPT_OK))  # no such message
    outcomes = await asyncio.gather(*moves, return_exceptions=True)
    event.remove(store.engine.sync_engine, "commit", count)

    assert [o.state for o in outcomes[:5] if not isinstance(o, BaseException)] == [State.ACKNOWLEDGED] * 5
    assert isinstance(outcomes[5], IllegalTransition) and "ACKNOWLEDGED" in str(outcomes[5])
    assert isinstance(outcomes[6], StoreError) and "999999" in str(outcomes[6])
    assert commits <= 2  # the first move alone, then everyone who queued behind it
    for n, pk in enumerate(pks):
        events = await store.events(pk)
        assert [(e.kind, e.detail) for e in events][-1] == ("receipt_ok", {"n": n})
        assert await store.get_evidence(pk, "receipt") == ("application/xml", b"<r/>")


async def test_a_failed_transaction_fails_and_keeps_its_whole_batch(store: MessageStore) -> None:
    async def work(conn: AsyncConnection, requests: Sequence[int]) -> list[int | Exception]:
        values = {"message_pk": requests[0], "kind": "x", "content_type": "t", "body": b"", "created_at": NOW}
        await conn.execute(evidence.insert().values(values))
        raise RuntimeError("connection lost")

    group: GroupCommit[int, int] = GroupCommit(store.engine, work)
    pks = await _sending(store, 2)
    outcomes = await asyncio.gather(*(group.submit(pk) for pk in pks), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(evidence))).scalar() == 0


async def test_requests_beyond_the_batch_size_go_in_the_next_transaction(store: MessageStore) -> None:
    batches: list[list[int]] = []

    async def work(conn: AsyncConnection, requests: Sequence[int]) -> list[int | Exception]:
        batches.append(list(requests))
        return [r * 2 for r in requests]

    group: GroupCommit[int, int] = GroupCommit(store.engine, work, max_batch=3)
    assert await asyncio.gather(*(group.submit(n) for n in range(7))) == [n * 2 for n in range(7)]
    assert [n for batch in batches for n in batch] == list(range(7))
    assert all(len(batch) <= 3 for batch in batches)


async def test_a_cancelled_caller_does_not_undo_its_move(store: MessageStore) -> None:
    (pk,) = await _sending(store, 1)
    waiting = asyncio.create_task(store.move(pk, Event.RECEIPT_OK))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(100):
        if (await store.get(pk)).state is State.ACKNOWLEDGED:
            break
        await asyncio.sleep(0.01)
    assert (await store.get(pk)).state is State.ACKNOWLEDGED
