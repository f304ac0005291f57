"""The SQLite store: migrations, insert-or-nothing duplicates, conditional moves, leases, evidence."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path

import aiosqlite
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from gateway.clock import FixedClock
from gateway.errors import StoreError
from gateway.store import (
    Direction,
    Event,
    Evidence,
    IllegalTransition,
    MessageStore,
    PayloadStore,
    StaleClaim,
    State,
    create_engine,
    upgrade,
)
from gateway.store.schema import metadata
from tests.conftest import NOW
from tests.store.helpers import new_message


async def test_migration_matches_the_tables(store: MessageStore) -> None:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert diff == []


async def test_upgrade_is_idempotent(store: MessageStore) -> None:
    await upgrade(store.engine)


async def test_duplicate_insert_returns_the_stored_message(store: MessageStore) -> None:
    first, created = await store.add(new_message("m1@be"))
    again, created_again = await store.add(new_message("m1@be"))
    assert created and not created_again
    assert again.id == first.id
    assert [e.kind for e in await store.events(first.id)] == ["submitted"]


async def test_same_id_in_other_direction_is_a_different_message(store: MessageStore) -> None:
    out, _ = await store.add(new_message("m1@be"))
    inbound, created = await store.add(new_message("m1@be", direction=Direction.INBOUND))
    assert created and inbound.id != out.id and inbound.state is State.RECEIVED


async def test_illegal_move_is_refused_by_the_database(store: MessageStore) -> None:
    record, _ = await store.add(new_message("m1@be"))
    with pytest.raises(IllegalTransition) as caught:
        await store.move(record.id, Event.RECEIPT_OK)
    assert "SUBMITTED" in str(caught.value)
    assert (await store.get(record.id)).state is State.SUBMITTED


async def test_claim_send_acknowledge(store: MessageStore) -> None:
    record, _ = await store.add(new_message("m1@be"))
    claimed = await store.claim_due("node-a", limit=10, lease=timedelta(minutes=1))
    assert [c.id for c in claimed] == [record.id]
    assert claimed[0].state is State.SENDING and claimed[0].attempts == 1
    assert await store.claim_due("node-b", limit=10, lease=timedelta(minutes=1)) == []
    done = await store.move(record.id, Event.RECEIPT_OK, detail={"receipt": "r1"})
    assert done.state is State.ACKNOWLEDGED and done.is_final
    kinds = [e.kind for e in await store.events(record.id)]
    assert kinds == ["submitted", "receipt_ok"]


async def test_retry_waits_until_due(store: MessageStore, clock: FixedClock) -> None:
    record, _ = await store.add(new_message("m1@be"))
    await store.claim_due("a", limit=1, lease=timedelta(minutes=1))
    await store.move(record.id, Event.SEND_FAILED, next_attempt_at=NOW + timedelta(seconds=30))
    assert await store.claim_due("a", limit=1, lease=timedelta(minutes=1)) == []
    clock.advance(timedelta(seconds=31))
    again = await store.claim_due("a", limit=1, lease=timedelta(minutes=1))
    assert again[0].attempts == 2


async def test_waiting_partners_say_when_their_first_message_is_due_soonest_first(
    store: MessageStore, clock: FixedClock
) -> None:
    late, _ = await store.add(new_message("m1@be", partner_id="de-bfarm", to_party="DE-BFARM"))
    await store.claim_due("a", limit=1, lease=timedelta(minutes=1))
    await store.move(late.id, Event.SEND_FAILED, next_attempt_at=NOW + timedelta(seconds=30))
    clock.advance(timedelta(seconds=1))
    await store.add(new_message("m2@be"))
    clock.advance(timedelta(seconds=1))
    await store.add(new_message("m3@be", partner_id="fr-ansm", to_party="FR-ANSM"))
    await store.add(new_message("m4@be", direction=Direction.INBOUND, partner_id="nl-igj", to_party="NL-IGJ"))

    waiting = await store.waiting_partners()
    assert waiting == [
        ("ch-swissmedic", NOW + timedelta(seconds=1)),
        ("fr-ansm", NOW + timedelta(seconds=2)),
        ("de-bfarm", NOW + timedelta(seconds=30)),
    ]
    assert [p for p, _ in await store.waiting_partners(exclude_partners=["ch-swissmedic"])] == [
        "fr-ansm",
        "de-bfarm",
    ]
    await store.claim_due("a", limit=10, lease=timedelta(minutes=1))
    assert await store.waiting_partners() == [("de-bfarm", NOW + timedelta(seconds=30))]


async def test_expired_waiting_messages_fail_however_many_older_ones_wait(
    store: MessageStore, clock: FixedClock
) -> None:
    hour = NOW + timedelta(hours=1)
    offered, _ = await store.add(replace(new_message("offered@be"), expires_at=hour))
    await store.claim_due("a", limit=1, lease=timedelta(minutes=1))
    await store.move(offered.id, Event.SEND_FAILED, next_attempt_at=NOW, lease_owner=None)
    for n in range(120):  # a listing of the oldest waiting messages would see only these, not expired
        await store.add(replace(new_message(f"old-{n}@be"), expires_at=NOW + timedelta(days=10)))
    expired, _ = await store.add(replace(new_message("new@be"), expires_at=hour))
    clock.advance(timedelta(hours=2))

    waiting = (State.SUBMITTED,)
    assert [
        r.id for r in await store.give_up_waiting(partners=["ch-swissmedic"], reason="r", waiting=waiting)
    ] == [expired.id]
    waiting = (State.RETRY_WAIT,)
    assert [
        r.id for r in await store.give_up_waiting(partners=["ch-swissmedic"], reason="r", waiting=waiting)
    ] == [offered.id]
    assert await store.give_up_waiting(partners=["ch-swissmedic"], reason="r") == []
    assert (await store.get(expired.id)).state is State.FAILED


async def test_an_attempt_that_outlived_its_lease_cannot_overwrite_the_next_ones_outcome(
    store: MessageStore, clock: FixedClock
) -> None:
    record, _ = await store.add(new_message("m1@be"))
    first = (await store.claim_due("node-a", limit=1, lease=timedelta(seconds=120)))[0]
    clock.advance(timedelta(seconds=121))  # node-a's upload of a large message is still running
    assert await store.recover_leases() == 1
    with pytest.raises(StaleClaim, match=r"left the claim of attempt 1 .* RETRY_WAIT at attempt 1"):
        await store.move(first.id, Event.SEND_FAILED, next_attempt_at=NOW, claimed=first.attempts)
    second = (await store.claim_due("node-b", limit=1, lease=timedelta(seconds=120)))[0]

    with pytest.raises(StaleClaim, match="SENDING at attempt 2, and that attempt's give_up is not applied"):
        await store.move(first.id, Event.GIVE_UP, claimed=first.attempts)  # node-a's upload timed out at last
    assert (await store.get(record.id)).state is State.SENDING
    done = await store.move(second.id, Event.RECEIPT_OK, lease_owner=None, claimed=second.attempts)
    assert done.state is State.ACKNOWLEDGED


async def test_a_receipt_acknowledges_a_message_whose_lease_ran_out(
    store: MessageStore, clock: FixedClock
) -> None:
    record, _ = await store.add(new_message("m1@be"))
    await store.claim_due("node-a", limit=1, lease=timedelta(seconds=120))
    clock.advance(timedelta(seconds=121))
    assert await store.recover_leases() == 1

    moved = await store.move(record.id, Event.RECEIPT_OK, lease_owner=None)
    assert moved.state is State.ACKNOWLEDGED


async def test_a_renewed_lease_is_not_taken_back_and_a_lost_one_cannot_be_renewed(
    store: MessageStore, clock: FixedClock
) -> None:
    record, _ = await store.add(new_message("m1@be"))
    claim = (await store.claim_due("node-a", limit=1, lease=timedelta(seconds=60)))[0]
    clock.advance(timedelta(seconds=50))
    assert await store.renew_lease(record.id, "node-a", claimed=claim.attempts, lease=timedelta(seconds=60))
    clock.advance(timedelta(seconds=50))  # past the first lease, inside the renewed one
    assert await store.recover_leases() == 0
    assert not await store.renew_lease(record.id, "node-b", claimed=claim.attempts, lease=timedelta(seconds=60))

    clock.advance(timedelta(seconds=11))
    assert await store.recover_leases() == 1
    assert not await store.renew_lease(record.id, "node-a", claimed=claim.attempts, lease=timedelta(seconds=60))
    again = (await store.claim_due("node-b", limit=1, lease=timedelta(seconds=60)))[0]
    assert not await store.renew_lease(record.id, "node-a", claimed=claim.attempts, lease=timedelta(seconds=60))
    assert await store.renew_lease(record.id, "node-b", claimed=again.attempts, lease=timedelta(seconds=60))


async def test_a_receipt_after_another_claim_gave_up_acknowledges_the_message_and_is_kept(
    store: MessageStore, clock: FixedClock
) -> None:
    """Node A's upload outlived its lease, node B's claim gave up at the time to live, then A's POST returned a
    receipt that verifies: the partner has the message, and its signed receipt is the evidence."""
    record, _ = await store.add(new_message("m1@be"))
    first = (await store.claim_due("node-a", limit=1, lease=timedelta(seconds=60)))[0]
    clock.advance(timedelta(seconds=61))
    assert await store.recover_leases() == 1
    second = (await store.claim_due("node-b", limit=1, lease=timedelta(seconds=60)))[0]
    assert (await store.move(second.id, Event.GIVE_UP, claimed=second.attempts)).state is State.FAILED

    receipt = Evidence(kind="receipt", content_type="application/soap+xml", body=b"<signed receipt/>")
    moved = await store.move(first.id, Event.RECEIPT_OK, evidence=receipt, lease_owner=None, last_error=None)
    assert moved.state is State.ACKNOWLEDGED and moved.last_error is None
    assert await store.get_evidence(record.id, "receipt") == ("application/soap+xml", b"<signed receipt/>")


async def test_a_stopping_node_gives_back_only_its_own_messages(store: MessageStore, clock: FixedClock) -> None:
    mine, _ = await store.add(new_message("m1@be"))
    await store.claim_due("node-a", limit=1, lease=timedelta(minutes=2))
    theirs, _ = await store.add(new_message("m2@be"))
    await store.claim_due("node-b", limit=1, lease=timedelta(minutes=2))

    assert await store.release_leases("node-a") == 1

    given_back, kept = await store.get(mine.id), await store.get(theirs.id)
    assert (given_back.state, given_back.lease_owner, given_back.next_attempt_at) == (State.RETRY_WAIT, None, NOW)
    assert (kept.state, kept.lease_owner) == (State.SENDING, "node-b")
    assert (await store.events(mine.id))[-1].detail == {"released": "node node-a stopped while sending it"}


async def test_giving_back_leases_without_a_database_is_a_store_error(clock: FixedClock) -> None:
    store = MessageStore(create_engine("postgresql+asyncpg://gateway:gateway@127.0.0.1:1/gone"), clock)
    try:
        with pytest.raises(StoreError, match="node-a was sending could not be given back"):
            await store.release_leases("node-a")
    finally:
        await store.close()


async def test_expired_lease_is_recovered(store: MessageStore, clock: FixedClock) -> None:
    record, _ = await store.add(new_message("m1@be"))
    await store.claim_due("dead-node", limit=1, lease=timedelta(seconds=30))
    assert await store.recover_leases() == 0
    clock.advance(timedelta(seconds=31))
    assert await store.recover_leases() == 1
    assert (await store.get(record.id)).state is State.RETRY_WAIT
    assert [c.id for c in await store.claim_due("live-node", limit=1, lease=timedelta(seconds=30))] == [record.id]


async def test_evidence_is_kept_with_its_move_and_only_the_first_stays(store: MessageStore) -> None:
    record, _ = await store.add(new_message("m1@be"))
    await store.claim_due("a", limit=1, lease=timedelta(minutes=1))
    first = Evidence(kind="receipt", content_type="application/soap+xml", body=b"<r/>")
    await store.move(record.id, Event.RECEIPT_OK, evidence=first)
    assert await store.get_evidence(record.id, "receipt") == ("application/soap+xml", b"<r/>")
    assert await store.get_evidence(record.id, "other") is None


async def test_received_message_and_receipt_are_stored_together(store: MessageStore) -> None:
    receipt = Evidence(kind="receipt", content_type="application/soap+xml", body=b"<receipt/>")
    record, created = await store.add(
        new_message("m1@be", direction=Direction.INBOUND), then=Event.ACCEPT, evidence=receipt
    )
    assert created and record.state is State.ACCEPTED
    assert [(e.kind, e.state) for e in await store.events(record.id)] == [
        ("received", State.RECEIVED),
        ("accept", State.ACCEPTED),
    ]
    again, created_again = await store.add(
        new_message("m1@be", direction=Direction.INBOUND), then=Event.ACCEPT, evidence=receipt
    )
    assert not created_again and again.id == record.id
    assert await store.get_evidence(record.id, "receipt") == ("application/soap+xml", b"<receipt/>")


def test_payload_store_is_content_addressed(tmp_path: Path) -> None:
    payloads = PayloadStore(tmp_path)
    sha = payloads.put(b"permit")
    assert payloads.put(b"permit") == sha
    assert payloads.get(sha) == b"permit"
    payloads.path(sha).write_bytes(b"tampered")
    with pytest.raises(Exception, match="does not match"):
        payloads.get(sha)


async def test_a_connection_given_back_in_the_middle_of_a_write_keeps_nothing_of_it(store: MessageStore) -> None:
    """Whatever a connection held when it went back to the pool, the next transaction on it starts clean: an
    uncommitted write is never committed by someone else's commit."""
    async with store.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE scratch (x INTEGER)"))
    async with store.engine.connect() as conn:
        await conn.execute(text("INSERT INTO scratch VALUES (1)"))  # never committed
    async with store.engine.begin() as conn:
        await conn.execute(text("INSERT INTO scratch VALUES (2)"))
    async with store.engine.connect() as conn:
        assert list((await conn.execute(text("SELECT x FROM scratch"))).scalars()) == [2]


async def test_on_sqlite_a_committed_transaction_goes_back_to_the_pool_without_a_rollback(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's rollback-on-return would cost a round trip through aiosqlite's thread after every commit;
    SQLite's connections are rolled back on return only when they still hold a transaction."""
    store = MessageStore(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"), clock)
    await upgrade(store.engine)
    rollbacks: list[bool] = []
    rollback = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        rollbacks.append(self.in_transaction)
        await rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    record, _ = await store.add(new_message("m1@be"))
    await store.move(record.id, Event.CLAIM)
    await store.engine.dispose()
    assert rollbacks == []


async def test_moments_are_stored_in_utc_whatever_their_offset_and_naive_ones_are_refused(
    store: MessageStore,
) -> None:
    """SQLite kept a value's wall-clock time and dropped its offset: 07:00-05:00 came back as 07:00 UTC."""
    written_in_new_york = (NOW + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    record, _ = await store.add(replace(new_message("m1@be"), expires_at=written_in_new_york))
    stored = await store.get(record.id)
    assert stored.expires_at == written_in_new_york and stored.expires_at.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive datetime"):  # a programming error, not a database outage
        await store.add(replace(new_message("m2@be"), expires_at=NOW.replace(tzinfo=None)))


async def test_an_accepted_message_keeps_its_findings(store: MessageStore) -> None:
    """What the received document was accepted with is read back on every path that loads a message."""
    finding = {"rule": "EA-012", "severity": "warning", "message": "confirm it", "hint": "h", "text": "[EA-012] t"}
    inbound = new_message("warned@ch", direction=Direction.INBOUND)
    added, _ = await store.add(inbound, then=Event.ACCEPT, findings=[finding])
    plain, _ = await store.add(new_message("plain@be"))

    assert added.findings == (finding,)
    assert (await store.get(added.id)).findings == (finding,)
    assert (await store.find(Direction.INBOUND, "warned@ch")) == added
    [claimed] = await store.claim_due("node", limit=5, lease=timedelta(minutes=1), direction=Direction.INBOUND)
    assert claimed.findings == (finding,)
    assert plain.findings == () and (await store.get(plain.id)).findings == ()


async def test_ids_starting_with_a_prefix_are_found_newest_first_and_like_wildcards_are_literal(
    store: MessageStore,
) -> None:
    for message_id in ("3f0c2a4e-1@be.test", "3f0c2a4e-2@be.test", "3f0d-other@be.test", "50%_off@be.test"):
        await store.add(new_message(message_id))

    assert await store.ids_starting_with("3f0c2a4e") == ["3f0c2a4e-2@be.test", "3f0c2a4e-1@be.test"]
    assert await store.ids_starting_with("50%_") == ["50%_off@be.test"]
    assert await store.ids_starting_with("%") == []
    assert await store.ids_starting_with("3f0_") == []
