"""The partners with outbound messages not yet final, on SQLite and PostgreSQL: what the node counts failures
for from its start, before its first send sweep can fail one."""

from __future__ import annotations

from datetime import timedelta

from gateway.store import Direction, Event, MessageStore
from tests.store.helpers import new_message


async def test_unfinished_outbound_partners_name_each_partner_with_a_message_that_may_still_fail(
    store: MessageStore,
) -> None:
    await store.add(new_message("submitted@be", partner_id="fr-ansm"))
    await store.add(new_message("sending@be", partner_id="de-bfarm"))
    [sending] = await store.claim_due("a", limit=1, lease=timedelta(minutes=1), partners=["de-bfarm"])
    await store.add(new_message("retry@be", partner_id="ch-swissmedic"))
    [retried] = await store.claim_due("a", limit=1, lease=timedelta(minutes=1), partners=["ch-swissmedic"])
    await store.move(retried.id, Event.SEND_FAILED, lease_owner=None)
    await store.add(new_message("second@be", partner_id="ch-swissmedic"))  # named once
    await store.add(new_message("failed@be", partner_id="it-aifa"), then=Event.GIVE_UP)
    acknowledged, _ = await store.add(new_message("acknowledged@be", partner_id="nl-igj"))
    await store.claim_due("a", limit=1, lease=timedelta(minutes=1), partners=["nl-igj"])
    await store.move(acknowledged.id, Event.RECEIPT_OK)
    await store.add(new_message("received@at", direction=Direction.INBOUND, partner_id="at-basg"))

    assert sending.partner_id == "de-bfarm"
    assert await store.unfinished_outbound_partners() == ["ch-swissmedic", "de-bfarm", "fr-ansm"]


async def test_no_unfinished_outbound_partners_in_an_empty_store(store: MessageStore) -> None:
    assert await store.unfinished_outbound_partners() == []
