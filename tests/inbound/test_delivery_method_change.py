"""The delivery worker follows the profiles in use at each claim: nothing parked has to be reset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.inbound.pull import PullInbox
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import free_port
from tests.inbound.conftest import Inbound, partner
from tests.inbound.national import NationalSystem, national_system

PULL = ProfileRegistry([partner(delivery={"method": "rest-pull"}), partner("de-bfarm")])
FOLDER = ProfileRegistry([partner(), partner("de-bfarm")])


@pytest.fixture
async def national() -> AsyncIterator[NationalSystem]:
    async with national_system(free_port()) as system:
        yield system


async def test_rest_pull_messages_are_not_claimed_and_go_by_the_new_method(inbound: Inbound) -> None:
    waiting = [await inbound.accepted(n) for n in (1, 2)]
    other = await inbound.accepted(3, partner_id="de-bfarm")
    worker = inbound.worker(PULL)

    assert await worker.drain() == 1  # only de-bfarm's, to the folder
    for record in waiting:
        unchanged = await inbound.store.get(record.id)
        assert unchanged.state is State.ACCEPTED and unchanged.lease_owner is None
        assert [e.kind for e in await inbound.store.events(record.id)] == ["received", "accept"]
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=PULL)
    assert [r.id for r in await pull.waiting()] == [r.id for r in waiting]

    worker.use_profiles(FOLDER)
    assert await worker.drain() == 2

    assert {(await inbound.store.get(r.id)).state for r in [*waiting, other]} == {State.DELIVERED}
    assert len(list(inbound.inbox.glob("*.xml"))) == 3
    assert await PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=FOLDER).waiting() == []


async def test_a_partner_switched_to_rest_pull_is_not_pushed_any_more(
    inbound: Inbound, national: NationalSystem
) -> None:
    record = await inbound.accepted(1)
    national.answers.append("500")
    worker = inbound.worker(ProfileRegistry([partner(delivery={"method": "soap", "url": national.url})]))
    assert await worker.drain() == 0  # failed, due again after the lease

    worker.use_profiles(PULL)
    inbound.clock.advance(timedelta(hours=1))
    assert await worker.drain() == 0

    assert national.requests == 1
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=PULL)
    [listed] = await pull.waiting()
    assert listed.id == record.id and listed.state is State.ACCEPTED
    assert (await pull.ack(record.message_id)).record.state is State.DELIVERED
