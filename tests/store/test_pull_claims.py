"""Claims for One-Way/Pull: per partner, never by the push loop, and never one message to two pulls at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

from sqlalchemy import select

from gateway.clock import FixedClock
from gateway.store import Direction, MessageRecord, MessageStore, State, create_engine
from gateway.store.schema import pull_requests_answered
from tests.conftest import NOW
from tests.store.helpers import new_message

LEASE = timedelta(minutes=1)


async def test_a_claim_for_one_partner_takes_only_its_messages(store: MessageStore) -> None:
    for n in range(3):
        await store.add(new_message(f"a{n}@be", partner_id="ch-a", to_party="CH-A"))
        await store.add(new_message(f"b{n}@be", partner_id="ch-b", to_party="CH-B"))
    pulled = await store.claim_due("node", limit=1, lease=LEASE, partners=["ch-a"])
    assert [(r.message_id, r.state, r.attempts) for r in pulled] == [("a0@be", State.SENDING, 1)]
    pushed = await store.claim_due("node", limit=10, lease=LEASE, exclude_partners=["ch-a"])
    assert sorted(r.message_id for r in pushed) == ["b0@be", "b1@be", "b2@be"]
    assert await store.claim_due("node", limit=10, lease=LEASE, exclude_partners=["ch-a"]) == []
    assert await store.claim_due("node", limit=10, lease=LEASE, partners=[]) == []
    rest = await store.claim_due("node", limit=10, lease=LEASE, partners=["ch-a"])
    assert [r.message_id for r in rest] == ["a1@be", "a2@be"]


async def test_two_nodes_answering_concurrent_pulls_never_hand_out_one_message_twice(
    store: MessageStore, store_url: str, clock: FixedClock
) -> None:
    messages = 30
    for n in range(messages):
        await store.add(new_message(f"m{n}@be", partner_id="ch-a", to_party="CH-A"))
    await store.add(new_message("other@be", partner_id="ch-b", to_party="CH-B"))
    other_node = MessageStore(create_engine(store_url), clock)
    try:

        async def pull(node: MessageStore, name: str) -> list[MessageRecord]:
            return await node.claim_due(name, limit=1, lease=LEASE, partners=["ch-a"])

        rounds = [pull(store if n % 2 else other_node, f"node-{n % 2}") for n in range(messages + 10)]
        claimed = [record for batch in await asyncio.gather(*rounds) for record in batch]
    finally:
        await other_node.close()
    ids = [r.message_id for r in claimed]
    assert len(ids) == len(set(ids)) == messages
    assert {r.lease_owner for r in claimed} == {"node-0", "node-1"}
    assert all(r.lease_expires_at == NOW + LEASE for r in claimed)
    assert (await store.find(Direction.OUTBOUND, "other@be")).state is State.SUBMITTED  # type: ignore[union-attr]


async def test_a_pull_request_is_answered_once_by_all_nodes_and_forgotten_once_stale(
    store: MessageStore, store_url: str, clock: FixedClock
) -> None:
    """A PullRequest replayed to another node of the same store is not answered again (each node used to
    remember only its own), and two nodes receiving it at once answer it once between them."""
    other_node = MessageStore(create_engine(store_url), clock)
    fresh_until = NOW + timedelta(minutes=10)
    try:
        answers = await asyncio.gather(
            *(
                (store if n % 2 else other_node).first_answer("pull-1@ch", "ch-a", fresh_until=fresh_until)
                for n in range(8)
            )
        )
        assert sorted(answers) == [False] * 7 + [True]
        assert await other_node.first_answer("pull-2@ch", "ch-a", fresh_until=fresh_until)
        clock.advance(timedelta(minutes=10, seconds=1))
        # the next answer forgets what is stale by now, so the table holds only what could still be replayed
        assert await store.first_answer("pull-3@ch", "ch-a", fresh_until=clock.now() + timedelta(minutes=10))
        async with store.engine.connect() as conn:
            kept = (await conn.execute(select(pull_requests_answered.c.message_id))).scalars().all()
        assert kept == ["pull-3@ch"]
        # written in a partner's own offset, it is kept until the same instant on both databases
        offset = timezone(timedelta(hours=-5))
        assert await store.first_answer("pull-4@ch", "ch-a", fresh_until=(clock.now() + LEASE).astimezone(offset))
        assert await store.first_answer("pull-5@ch", "ch-a", fresh_until=clock.now() + LEASE)
        assert not await other_node.first_answer("pull-4@ch", "ch-a", fresh_until=clock.now() + LEASE)
    finally:
        await other_node.close()
