"""A full disk is a moment to try again, not an internal error: a submission or a partner's message that could not
be kept is answered 503 with Retry-After (the partner's AS4 sender retries under the same MessageId), the log
names the data folder, and once there is space the same request succeeds. Before, both were a bare 500.

The SQLite database is made full for real (``PRAGMA max_page_count``: SQLite's own "database or disk is full");
a payload file that cannot be written is injected (ENOSPC from the write), as a full file system cannot be made
without mounting one."""

from __future__ import annotations

import asyncio
import errno
import shutil
import threading
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from gateway.interfaces import folder
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.store import Direction, MessageRecord, State
from tests.e2e.conftest import Harness, example, harness, session, submit  # noqa: F401
from tests.e2e.test_two_gateways import metric

IA = "BE-IA-2026-0001.xml"
FULL = "a disk is full: the request was not kept and was answered 503"


async def _fill_database(gateway: Running) -> int:
    """Let the gateway's SQLite database grow no further (its one pooled connection); the page limit it had."""
    async with gateway.runner.app[NODE].store.engine.connect() as conn:
        limit = (await conn.exec_driver_sql("PRAGMA max_page_count")).scalar_one()
        pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
        await conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
    return int(limit)


async def _make_space(gateway: Running, limit: int) -> None:
    async with gateway.runner.app[NODE].store.engine.connect() as conn:
        await conn.exec_driver_sql(f"PRAGMA max_page_count = {limit}")


async def test_a_submission_while_the_database_disk_is_full_is_a_503_and_goes_once_there_is_space(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be = await harness.start("BE-FAMHP")
    limit = await _fill_database(be)
    ia = example(IA, today=harness.clock.now())

    with capture_logs() as logs:
        async with session.post(f"{be.url}/api/v1/documents", data=ia) as response:
            status, retry_after, body = response.status, response.headers.get("Retry-After"), await response.json()

    assert (status, retry_after, body["error"]) == (503, "2", "disk full"), body
    assert body["detail"].startswith("the gateway's disk is full, so the request was not kept"), body
    assert "database or disk is full" not in body["detail"]  # SQLite's words are for the log
    said = [e for e in logs if e["event"].startswith(FULL)]
    assert len(said) == 1 and said[0]["log_level"] == "error", logs
    assert said[0]["data_dir"] == str(be.settings.data_dir)
    assert "database or disk is full" in said[0]["reason"]
    assert await metric(session, be, "permit_gateway_disk_full_total", endpoint="api") == 1

    await _make_space(be, limit)
    status, sent = await submit(session, be, ia)
    assert status == 202, sent


async def test_a_payload_file_that_cannot_be_written_is_a_503_naming_the_disk(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be = await harness.start("BE-FAMHP")

    def no_space(path: Path, data: bytes, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("gateway.store.payloads.write_atomically", no_space)
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        status, body = response.status, await response.json()
    assert (status, body["error"]) == (503, "disk full"), body
    assert await be.runner.app[NODE].store.recent(limit=5, direction=Direction.OUTBOUND, state=None) == []

    monkeypatch.undo()
    status, sent = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, sent


async def _state(gateway: Running, message_id: str, wanted: State) -> MessageRecord:
    """The message once it is in ``wanted`` (within 10 s)."""
    store = gateway.runner.app[NODE].store
    for _ in range(200):
        record = await store.find(Direction.OUTBOUND, message_id)
        if record is not None and record.state is wanted:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} is not {wanted}: {await store.find(Direction.OUTBOUND, message_id)}")


async def test_a_partners_message_while_the_disk_is_full_is_retried_and_delivered_once_there_is_space(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    limit = await _fill_database(ch)

    status, sent = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, sent

    waiting = await _state(be, sent["message_id"], State.RETRY_WAIT)
    reason = waiting.last_error or ""
    assert reason.startswith("HTTP 503 Service Unavailable from the endpoint of partner 'ch-swissmedic'"), reason
    assert "not an ebMS answer (text/plain; charset=utf-8: the gateway's disk is full" in reason, reason
    assert "cannot take messages now; sent again on schedule" in reason, reason
    assert await metric(session, ch, "permit_gateway_disk_full_total", endpoint="as4") >= 1

    await _make_space(ch, limit)
    assert waiting.next_attempt_at is not None
    harness.clock.advance(waiting.next_attempt_at - harness.clock.now())
    be.runner.app[NODE].dispatch_pump.wake()
    await _state(be, sent["message_id"], State.ACKNOWLEDGED)
    received = await ch.runner.app[NODE].store.recent(limit=5, direction=Direction.INBOUND, state=None)
    assert [r.message_id for r in received] == [sent["message_id"]]


async def test_outbox_files_wait_in_order_while_the_disk_is_full_and_go_once_there_is_space(
    harness: Harness,  # noqa: F811
) -> None:
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    ia = example(IA, today=harness.clock.now())
    (outbox / "a.xml").write_bytes(ia)
    (outbox / "b.xml").write_bytes(ia.replace(b"BE-IA-2026-0001<", b"BE-IA-2026-0002<"))
    limit = await _fill_database(be)

    with capture_logs() as logs:
        await folder.scan(be.runner.app)

    said = [e for e in logs if e["event"].startswith("outbox file not submitted: a disk is full")]
    assert [e["file"] for e in said] == ["a.xml"], logs  # b.xml waits behind it: it may cancel or amend it
    assert not any(e.get("exc_info") for e in logs), logs
    assert sorted(p.name for p in (outbox / folder.PROCESSING).glob("*.xml")) == ["a.xml", "b.xml"]
    assert not be.settings.folders.rejected.exists() or not any(be.settings.folders.rejected.iterdir())

    await _make_space(be, limit)
    await folder.scan(be.runner.app)
    assert sorted(p.name for p in (outbox / "sent").glob("*.xml")) == ["a.xml", "b.xml"]
    sent = await be.runner.app[NODE].store.recent(limit=5, direction=Direction.OUTBOUND, state=None)
    assert len(sent) == 2


async def _fill_every_page(gateway: Running) -> None:
    """``_fill_database``, and the free room inside its pages too: tiny rows until even a timeline note fails."""
    async with gateway.runner.app[NODE].store.engine.connect() as conn:
        await conn.exec_driver_sql("CREATE TABLE filler (b BLOB)")
        await conn.commit()
    await _fill_database(gateway)
    statements = (
        "INSERT INTO filler VALUES (randomblob(40))",
        "INSERT INTO message_events (message_pk, at, kind, state, detail) "
        "SELECT message_pk, at, 'filler', NULL, '{}' FROM message_events LIMIT 1",
    )
    async with gateway.runner.app[NODE].store.engine.connect() as conn:
        for statement in statements:
            with pytest.raises(OperationalError, match="database or disk is full"):
                for _ in range(100_000):
                    await conn.exec_driver_sql(statement)
                    await conn.commit()
            await conn.rollback()


async def test_a_retry_of_a_kept_message_gets_its_stored_receipt_while_the_disk_is_full(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """Its receipt was lost on the way: the partner sends it again. Answering needs only reads; before, the
    duplicate's timeline note failed and the answer was 503 "not kept" for a message kept and receipted."""
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    status, sent = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202, sent
    record = await _state(be, sent["message_id"], State.ACKNOWLEDGED)
    assert record.wire_sha256 is not None and record.wire_content_type is not None
    wire = be.runner.app[NODE].payloads.get(record.wire_sha256)
    await _fill_every_page(ch)

    with capture_logs() as logs:
        headers = {"Content-Type": record.wire_content_type}
        async with session.post(f"{ch.url}/as4", data=wire, headers=headers) as response:
            status, body = response.status, await response.read()

    assert status == 200 and b"Receipt" in body, body[:300]
    assert any(e["event"].startswith("a duplicate could not be noted") for e in logs), logs
    assert not any(e["event"].startswith(FULL) for e in logs), logs


async def _free_space_series(session: aiohttp.ClientSession, gateway: Running) -> list[str]:  # noqa: F811
    async with session.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200
        return [s for s in (await response.text()).splitlines() if s.startswith("permit_gateway_data_free_bytes{")]


async def test_the_free_space_is_exported_and_a_hung_data_share_holds_one_thread_at_most(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be = await harness.start("BE-FAMHP")
    [series] = await _free_space_series(session, be)
    assert series.startswith('permit_gateway_data_free_bytes{folder="data"} ') and float(series.split()[1]) > 0

    release, calls, real = threading.Event(), [], shutil.disk_usage

    def hung(path: Path) -> object:  # a network share that stopped answering
        calls.append(path)
        release.wait(30)
        return real(path)

    monkeypatch.setattr("gateway.interfaces.rest.shutil.disk_usage", hung)
    try:
        for _ in range(3):
            assert await _free_space_series(session, be) == []  # not the last value read, as if it were now
        assert len(calls) == 1, "a read still hanging is not started again"
    finally:
        release.set()
    await asyncio.sleep(0.2)
    assert len(await _free_space_series(session, be)) == 1
