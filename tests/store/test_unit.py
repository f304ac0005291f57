"""The unit of work on SQLite and PostgreSQL: the permit registry row and the message row (with its events and
evidence) are committed together or not at all."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.clock import FixedClock
from gateway.store import (
    Direction,
    Event,
    Evidence,
    MessageStore,
    PermitRefused,
    PermitRegistry,
    State,
    create_engine,
    unit_of_work,
)
from tests.store.helpers import new_message
from tests.store.test_permits import BE_IA, example, tables


@pytest.fixture
def registry(store: MessageStore, clock: FixedClock) -> PermitRegistry:
    return PermitRegistry(store.engine, clock, tables())


RECEIPT = Evidence(kind="receipt", content_type="application/xml", body=b"<receipt/>")


async def test_the_permit_and_the_message_are_kept_together(store: MessageStore, registry: PermitRegistry) -> None:
    ia = example("BE-IA-2026-0001.xml")
    async with unit_of_work(store, registry) as work:
        created_permit = await work.record_permit(ia, direction=Direction.INBOUND, message_id="m1@be")
        record, created = await work.add(
            new_message("m1@be", direction=Direction.INBOUND, partner_id="be-famhp"),
            then=Event.ACCEPT,
            evidence=RECEIPT,
        )
    assert created_permit and created and record.state is State.ACCEPTED
    detail = await registry.get(BE_IA)
    assert detail is not None and detail.permit.message_id == "m1@be"
    assert [e.kind for e in await store.events(record.id)] == ["received", "accept"]
    assert await store.get_evidence(record.id, "receipt") == ("application/xml", b"<receipt/>")


async def test_a_failure_in_the_unit_keeps_neither(store: MessageStore, registry: PermitRegistry) -> None:
    ia = example("BE-IA-2026-0001.xml")
    with pytest.raises(RuntimeError):
        async with unit_of_work(store, registry) as work:
            await work.record_permit(ia, direction=Direction.INBOUND, message_id="m1@be")
            await work.add(
                new_message("m1@be", direction=Direction.INBOUND, partner_id="be-famhp"),
                then=Event.ACCEPT,
                evidence=RECEIPT,
            )
            raise RuntimeError("crash before commit")
    assert await registry.get(BE_IA) is None
    assert await store.find(Direction.INBOUND, "m1@be") is None


async def test_a_permit_the_registry_refuses_stores_no_message(
    store: MessageStore, registry: PermitRegistry
) -> None:
    ia = example("BE-IA-2026-0001.xml")
    await registry.record(ia, direction=Direction.INBOUND, message_id="m1@be")
    with pytest.raises(PermitRefused) as refused:
        async with unit_of_work(store, registry) as work:
            await work.add(new_message("m2@be", direction=Direction.INBOUND, partner_id="be-famhp"))
            await work.record_permit(
                replace(ia, content_sha256="f" * 64), direction=Direction.INBOUND, message_id="m2@be"
            )
    assert refused.value.rule == "X-022"
    assert await store.find(Direction.INBOUND, "m2@be") is None


async def test_the_same_permit_again_is_no_new_row(store: MessageStore, registry: PermitRegistry) -> None:
    ia = example("BE-IA-2026-0001.xml")
    for message_id, expected in (("m1@be", True), ("m2@be", False)):
        async with unit_of_work(store, registry) as work:
            assert await work.record_permit(ia, direction=Direction.INBOUND, message_id=message_id) is expected
            await work.add(new_message(message_id, direction=Direction.INBOUND, partner_id="be-famhp"))
    detail = await registry.get(BE_IA)
    assert detail is not None and detail.permit.message_id == "m1@be"


async def test_both_stores_must_share_one_engine(store: MessageStore, clock: FixedClock, store_url: str) -> None:
    other = create_engine(store_url)
    try:
        with pytest.raises(ValueError, match="one engine"):
            async with unit_of_work(store, PermitRegistry(other, clock)):
                pass
    finally:
        await other.dispose()
