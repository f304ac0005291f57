"""Every outcome of a send is fenced on its claim's number (``claim_seq``), on SQLite and PostgreSQL: an operator's
retry starts the message's attempts again from 0, so fenced on attempts an old send whose lease ran out (attempt
1) matched the first claim after the retry (attempt 1 too), its outcome landed on that claim while it was still
posting, and another node then claimed and posted the message beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.outbound.dispatch import Attempt, Dispatcher
from gateway.outbound.retry import retry_failed
from gateway.profiles.model import ReceptionAwareness
from gateway.store import MessageRecord, MessageStore, State, create_engine, upgrade
from tests.conftest import NOW
from tests.store.helpers import new_message

LEASE = timedelta(seconds=600)
RETRYABLE = Attempt(receipt=None, retryable=True, reason="HTTP 503 (test)", http_status=503, latency_ms=1.0)
FINAL = Attempt(receipt=None, retryable=False, reason="signed EBMS:0010 (test)", http_status=200, latency_ms=1.0)


class _Partners:
    """One partner, always usable; the POST is the test's, so only what the retry rules read is in it."""

    def __init__(self) -> None:
        self.partner = SimpleNamespace(
            profile=SimpleNamespace(
                id="ch-swissmedic",
                enabled=True,
                reception_awareness=ReceptionAwareness(retries=5),
                endpoint_url="http://127.0.0.1:9/as4",
            ),
            policy=SimpleNamespace(clock_skew=timedelta(minutes=5)),
        )
        self.registry = {"ch-swissmedic": self.partner}
        self.max_age = None

    def get(self, partner_id: str) -> Any:
        return self.partner

    def usable(self, partner: Any, now: Any) -> None:
        return None

    def __iter__(self) -> Any:
        return iter([self.partner])


class _HeldPosts:
    """The dispatcher's POST: each waits until the test answers it, so sends overlap as they would on a network."""

    def __init__(self) -> None:
        self.started: list[int] = []  # the attempts posted, in order
        self.open = 0
        self.most_open = 0
        self._answers: list[asyncio.Future[Attempt]] = []

    async def __call__(self, record: MessageRecord, partner: Any) -> Attempt:
        answer: asyncio.Future[Attempt] = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        self.started.append(record.attempts)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            return await answer
        finally:
            self.open -= 1

    def answer(self, n: int, attempt: Attempt) -> None:
        self._answers[n].set_result(attempt)


@pytest.fixture
async def node_stores(store_url: str) -> AsyncIterator[tuple[MessageStore, MessageStore, FixedClock]]:
    """Two nodes' stores on one database, on one fixed clock."""
    clock = FixedClock(NOW)
    first, second = create_engine(store_url), create_engine(store_url)
    await upgrade(first)
    try:
        yield MessageStore(first, clock), MessageStore(second, clock), clock
    finally:
        await first.dispose()
        await second.dispose()


def _dispatcher(store: MessageStore, clock: FixedClock, node_id: str, posts: _HeldPosts) -> Dispatcher:
    dispatcher = Dispatcher(
        store=store,
        payloads=None,  # type: ignore[arg-type]
        partners=_Partners(),  # type: ignore[arg-type]
        clock=clock,
        session=None,  # type: ignore[arg-type]
        node_id=node_id,
        http_timeout=1.0,
        lease=LEASE,
        per_partner=4,
        max_in_flight=4,
    )
    dispatcher._post = posts  # type: ignore[method-assign]
    return dispatcher


async def _posting(posts: _HeldPosts, count: int) -> None:
    for _ in range(200):
        if len(posts.started) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} POSTs did not start: {posts.started}")


async def test_an_outcome_from_before_an_operator_retry_does_not_land_on_the_next_claim(
    node_stores: tuple[MessageStore, MessageStore, FixedClock],
) -> None:
    store_a, store_b, clock = node_stores
    posts = _HeldPosts()
    node_a = _dispatcher(store_a, clock, "node-a", posts)
    node_b = _dispatcher(store_b, clock, "node-b", posts)
    record, _ = await store_a.add(replace(new_message("m1@be"), expires_at=NOW + timedelta(hours=72)))

    # node A claims and posts; its POST stalls past its lease, which the lease recovery takes back
    (first,) = await store_a.claim_due("node-a", limit=1, lease=LEASE)
    stale = asyncio.create_task(node_a._send(first))
    await _posting(posts, 1)
    clock.advance(LEASE + timedelta(seconds=100))
    assert await store_b.recover_leases() == 1
    # node B sends it (attempt 2) and the partner refuses it for good; an operator retries it (attempts: 0)
    (second,) = await store_b.claim_due("node-b", limit=1, lease=LEASE)
    refused = asyncio.create_task(node_b._send(second))
    await _posting(posts, 2)
    posts.answer(1, FINAL)
    await refused
    assert (await store_b.get(record.id)).state is State.FAILED
    partners: Any = _Partners()
    retried = await retry_failed(store_b, partners, clock, "m1@be", reason="the partner fixed its profile")
    assert (retried.state, retried.attempts) == (State.RETRY_WAIT, 0)
    # node B claims the new round's first attempt (attempt 1, as node A's was) and is posting it
    (third,) = await store_b.claim_due("node-b", limit=1, lease=LEASE)
    assert third.attempts == first.attempts == 1
    current = asyncio.create_task(node_b._send(third))
    await _posting(posts, 3)

    posts.answer(0, RETRYABLE)  # node A's stale POST ends at last
    await stale

    now = await store_b.get(record.id)
    assert (now.state, now.lease_owner, now.last_error) == (State.SENDING, "node-b", None), "stale outcome applied"
    clock.advance(timedelta(minutes=5))  # past any retry delay the stale outcome would have set
    assert await store_a.claim_due("node-a", limit=1, lease=LEASE) == [], "claimed beside the POST in flight"
    assert await store_b.renew_lease(record.id, "node-b", claimed=third.claim_seq, lease=LEASE)
    assert not await store_a.renew_lease(record.id, "node-a", claimed=first.claim_seq, lease=LEASE)
    posts.answer(2, RETRYABLE)
    await current

    assert posts.most_open == 2, "only node A's stale POST and node B's current one were ever open together"
    assert posts.started == [1, 2, 1]
    events = await store_b.events(record.id)
    stale_noted = [e for e in events if e.kind == "outcome_not_applied"]
    assert len(stale_noted) == 1
    reason = stale_noted[0].detail["reason"]
    assert "left the claim of attempt 1" in reason and "SENDING at attempt 4" in reason, reason
    assert "operator retries included (it is at attempt 1 of its current round)" in reason, reason
    final = await store_b.get(record.id)
    assert (final.state, final.attempts, final.claim_seq, final.last_error) == (
        State.RETRY_WAIT,
        1,
        4,  # three claims, and the operator's retry, which starts a new round
        "HTTP 503 (test)",
    )
