"""An operator's retry starts a new round of claims: the late outcome of a claim from before it is refused, on
SQLite and PostgreSQL. The retry left ``claim_seq`` as the last claim had it, so that claim's GIVE_UP (legal from
RETRY_WAIT) still matched the fence and turned the retried message back to FAILED with the old round's reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.clock import FixedClock
from gateway.store import Event, MessageStore, State
from gateway.store.lifecycle import StaleClaim
from tests.conftest import NOW
from tests.store.helpers import new_message


@pytest.mark.parametrize("event", [Event.OPERATOR_RETRY, Event.RESUBMITTED])
async def test_a_claim_from_before_a_retry_cannot_settle_the_retried_message(
    store: MessageStore, clock: FixedClock, event: Event
) -> None:
    await store.add(replace(new_message("m@be"), expires_at=NOW + timedelta(hours=72)))
    [claimed] = await store.claim_due("node-a", limit=1, lease=timedelta(minutes=1))  # node A posts, and hangs
    clock.advance(timedelta(minutes=2))
    assert await store.recover_leases() == 1
    await store.move(claimed.id, Event.GIVE_UP, last_error="time to live ran out while held", lease_owner=None)
    retried = await store.move(
        claimed.id, event, attempts=0, next_attempt_at=clock.now(), last_error=None, lease_owner=None
    )
    assert retried.claim_seq == claimed.claim_seq + 1

    with pytest.raises(StaleClaim):  # node A's attempt ends at last
        await store.move(
            claimed.id, Event.GIVE_UP, last_error="no receipt (old round)", lease_owner=None, claimed=claimed.claim_seq
        )

    now = await store.get(claimed.id)
    assert now.state is State.RETRY_WAIT and now.last_error is None
    [next_claim] = await store.claim_due("node-b", limit=1, lease=timedelta(minutes=1))
    assert next_claim.claim_seq == claimed.claim_seq + 2
