"""The store's hot-path reads and the retention purge at a year's volume: fills N messages (8 events each, a receipt
for each one delivered or acknowledged, an attachment for one in ten) into a fresh SQLite file and, when
PG_TEST_URL names a server, a fresh PostgreSQL database (``store_scale_bench``, dropped and made again), then
prints the time of each store call (best of three; the purge batches are one-shot).

SQLite is measured twice: with no planner statistics (as a store is until its first daily retention job), then
after ``refresh_statistics`` (what that job ends with). PostgreSQL is analyzed first, as autovacuum would have.

    .venv/bin/python bench/store_scale.py [--messages 300000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from gateway.clock import FixedClock
from gateway.store import Direction, MessageStore, State, create_engine, upgrade
from gateway.store.schema import messages

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EVENTS = 8
PARTNERS = [f"partner-{i:02d}" for i in range(40)]
COLUMNS = [column.name for column in messages.c]
EVENT_COLUMNS = ["id", "message_pk", "at", "kind", "state", "detail"]
EVIDENCE_COLUMNS = ["id", "message_pk", "kind", "content_type", "body", "created_at"]
ATTACHMENT_COLUMNS = ["message_pk", "position", "sha256"]
FINAL_STATES = (State.ACKNOWLEDGED, State.FAILED, State.DELIVERED, State.REJECTED, State.DUPLICATE)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Traffic:
    """A year of messages, half sent and half received, 400 of them still waiting; then their events,
    receipts and attachments, as rows in the order of ``COLUMNS`` and the other tables' columns."""

    def __init__(self, count: int) -> None:
        rnd = random.Random(7)
        waiting = set(rnd.sample(range(1, count + 1), min(400, count)))
        self.messages: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.evidence: list[tuple[Any, ...]] = []
        self.attachments: list[tuple[Any, ...]] = []
        for i in range(1, count + 1):
            outbound = i % 2 == 0
            created = NOW - timedelta(days=400) * (count - i) / count
            if i in waiting:
                state = rnd.choice([State.SUBMITTED, State.RETRY_WAIT]) if outbound else State.ACCEPTED
                created = NOW - timedelta(minutes=rnd.randint(1, 600))
                due = NOW + timedelta(minutes=rnd.randint(-30, 30))
            else:
                r = rnd.random()
                if outbound:
                    state = State.ACKNOWLEDGED if r > 0.01 else State.FAILED
                else:
                    state = State.DELIVERED if r > 0.01 else (State.REJECTED if r > 0.005 else State.DUPLICATE)
                due = created
            self._add(i, outbound, state, created, due)

    def _add(self, i: int, outbound: bool, state: State, created: datetime, due: datetime) -> None:
        partner = PARTNERS[i % len(PARTNERS)]
        attached = None
        if i % 10 == 0:
            sha = _sha(f"a{i}")
            attached = [{"position": 1, "sha256": sha, "mime_type": "application/pdf"}]
            self.attachments.append((i, 1, sha))
        updated = created + timedelta(minutes=5)
        row = {
            "id": i,
            "direction": (Direction.OUTBOUND if outbound else Direction.INBOUND).value,
            "message_id": f"{_sha(str(i))[:32]}@gw.example",
            "conversation_id": f"c{i}",
            "partner_id": partner,
            "from_party": "BE-FAMHP" if outbound else partner.upper(),
            "to_party": partner.upper() if outbound else "BE-FAMHP",
            "service": "svc",
            "action": "ImportAuthorization",
            "document_type": "ImportAuthorization",
            "document_number": f"IA-{i}",
            "payload_sha256": _sha(f"p{i}"),
            "payload_mime_type": "application/xml",
            "wire_sha256": _sha(f"w{i}"),
            "wire_content_type": "multipart/related",
            "signed_references": json.dumps([{"uri": "cid:x", "digest": "abc"}]),
            "attachments": json.dumps(attached),
            "findings": json.dumps(None),
            "header_digests": json.dumps(None),
            "state": state.value,
            "attempts": 1,
            "claim_seq": 1,
            "next_attempt_at": due,
            "expires_at": created + timedelta(days=2),
            "created_at": created,
            "updated_at": updated,
        }
        self.messages.append(tuple(row.get(name) for name in COLUMNS))
        kinds = ["submitted", "claim", "attempt", "receipt_ok", "note", "x", "y", "z"]
        base = len(self.events)
        for k in range(EVENTS):
            detail = json.dumps({"k": k, "info": "some detail text"})
            self.events.append(
                (base + k + 1, i, created + timedelta(seconds=k), kinds[k % len(kinds)], None, detail)
            )
        if state in (State.ACKNOWLEDGED, State.DELIVERED, State.DUPLICATE):
            receipt = b"<r>" + b"x" * 300 + b"</r>"
            self.evidence.append((len(self.evidence) + 1, i, "receipt", "application/soap+xml", receipt, updated))


def _text(value: Any) -> Any:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def _texts(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    return (tuple(_text(v) for v in row) for row in rows)


async def fill_sqlite(path: Path, traffic: Traffic) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    for table, columns, rows in (
        ("messages", COLUMNS, traffic.messages),
        ("message_events", EVENT_COLUMNS, traffic.events),
        ("evidence", EVIDENCE_COLUMNS, traffic.evidence),
        ("message_attachments", ATTACHMENT_COLUMNS, traffic.attachments),
    ):
        marks = ",".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", _texts(rows))
    conn.commit()
    conn.execute("DROP TABLE IF EXISTS sqlite_stat1")  # a store no daily job has run on yet
    conn.commit()
    conn.close()
    return url


async def fill_postgresql(base: str, traffic: Traffic) -> str:
    plain = base.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(plain)
    await admin.execute("DROP DATABASE IF EXISTS store_scale_bench WITH (FORCE)")
    await admin.execute("CREATE DATABASE store_scale_bench")
    await admin.close()
    url = base.rsplit("/", 1)[0] + "/store_scale_bench"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    conn = await asyncpg.connect(plain.rsplit("/", 1)[0] + "/store_scale_bench")
    await conn.copy_records_to_table("messages", columns=COLUMNS, records=traffic.messages)
    await conn.copy_records_to_table("message_events", columns=EVENT_COLUMNS, records=traffic.events)
    await conn.copy_records_to_table("evidence", columns=EVIDENCE_COLUMNS, records=traffic.evidence)
    await conn.copy_records_to_table(
        "message_attachments", columns=ATTACHMENT_COLUMNS, records=traffic.attachments
    )
    for table in ("messages", "message_events", "evidence"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    await conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
    await conn.close()
    return url


def calls(store: MessageStore, count: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    half = count // 2 * 2
    sample = f"{_sha(str(half))[:32]}@gw.example"  # an outbound message half way through the year
    last_in = f"{_sha(str(count - 1 if count % 2 == 0 else count))[:32]}@gw.example"
    cut = {state: NOW - timedelta(days=365) for state in FINAL_STATES}
    never = {state: NOW - timedelta(days=3650) for state in FINAL_STATES}
    return {
        "find_all (pull fetch/ack)": lambda: store.find_all(Direction.INBOUND, last_in),
        "find_named (messages show)": lambda: store.find_named(sample),
        "oldest (pull inbox)": lambda: store.oldest(
            Direction.INBOUND, State.ACCEPTED, partners=["partner-03", "partner-05"], limit=50
        ),
        "oldest, next page": lambda: store.oldest(
            Direction.INBOUND, State.ACCEPTED, partners=["partner-03", "partner-05"], limit=50, after=count // 2
        ),
        "recent out RETRY_WAIT": lambda: store.recent(
            limit=51, direction=Direction.OUTBOUND, state=State.RETRY_WAIT
        ),
        "recent out RETRY_WAIT, page": lambda: store.recent(
            limit=51, direction=Direction.OUTBOUND, state=State.RETRY_WAIT, before=count
        ),
        "recent page 1": lambda: store.recent(limit=51),
        "recent in, page": lambda: store.recent(limit=51, direction=Direction.INBOUND, before=count // 2),
        "purge_batch, none due": lambda: store.purge_batch(never, limit=500),
        "purge_batch, 500 due (deletes)": lambda: store.purge_batch(cut, limit=500),
        "purge_batch, FAILED only, few due (deletes)": lambda: store.purge_batch(
            {State.FAILED: NOW - timedelta(days=300)}, limit=500
        ),
    }


async def measure(url: str, count: int, label: str, *, refresh: bool = False) -> None:
    engine = create_engine(url)
    store = MessageStore(engine, FixedClock(NOW))
    try:
        if refresh:
            started = time.perf_counter()
            await store.refresh_statistics()
            print(f"  refresh_statistics: {(time.perf_counter() - started) * 1000:.1f} ms")
        print(f"{label}:")
        for name, call in calls(store, count).items():
            best = float("inf")
            for _ in range(1 if "deletes" in name else 3):
                started = time.perf_counter()
                await call()
                best = min(best, time.perf_counter() - started)
            print(f"  {name:46} {best * 1000:8.1f} ms")
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300_000)
    args = parser.parse_args()
    started = time.perf_counter()
    traffic = Traffic(args.messages)
    print(
        f"{args.messages} messages, {len(traffic.events)} events generated in {time.perf_counter() - started:.0f} s"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.db"
        started = time.perf_counter()
        url = await fill_sqlite(path, traffic)
        print(f"SQLite filled in {time.perf_counter() - started:.0f} s")
        await measure(url, args.messages, "SQLite, no statistics")
        await measure(url, args.messages, "SQLite, after the daily job's refresh_statistics", refresh=True)
    base = os.environ.get("PG_TEST_URL")
    if base:
        started = time.perf_counter()
        url = await fill_postgresql(base, traffic)
        print(f"PostgreSQL filled in {time.perf_counter() - started:.0f} s")
        await measure(url, args.messages, "PostgreSQL")


if __name__ == "__main__":
    asyncio.run(main())
