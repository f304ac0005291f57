"""The retention purge (review fix) with a batch naming more payload files than one query can ask about
(asyncpg takes at most 32,767 parameters, three a file): the batch's messages go, and so do their files."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from gateway.clock import FixedClock
from gateway.store import MessageStore, PayloadStore, State
from gateway.store.retention import REFERENCED_CHUNK, purge
from gateway.store.schema import messages
from tests.store.helpers import new_message

MESSAGES = 6000  # a batch of them names 12,000 files (payload and wire bytes): 36,000 parameters in one query


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _row(n: int, clock: FixedClock) -> dict[str, object]:
    old = clock.now() - timedelta(days=800)
    return {
        "direction": "out",
        "message_id": f"m-{n}@be-famhp.test",
        "conversation_id": "c",
        "partner_id": "ch-swissmedic",
        "from_party": "BE-FAMHP",
        "to_party": "CH-SWISSMEDIC",
        "service": "s",
        "action": "a",
        "payload_sha256": _sha(f"payload {n}"),
        "payload_mime_type": "application/xml",
        "wire_sha256": _sha(f"wire {n}"),
        "state": State.ACKNOWLEDGED.value,
        "attempts": 1,
        "created_at": old,
        "updated_at": old,
    }


def _old_file(payloads: PayloadStore, sha256: str) -> None:
    path = payloads.path(sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (0, 0))


async def test_a_batch_naming_more_files_than_a_query_takes_is_purged_with_its_files(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    rows = [_row(n, clock) for n in range(MESSAGES)]
    async with store.engine.begin() as conn:
        await conn.execute(insert(messages), rows)
    files = sorted({str(r["payload_sha256"]) for r in rows} | {str(r["wire_sha256"]) for r in rows})
    assert len(files) > 2 * REFERENCED_CHUNK and 3 * len(files) > 32767
    shared = files[-1]  # in the last chunk asked about: a message kept names it, so it stays
    await store.add(new_message("kept@be-famhp.test", payload_sha256=shared))
    payloads = PayloadStore(tmp_path / "payloads")
    unshared = [files[0], files[REFERENCED_CHUNK], files[2 * REFERENCED_CHUNK], files[-2]]
    for sha256 in [*unshared, shared]:
        _old_file(payloads, sha256)

    report = await purge(
        store, payloads, {State.ACKNOWLEDGED: timedelta(days=365)}, now=clock.now(), batch_size=MESSAGES
    )

    assert report.by_state == {State.ACKNOWLEDGED: MESSAGES} and report.files == len(unshared)
    assert [sha256 for sha256 in unshared if payloads.path(sha256).exists()] == []
    assert payloads.path(shared).exists()
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(messages))).scalar_one() == 1
