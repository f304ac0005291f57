"""A FAILED message superseded by one built anew is never sent again, on SQLite and PostgreSQL: the supersede
records the successor on the row in its conditional update, and sending the message again (an operator's retry,
a resubmission) requires none, so a retry that read "not superseded" just before a rebuild committed is refused
by the database, naming the successor, instead of sending the document under two MessageIds."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.outbound.retry import NotRetryable, retry_failed
from gateway.profiles.model import ReceptionAwareness
from gateway.store import Direction, Event, IllegalTransition, MessageRecord, MessageStore, State
from tests.conftest import NOW
from tests.store.helpers import new_message

WHY = {"reason": "rest retry", "because": "the To party changed"}


class _Partners:
    def __init__(self) -> None:
        profile = SimpleNamespace(id="ch-swissmedic", reception_awareness=ReceptionAwareness(retries=5))
        self.partner = SimpleNamespace(profile=profile, policy=SimpleNamespace(clock_skew=timedelta(minutes=5)))
        self.registry = {"ch-swissmedic": self.partner}
        self.max_age = None

    def get(self, partner_id: str) -> Any:
        return self.partner


async def _failed(store: MessageStore, message_id: str) -> MessageRecord:
    await store.add(replace(new_message(message_id), expires_at=NOW + timedelta(hours=72)))
    (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
    return await store.move(claimed.id, Event.FINAL_ERROR, last_error="EBMS:0010", lease_owner=None)


@pytest.mark.parametrize("event", [Event.OPERATOR_RETRY, Event.RESUBMITTED])
async def test_a_retry_racing_a_rebuild_is_refused_naming_the_successor(
    store: MessageStore, clock: FixedClock, event: Event
) -> None:
    old = await _failed(store, "old@be")
    looked = store.find

    async def rebuilt_after_the_look(direction: Direction, message_id: str) -> MessageRecord | None:
        found = await looked(direction, message_id)  # the retry reads "not superseded" ...
        if message_id == "old@be" and await looked(Direction.OUTBOUND, "new@be") is None:
            # ... and another node's retry builds it anew before this one moves it
            assert await store.supersede(old, new_message("new@be"), detail={}, why=WHY) is not None
        return found

    store.find = rebuilt_after_the_look  # type: ignore[method-assign,assignment]
    partners: Any = _Partners()
    with pytest.raises(
        NotRetryable, match=r"'old@be' was superseded by message 'new@be'.* retry 'new@be' instead"
    ):
        await retry_failed(store, partners, clock, "old@be", reason="cli retry", event=event)
    store.find = looked  # type: ignore[method-assign]

    after = await store.get(old.id)
    assert (after.state, after.superseded_by, after.attempts) == (State.FAILED, "new@be", 1)
    kinds = [e.kind for e in await store.events(old.id)]
    assert kinds[-1] == "superseded" and event.value not in kinds
    claimable = await store.claim_due("node", limit=10, lease=timedelta(minutes=1))
    assert [r.message_id for r in claimable] == ["new@be"], "the document goes out under one MessageId"


async def test_a_superseded_message_is_not_sent_again_nor_superseded_by_another(store: MessageStore) -> None:
    old = await _failed(store, "old@be")
    kept = await store.supersede(old, new_message("new@be"), detail={}, why=WHY)
    assert kept is not None and kept[1]

    for event in (Event.OPERATOR_RETRY, Event.RESUBMITTED):
        with pytest.raises(IllegalTransition, match="superseded by message 'new@be'"):
            await store.move(old.id, event, attempts=0, next_attempt_at=NOW, lease_owner=None)
    # a rebuild racing the first builds the same MessageId: it finds it stored; another MessageId is refused
    again = await store.supersede(old, new_message("new@be"), detail={}, why=WHY)
    assert again is not None and not again[1] and again[0].id == kept[0].id
    assert await store.supersede(old, new_message("other@be"), detail={}, why=WHY) is None
    assert await store.find(Direction.OUTBOUND, "other@be") is None
    assert (await store.get(old.id)).state is State.FAILED
