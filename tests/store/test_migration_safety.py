"""Migrations are safe to run on a store in use, on SQLite and PostgreSQL: a table rebuilt by SQLite's batch mode
keeps the rows that refer to it, nodes starting at once migrate one after the other, an upgrade killed part way
leaves the store as it was, a schema newer than the gateway's is refused by name, and 0008 makes the database
refuse states outside the lifecycle and gives queued messages from before 0007 their MPC."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.as4 import DEFAULT_MPC
from gateway.clock import SystemClock
from gateway.errors import StoreError
from gateway.store import Event, MessageStore, State, create_engine, upgrade
from gateway.store.schema import evidence, message_attachments, message_events, messages, metadata
from tests.store.helpers import new_message

ROOT = Path(__file__).resolve().parents[2]
HEAD = "0015"
AT = datetime(2026, 11, 1, tzinfo=UTC)


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def _diff(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))


async def _counts(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        tables = (messages, message_events, evidence, message_attachments)
        return [(await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in tables]


async def _stored_before_0010(engine: AsyncEngine, message_id: str, direction: str = "out") -> int:
    """A message as a store of revisions 0007 to 0009 holds it: the store's ``add`` names every column of the
    head's schema (0010 added messages.findings), so it cannot write to an older one."""
    state = State.SUBMITTED if direction == "out" else State.ACCEPTED
    async with engine.begin() as conn:
        added = await conn.execute(
            insert(messages).values(_required(direction, message_id, state)).returning(messages.c.id)
        )
        return int(added.scalar_one())


async def _received_with_receipt(engine: AsyncEngine) -> None:
    """A received message with its events, the receipt we sent as evidence, and one attachment row."""
    pk = await _stored_before_0010(engine, "in@ch", "in")
    events = [
        {"message_pk": pk, "at": AT, "kind": "received", "state": State.RECEIVED.value, "detail": {}},
        {"message_pk": pk, "at": AT, "kind": Event.ACCEPT.value, "state": State.ACCEPTED.value, "detail": {}},
    ]
    receipt = {
        "message_pk": pk,
        "kind": "receipt_sent",
        "content_type": "text/xml",
        "body": b"<r/>",
        "created_at": AT,
    }
    async with engine.begin() as conn:
        await conn.execute(insert(message_events), events)
        await conn.execute(insert(evidence).values(receipt))
        await conn.execute(insert(message_attachments).values(message_pk=pk, position=0, sha256="c" * 64))


async def test_a_migration_rebuilding_messages_keeps_the_rows_that_refer_to_it(store_url: str) -> None:
    """0008 rebuilds messages on SQLite (a CHECK cannot be added in place): with foreign keys on, dropping the
    old table deleted every event, receipt and attachment row by cascade."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0007")
        await _received_with_receipt(engine)
        before = await _counts(engine)
        assert before == [1, 2, 1, 1]
        await upgrade(engine)
        assert await _counts(engine) == before
        assert await _revision(engine) == HEAD and await _diff(engine) == []
        if engine.dialect.name == "sqlite":  # the pooled connection has its foreign keys on again
            async with engine.connect() as conn:
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_a_downgrade_rebuilding_messages_keeps_the_rows_that_refer_to_it(store_url: str) -> None:
    from gateway.store.migrate import downgrade

    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        await _received_with_receipt(engine)
        await downgrade(engine, "0006")  # 0007's downgrade drops messages.mpc: a rebuild on SQLite
        assert await _counts(engine) == [1, 2, 1, 1]
        await upgrade(engine)
        assert await _counts(engine) == [1, 2, 1, 1] and await _diff(engine) == []
    finally:
        await engine.dispose()


NODE_STARTING = """
import asyncio, sys, time
from pathlib import Path
from gateway.store import create_engine, upgrade

async def main(url, ready, go):
    engine = create_engine(url)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.001)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("start", [None, "0006"])
async def test_nodes_starting_at_once_migrate_one_after_the_other(
    store_url: str, start: str | None, tmp_path: Path
) -> None:
    """Each ``serve`` upgrades at start: the later nodes wait for the first and find the schema at the head (the
    loser failed on 'duplicate key value violates unique constraint' or 'table messages already exists')."""
    engine = create_engine(store_url)
    try:
        if start:
            await upgrade(engine, start)
        else:  # the nodes' first connections would race to turn a new SQLite file to WAL: not what this tests
            async with engine.connect():
                pass
        go = tmp_path / "go"
        nodes = [
            subprocess.Popen(
                [sys.executable, "-c", NODE_STARTING, store_url, str(tmp_path / f"ready-{n}"), str(go)],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        while not all((tmp_path / f"ready-{n}").exists() for n in range(3)):
            await asyncio.sleep(0.01)
        go.touch()
        failed = [
            err for err in await asyncio.gather(*(asyncio.to_thread(_stderr_if_failed, p) for p in nodes)) if err
        ]
        assert failed == []
        assert await _revision(engine) == HEAD and await _diff(engine) == []
    finally:
        await engine.dispose()


def _stderr_if_failed(node: subprocess.Popen[str]) -> str:
    _, stderr = node.communicate(timeout=120)
    return (
        next((line for line in reversed(stderr.splitlines()) if "Error" in line), stderr)
        if node.returncode
        else ""
    )


KILLED_IN_0005 = """
import asyncio, os, sys
from sqlalchemy import event
from gateway.store import create_engine, upgrade

def crash(conn, cursor, statement, parameters, context, many):
    if "ix_messages_direction_partner_id_state" in statement:  # migration 0005, after 0004's four indexes
        os._exit(9)  # as a kill -9 would: no rollback, no clean-up

async def main():
    engine = create_engine(sys.argv[1])
    event.listen(engine.sync_engine, "before_cursor_execute", crash)
    await upgrade(engine)

asyncio.run(main())
"""


async def test_an_upgrade_killed_part_way_leaves_the_store_as_it_was(store_url: str) -> None:
    """SQLite's driver committed each DDL statement on its own: 0004's indexes stayed while the revision stayed at
    0003, and every later upgrade failed on 'index ... already exists'."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0003")
        killed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", textwrap.dedent(KILLED_IN_0005), store_url], cwd=ROOT
        )
        assert killed.returncode == 9
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: {ix["name"] for ix in inspect(c).get_indexes("messages")})
        assert await _revision(engine) == "0003" and "ix_messages_state_updated_at" not in indexes
        await upgrade(engine)
        assert await _revision(engine) == HEAD and await _diff(engine) == []
    finally:
        await engine.dispose()


async def test_a_schema_newer_than_the_gateway_is_refused_naming_both_revisions(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(StoreError) as refused:
            await upgrade(engine)
        assert (
            f"is at revision 0099, newer than this gateway's (head {HEAD}): run the gateway version that "
            in str(refused.value)
        )
        assert "or upgrade this one" in str(refused.value)
        assert await _revision(engine) == "0099"
    finally:
        await engine.dispose()


async def test_the_database_refuses_a_state_outside_the_lifecycle(store_url: str) -> None:
    """One unknown state written by plain SQL broke every listing (recent() raised ValueError)."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        store = MessageStore(engine, SystemClock())
        record, _ = await store.add(new_message("m@be"))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE messages SET state = 'Acknowledged' WHERE id = :pk"), {"pk": record.id}
                )
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    insert(message_events).values(message_pk=record.id, at=AT, kind="x", state="LOST", detail={})
                )
        async with engine.begin() as conn:  # every state of the lifecycle, and none, still go in
            for state in State:
                await conn.execute(
                    text("UPDATE messages SET state = :s WHERE id = :pk"), {"s": state, "pk": record.id}
                )
            await conn.execute(insert(message_events).values(message_pk=record.id, at=AT, kind="x", detail={}))
        assert [r.message_id for r in await store.recent(limit=10)] == ["m@be"]
    finally:
        await engine.dispose()


async def test_0008_names_the_rows_whose_state_it_cannot_take_and_changes_nothing(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0007")
        pk = await _stored_before_0010(engine, "m@be")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE messages SET state = 'Acknowledged' WHERE id = :pk"), {"pk": pk})
        with pytest.raises(StoreError) as refused:
            await upgrade(engine)
        said = str(refused.value)
        assert "messages.state may hold only the lifecycle's states" in said
        assert f"'Acknowledged' in 1 row(s), the first id {pk}" in said
        assert "then run 'permit-gateway db upgrade' again" in said
        assert await _revision(engine) == "0007"
    finally:
        await engine.dispose()


def test_the_schema_checks_exactly_the_states_migration_0008_checks() -> None:
    """A state added to the lifecycle needs a migration that widens the CHECK; this test says so."""
    migration = importlib.import_module("gateway.store.migrations.versions.0008_states_checked_and_mpc_backfilled")
    assert set(migration.STATES) == {s.value for s in State}
    for table in (messages, message_events):
        names = {c.name for c in table.constraints if c.name and str(c.name).startswith("ck_")}
        assert names == {migration.CHECKS[table.name]}


async def test_the_migrated_checks_are_the_schemas(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            found = await conn.run_sync(
                lambda c: {
                    t: {ck["name"] for ck in inspect(c).get_check_constraints(t)}
                    for t in ("messages", "message_events")
                }
            )
        assert found == {"messages": {"ck_messages_state"}, "message_events": {"ck_message_events_state"}}
    finally:
        await engine.dispose()


async def test_0008_gives_messages_queued_before_0007_the_default_mpc(store_url: str) -> None:
    """claim_due took a NULL MPC for any MPC: a PullRequest on another MPC got a message not signed for it."""
    engine = create_engine(store_url)
    try:
        await upgrade(engine, "0006")
        later = ("id", "mpc", "findings", "header_digests", "claim_seq", "superseded_by")
        columns = [c for c in messages.c if c.name not in later]  # the 0006 columns
        rows = [
            ("out", "queued@be", State.SUBMITTED),
            ("out", "waiting@be", State.RETRY_WAIT),
            ("out", "sending@be", State.SENDING),
            ("out", "done@be", State.ACKNOWLEDGED),
            ("out", "failed@be", State.FAILED),
            ("in", "in@ch", State.RECEIVED),
        ]
        async with engine.begin() as conn:
            for direction, message_id, state in rows:
                values = {c.name: None for c in columns} | _required(direction, message_id, state)
                await conn.execute(insert(messages).values(values))
        await upgrade(engine)
        async with engine.connect() as conn:
            found = dict((await conn.execute(select(messages.c.message_id, messages.c.mpc))).all())
        assert found == {
            "queued@be": DEFAULT_MPC,
            "waiting@be": DEFAULT_MPC,
            "sending@be": DEFAULT_MPC,
            "done@be": None,
            "failed@be": None,
            "in@ch": None,
        }
    finally:
        await engine.dispose()


def _required(direction: str, message_id: str, state: State) -> dict[str, Any]:
    return {
        "direction": direction,
        "message_id": message_id,
        "conversation_id": "c1",
        "partner_id": "ch-swissmedic",
        "from_party": "BE-FAMHP",
        "to_party": "CH-SWISSMEDIC",
        "service": "svc",
        "action": "ImportAuthorization",
        "payload_sha256": "0" * 64,
        "payload_mime_type": "application/xml",
        "state": state.value,
        "attempts": 0,
        "created_at": AT,
        "updated_at": AT,
    }
