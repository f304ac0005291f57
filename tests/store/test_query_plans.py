"""The store's hot reads pick the right index on a store without planner statistics, on SQLite and PostgreSQL
(asked with EXPLAIN; PostgreSQL with sequential scans discouraged, as the table is small): the REST-pull inbox's
look-up by MessageId and its oldest-first listing, ``messages show``, the listing by state and the retention
purge. Without statistics SQLite served ``ORDER BY id`` from ix_messages_direction_id and read every message of
a direction (150-350 ms at 300,000 messages). The store gathers SQLite's statistics itself: every connection
samples each index as it opens, and the daily retention job analyzes."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from gateway.clock import FixedClock
from gateway.store import Direction, MessageStore, PayloadStore, State, create_engine, upgrade
from gateway.store.retention import purge
from gateway.store.schema import messages

N = 4000
DIRECTION_ID = next(index for index in messages.indexes if index.name == "ix_messages_direction_id")
PARTNERS = [f"partner-{i:02d}" for i in range(20)]


def _rows(clock: FixedClock, count: int) -> list[dict[str, Any]]:
    """A year of traffic, oldest first: nearly all final, one message in a hundred still waiting."""
    rows = []
    for i in range(1, count + 1):
        outbound = i % 2 == 0
        at = clock.now() - timedelta(days=400) * (count - i) / count
        if i % 100 in (0, 1):  # sent to partner-00 and received from partner-01
            state = State.RETRY_WAIT if outbound else State.ACCEPTED
        else:
            state = State.ACKNOWLEDGED if outbound else State.DELIVERED
        partner = PARTNERS[i % len(PARTNERS)]
        rows.append(
            {
                "direction": (Direction.OUTBOUND if outbound else Direction.INBOUND).value,
                "message_id": f"m{i}@gw.example",
                "conversation_id": f"c{i}",
                "partner_id": partner,
                "from_party": "BE-FAMHP" if outbound else partner.upper(),
                "to_party": partner.upper() if outbound else "BE-FAMHP",
                "service": "svc",
                "action": "ImportAuthorization",
                "payload_sha256": f"{i:064x}",
                "payload_mime_type": "application/xml",
                "state": state.value,
                "attempts": 1,
                "next_attempt_at": at,
                "created_at": at,
                "updated_at": at,
            }
        )
    return rows


@pytest.fixture
async def filled(store_url: str, clock: FixedClock) -> AsyncIterator[MessageStore]:
    """A store of ``N`` messages. On SQLite with no planner statistics (none gathered, any dropped): nothing
    gathered them before the daily job did. PostgreSQL's autovacuum gathers its own as rows come, so they are
    gathered here as it would have by now (without any, it takes the new table for an empty one)."""
    engine = create_engine(store_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(insert(messages), _rows(clock, N))
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
            # Without statistics SQLite breaks near ties by the order the indexes were made in (a new store makes
            # them in no fixed order): (direction, id) made last is the order that misled it
            await conn.run_sync(DIRECTION_ID.drop)
            await conn.run_sync(DIRECTION_ID.create)
        else:
            await conn.exec_driver_sql("ANALYZE messages")
    yield MessageStore(engine, clock)
    await engine.dispose()


async def _plans(store: MessageStore, work: Callable[[], Awaitable[object]]) -> list[str]:
    """The query plan of each statement ``work`` runs (reads and deletes), one text each."""
    engine = store.engine
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH", "DELETE")):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await work()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert seen, "the store method ran no query"
    sqlite = engine.dialect.name == "sqlite"
    plans = []
    async with engine.connect() as conn:
        if not sqlite:
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in seen:
            explain = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement
            rows = await conn.exec_driver_sql(explain, parameters)
            plans.append("\n".join(str(row[-1] if sqlite else row[0]) for row in rows))
        await conn.rollback()  # the purge's plan is only asked for: nothing is deleted
    return plans


def _unique_key(store: MessageStore) -> str:
    """How the plan names a search on the unique key (direction, message_id, from_party)."""
    if store.engine.dialect.name == "sqlite":
        return "(direction=? AND message_id=?"  # SQLite names the constraint's index sqlite_autoindex_messages_N
    return "uq_messages_direction_message_id_from_party"


def _not_direction_wide(plan: str) -> None:
    assert "ix_messages_direction_id" not in plan, plan
    assert "SCAN messages" not in plan and "Seq Scan" not in plan, plan


async def test_the_pull_inbox_finds_a_message_id_on_the_unique_key(filled: MessageStore) -> None:
    plans = await _plans(filled, lambda: filled.find_all(Direction.INBOUND, f"m{N - 1}@gw.example"))
    for plan in plans:
        assert _unique_key(filled) in plan, plan
        _not_direction_wide(plan)
    assert [m.message_id for m in await filled.find_all(Direction.INBOUND, f"m{N - 1}@gw.example")] == [
        f"m{N - 1}@gw.example"
    ]


async def test_messages_show_finds_a_message_id_on_the_unique_key_in_both_directions(filled: MessageStore) -> None:
    plans = await _plans(filled, lambda: filled.find_named(f"m{N // 2}@gw.example"))
    assert len(plans) == 2  # one look-up per direction
    for plan in plans:
        assert _unique_key(filled) in plan, plan
        _not_direction_wide(plan)
    plans = await _plans(
        filled, lambda: filled.find_named("m7@gw.example", direction=Direction.INBOUND, from_party="PARTNER-07")
    )
    assert _unique_key(filled) in plans[0], plans[0]
    assert [m.id for m in await filled.find_named(f"m{N // 2}@gw.example")] == [N // 2]


async def test_the_pull_inbox_lists_its_oldest_waiting_messages_by_state(filled: MessageStore) -> None:
    partners = [PARTNERS[1], PARTNERS[3]]
    for after in (None, 1000):
        page = functools.partial(
            filled.oldest, Direction.INBOUND, State.ACCEPTED, partners=partners, limit=50, after=after
        )
        (plan,) = await _plans(filled, page)
        used = {"ix_messages_direction_state_id", "ix_messages_direction_partner_id_state"}
        if filled.engine.dialect.name == "sqlite":
            used = {"ix_messages_direction_state_id"}  # read in id order: no sort of every waiting message
        assert any(index in plan for index in used), plan
        _not_direction_wide(plan)
    waiting = await filled.oldest(Direction.INBOUND, State.ACCEPTED, partners=partners, limit=50)
    assert waiting and [m.id for m in waiting] == sorted(m.id for m in waiting)
    assert all(m.partner_id in partners and m.state is State.ACCEPTED for m in waiting)


async def test_the_listing_by_direction_and_state_reads_that_state_only(filled: MessageStore) -> None:
    for before in (None, N // 2):
        page = functools.partial(
            filled.recent, limit=51, direction=Direction.OUTBOUND, state=State.RETRY_WAIT, before=before
        )
        (plan,) = await _plans(filled, page)
        assert "ix_messages_direction_state_id" in plan, plan
        _not_direction_wide(plan)
    listed = await filled.recent(limit=51, direction=Direction.OUTBOUND, state=State.RETRY_WAIT)
    assert len(listed) == N // 100 and [m.id for m in listed] == sorted((m.id for m in listed), reverse=True)


async def test_the_listing_by_state_without_a_direction_reads_that_state_only(filled: MessageStore) -> None:
    """``GET /api/v1/messages?state=FAILED``. PostgreSQL sorts the few messages in a state it finds on any index
    that starts with the state; SQLite, without (state, id), sorted every message in the state to keep a page."""
    for before in (None, N // 2):
        page = functools.partial(filled.recent, limit=51, state=State.RETRY_WAIT, before=before)
        (plan,) = await _plans(filled, page)
        used = {"ix_messages_state_id", "ix_messages_state_next_attempt_at", "ix_messages_state_updated_at"}
        if filled.engine.dialect.name == "sqlite":
            used = {"ix_messages_state_id"}  # read newest first: no sort of every message in the state
            assert "TEMP B-TREE" not in plan, plan
        assert any(index in plan for index in used), plan
        _not_direction_wide(plan)
    listed = await filled.recent(limit=51, state=State.RETRY_WAIT)
    assert len(listed) == N // 100 and [m.id for m in listed] == sorted((m.id for m in listed), reverse=True)


async def test_a_purge_batch_reads_each_state_s_due_messages_from_its_index(
    filled: MessageStore, clock: FixedClock
) -> None:
    cutoff = clock.now() - timedelta(days=365)
    due = {State.ACKNOWLEDGED: cutoff, State.DELIVERED: cutoff, State.FAILED: cutoff, State.REJECTED: cutoff}
    (plan,) = await _plans(filled, lambda: filled.purge_batch(due, limit=50))
    assert "ix_messages_state_updated_at" in plan, plan
    if filled.engine.dialect.name == "sqlite":
        # not every due message gathered and sorted by id to keep the first 50
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan and "MULTI-INDEX OR" not in plan, plan
    else:
        # pk_messages only to find the picked rows, never walked in id order filtering every message
        lines = plan.splitlines()
        for n, line in enumerate(lines):
            if "using pk_messages" in line:
                assert "Index Cond: (id = " in lines[n + 1], plan
    batch = await filled.purge_batch(due, limit=50)
    assert batch.messages == 50


async def test_the_daily_retention_job_gathers_sqlite_statistics(tmp_path: Path, clock: FixedClock) -> None:
    """The first run analyzes a store that has no statistics; a later run follows the table as it grows."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        await upgrade(engine)
        store = MessageStore(engine, clock)
        keep = {State.ACKNOWLEDGED: timedelta(days=365)}
        async with engine.begin() as conn:
            await conn.execute(insert(messages), _rows(clock, 40))
        payloads = PayloadStore(tmp_path / "payloads")
        await purge(store, payloads, keep, now=clock.now())
        first = await _analyzed_rows(store)
        assert await _count(store) < 40 and first == 40  # analyzed before the purge, which took out one message

        async with engine.begin() as conn:
            await conn.execute(insert(messages), _rows(clock, N)[40:])
        await filled_reads(store)
        await purge(store, payloads, {State.ACKNOWLEDGED: timedelta(days=3650)}, now=clock.now())
        assert await _analyzed_rows(store) > 10 * first  # sampled: an estimate of the rows
    finally:
        await engine.dispose()


async def test_a_store_without_statistics_is_analyzed_before_the_purge_deletes(
    tmp_path: Path, clock: FixedClock
) -> None:
    """A store upgraded with a year of messages and never analyzed: its first purge batches took seconds each
    (1.2 s per 500 at 300,000 messages) until the statistics gathered at the end of that purge."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append("DELETE" if "DELETE FROM" in statement.upper() else statement.split(None, 1)[0].upper())

    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(insert(messages), _rows(clock, 400))
            await conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        keep = {State.ACKNOWLEDGED: timedelta(days=30)}
        await purge(MessageStore(engine, clock), PayloadStore(tmp_path / "payloads"), keep, now=clock.now())
        assert "DELETE" in statements, statements
        assert "ANALYZE" in statements[: statements.index("DELETE")], statements
    finally:
        await engine.dispose()


async def filled_reads(store: MessageStore) -> None:
    """What a serving node asks all day: the queries whose plans use the statistics."""
    await store.find_all(Direction.INBOUND, "m999@gw.example")
    await store.recent(limit=51, direction=Direction.OUTBOUND, state=State.RETRY_WAIT)
    await store.oldest(Direction.INBOUND, State.ACCEPTED, partners=PARTNERS, limit=50)


async def _count(store: MessageStore) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one())


async def _analyzed_rows(store: MessageStore) -> int:
    """The number of messages SQLite's statistics say there are (the most any index of the table says)."""
    async with store.engine.connect() as conn:
        stat = await conn.execute(text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'messages' AND idx IS NOT NULL"))
        return max(int(row.split()[0]) for row in stat.scalars())


async def test_every_sqlite_connection_samples_statistics_as_it_opens(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA analysis_limit")).scalar_one() == 2000
    finally:
        await engine.dispose()
