"""The retention purge: messages past their final state's retention go, with their events, evidence and the
payload files no other message names; then payload files nothing names at all. Messages go in batches, each a
range of an index, so the table is never read whole; the sweep for unnamed files does list the whole payload
tree, one shard at a time on a worker thread (about 70 µs a file), once a run. Last, the store's planner
statistics are refreshed (SQLite), as the purge has changed the tables most."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.metrics import RETENTION_PURGED, RETENTION_PURGED_FILES
from gateway.store.lifecycle import State
from gateway.store.payloads import PayloadStore
from gateway.store.store import MessageStore

# A payload file written or reused this recently is kept even when no message names it yet: a submission of
# the same bytes stores the file before the message that names it.
FILE_GRACE = timedelta(hours=1)
REFERENCED_CHUNK = 5000
"""Payload files asked about in one ``referenced`` query at most: it binds three parameters per file and asyncpg
takes at most 32,767 in one statement, while a purge batch (``[retention] batch_size`` up to 10,000 messages)
names two files a message and its attachments besides."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeReport:
    by_state: dict[State, int]
    files: int

    @property
    def messages(self) -> int:
        return sum(self.by_state.values())


async def purge(
    store: MessageStore,
    payloads: PayloadStore,
    keep: Mapping[State, timedelta],
    *,
    now: datetime,
    batch_size: int = 500,
    file_grace: timedelta = FILE_GRACE,
) -> PurgeReport:
    """Delete messages that reached a final state more than ``keep[state]`` before ``now``, in batches of
    ``batch_size``, one transaction each. On SQLite a batch is at most ``SQLITE_PURGE_BATCH`` (500) messages
    whatever ``batch_size`` says: its delete holds the node's one connection, and every other store operation
    waits for it (about 135 ms for 500 messages with their events; seconds for 10,000)."""
    cutoffs = {state: now - kept for state, kept in keep.items()}
    limit = store.purge_batch_limit(batch_size)
    by_state: dict[State, int] = {}
    files = payloads.remove_leftovers(untouched_for=file_grace)
    await store.refresh_statistics(only_if_none=True)
    while True:
        batch = await store.purge_batch(cutoffs, limit=limit)
        for state, count in batch.by_state.items():
            by_state[state] = by_state.get(state, 0) + count
            RETENTION_PURGED.labels(state=state.value).inc(count)
        if batch.files:
            still_named = await referenced(store, batch.files)
            for sha256 in sorted(batch.files - still_named):
                if payloads.remove(sha256, untouched_for=file_grace):
                    files += 1
                    RETENTION_PURGED_FILES.inc()
        if batch.messages < limit:
            break
    files += await sweep_unnamed_files(store, payloads, file_grace=file_grace, batch_size=batch_size)
    await store.refresh_statistics()
    return PurgeReport(by_state=by_state, files=files)


async def sweep_unnamed_files(
    store: MessageStore, payloads: PayloadStore, *, file_grace: timedelta, batch_size: int = 500
) -> int:
    """Delete the payload files no message names that are older than ``file_grace``: a refused submission's
    attachment, a unit of work rolled back, a crash between writing a file and naming it. Shard by shard, the
    scan on a worker thread."""
    removed = 0
    for shard in payloads.shards():
        old = await asyncio.to_thread(payloads.old_files, shard, untouched_for=file_grace)
        for start in range(0, len(old), batch_size):
            batch = old[start : start + batch_size]
            named = await referenced(store, batch)
            for sha256 in batch:
                if sha256 not in named and payloads.remove(sha256, untouched_for=file_grace):
                    removed += 1
                    RETENTION_PURGED_FILES.inc()
    return removed


async def referenced(store: MessageStore, sha256s: Collection[str]) -> set[str]:
    """``store.referenced`` in chunks of ``REFERENCED_CHUNK`` files, so no batch is too large to ask about."""
    wanted = sorted(sha256s)
    named: set[str] = set()
    for start in range(0, len(wanted), REFERENCED_CHUNK):
        named |= await store.referenced(wanted[start : start + REFERENCED_CHUNK])
    return named
