"""Delivery review: a delivery renews its claim while it runs and changes nothing once it lost it (no file
written again after another node delivered, no stale failure recorded), close() waits for a folder write it
cannot cancel, folder writes have threads of their own and a few per partner, delivered files are readable by
the national system's account, webhook failures say why, the delivery id reaches the consumer, and temporary
files a crash left in a delivery folder are deleted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.files import write_atomically as real_write
from gateway.inbound import deliver as deliver_mod
from gateway.inbound.deliver import FolderDelivery, delivery_id
from gateway.metrics import DELIVERY_ATTEMPTS
from gateway.profiles import ProfileRegistry
from gateway.store import Direction, Event, MessageRecord, NewMessage, PayloadStore, State
from tests.inbound.conftest import PERMIT, Inbound, partner


class HeldPayloads(PayloadStore):
    """A payload read that hangs until ``gate`` opens (a hung NFS mount), then fails if ``fail`` says so."""

    def __init__(self, root: Path, gate: threading.Event, *, fail: bool = False) -> None:
        super().__init__(root)
        self.gate, self.fail = gate, fail

    def get(self, sha256: str) -> bytes:
        self.gate.wait(10)
        if self.fail:
            raise OSError(5, "Input/output error")
        return super().get(sha256)


def held_xml_writes(monkeypatch: pytest.MonkeyPatch, gate: threading.Event) -> list[Path]:
    """The permit's file write hangs until ``gate`` opens; returns the permit files written since."""
    written: list[Path] = []

    def write(path: Path, data: bytes, **options: Any) -> None:
        if path.suffix == ".xml":
            gate.wait(10)
            written.append(path)
        real_write(path, data, **options)

    monkeypatch.setattr(deliver_mod, "write_atomically", write)
    return written


def second_node(inbound: Inbound, registry: ProfileRegistry) -> FolderDelivery:
    worker = inbound.worker(registry)
    worker._node_id = "node-2"
    return worker


def permits(inbox: Path) -> list[str]:
    return sorted(p.name for p in inbox.glob("*.xml"))


def failed_count(partner_id: str) -> float:
    return DELIVERY_ATTEMPTS.labels(partner=partner_id, method="folder", outcome="failed")._value.get()


async def test_the_claim_is_renewed_while_a_folder_write_hangs(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    held_xml_writes(monkeypatch, gate)
    first = FolderDelivery(
        store=inbound.store,
        payloads=inbound.payloads,
        inbox=inbound.inbox,
        clock=inbound.clock,
        node_id="node-1",
        profiles=registry,
        http_timeout=0.1,
        lease=timedelta(seconds=0.3),  # renewed every 0.1 s
    )
    assert await first.run_once() == 1
    await asyncio.sleep(0.1)
    inbound.clock.advance(timedelta(seconds=10))  # far past the first lease
    await asyncio.sleep(0.35)

    assert await second_node(inbound, registry).run_once() == 0  # still node-1's: renewed meanwhile
    gate.set()
    assert await first.drain() == 1
    after = await inbound.store.get(record.id)
    assert (after.state, after.attempts, after.lease_owner) == (State.DELIVERED, 1, None)
    assert len(permits(inbound.inbox)) == 1


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
async def test_an_attempt_that_lost_its_claim_writes_nothing_after_another_node_delivered(
    inbound: Inbound,
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    first = inbound.worker(registry)
    first._payloads = HeldPayloads(inbound.payloads._root, gate)
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)  # node-1 hangs reading the permit, before its first file
    inbound.clock.advance(first._claim_lease + timedelta(seconds=1))
    assert await second_node(inbound, registry).drain() == 1
    for taken in inbound.inbox.iterdir():  # the national system imports the files and removes them
        taken.unlink()

    with structlog.testing.capture_logs() as logs:
        gate.set()
        await asyncio.wait(set(first._delivering))
    assert list(inbound.inbox.iterdir()) == []  # not delivered again
    assert [entry["event"] for entry in logs] == ["delivery abandoned"]
    assert logs[0]["log_level"] == "warning"
    kinds = [event.kind for event in await inbound.store.events(record.id)]
    assert kinds == ["received", "accept", "deliver"]


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_write_that_outlived_its_claim_is_a_warning_not_a_false_error(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    first = inbound.worker(registry)
    second = second_node(inbound, registry)
    held_xml_writes(monkeypatch, gate)  # node-1 hangs inside its last write, past every check
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)
    inbound.clock.advance(first._claim_lease + timedelta(seconds=1))
    assert await second.run_once() == 1  # node-2 claims it and hangs writing it too

    with structlog.testing.capture_logs() as logs:
        gate.set()
        await asyncio.wait({*first._delivering, *second._delivering})
    levels = sorted((entry["log_level"], entry["event"].split(":")[0]) for entry in logs)
    assert levels == [("info", "delivered"), ("warning", "delivered again by a stale attempt")]
    stale = next(entry for entry in logs if entry["log_level"] == "warning")
    assert stale["delivery_id"] == delivery_id(record)
    after = await inbound.store.get(record.id)
    assert (after.state, after.attempts) == (State.DELIVERED, 2)  # node-2's attempt
    assert [event.kind for event in await inbound.store.events(record.id)].count("deliver") == 1


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_stale_failure_is_not_recorded_on_a_delivered_message(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    first = inbound.worker(registry)
    first._payloads = HeldPayloads(inbound.payloads._root, gate, fail=True)
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)
    inbound.clock.advance(first._claim_lease + timedelta(seconds=1))
    assert await second_node(inbound, registry).drain() == 1
    delivered = await inbound.store.get(record.id)
    failures = failed_count(record.partner_id)

    gate.set()
    await asyncio.wait(set(first._delivering))
    after = await inbound.store.get(record.id)
    assert (after.state, after.attempts, after.last_error, after.next_attempt_at) == (
        State.DELIVERED,
        delivered.attempts,
        None,
        delivered.next_attempt_at,
    )
    assert "delivery_failed" not in [event.kind for event in await inbound.store.events(record.id)]
    assert failed_count(record.partner_id) == failures  # PermitGatewayNationalDeliveryFailing stays quiet


async def test_close_waits_for_a_folder_write_and_records_it_delivered(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    written = held_xml_writes(monkeypatch, gate)
    first = inbound.worker(registry)
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)
    threading.Timer(0.5, gate.set).start()  # the write completes while close() waits

    await first.close()
    assert len(written) == 1
    after = await inbound.store.get(record.id)
    assert (after.state, after.lease_owner) == (State.DELIVERED, None)
    assert await second_node(inbound, registry).drain() == 0
    assert len(permits(inbound.inbox)) == 1


async def test_close_stops_a_folder_write_before_its_files_and_gives_the_message_back(
    inbound: Inbound,
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    first = inbound.worker(registry)
    first._payloads = HeldPayloads(inbound.payloads._root, gate)
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)
    threading.Timer(0.5, gate.set).start()

    await first.close()
    last = (await inbound.store.events(record.id))[-1]
    assert last.kind == "delivery_interrupted"
    assert await second_node(inbound, registry).drain() == 1  # given back, due at once
    for taken in inbound.inbox.iterdir():
        taken.unlink()
    await asyncio.sleep(0.5)
    assert list(inbound.inbox.iterdir()) == []  # the stopped thread wrote nothing


async def test_close_leaves_a_write_still_hung_to_its_claim(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    held_xml_writes(monkeypatch, gate)
    monkeypatch.setattr(deliver_mod, "CLOSE_WAIT_SECONDS", 0.3, raising=False)
    first = inbound.worker(registry)
    assert await first.run_once() == 1
    await asyncio.sleep(0.2)
    try:
        await first.close()
        held = await inbound.store.get(record.id)
        assert (held.state, held.lease_owner) == (State.ACCEPTED, "node-1")
        assert await second_node(inbound, registry).drain() == 0  # not delivered beside the hung write
    finally:
        gate.set()


async def test_a_hung_folder_holds_up_only_its_own_partner(
    inbound: Inbound, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung, healthy = tmp_path / "hung", tmp_path / "healthy"
    gate = threading.Event()
    inside: list[Path] = []

    def write(path: Path, data: bytes, **options: Any) -> None:
        if path.parent == hung:
            inside.append(path)
            gate.wait(20)
        real_write(path, data, **options)

    monkeypatch.setattr(deliver_mod, "write_atomically", write)
    registry = ProfileRegistry(
        [
            partner("ch-swissmedic", delivery={"method": "folder", "folder": str(hung)}),
            partner("de-bfarm", delivery={"method": "folder", "folder": str(healthy)}),
        ]
    )
    for n in range(12):
        await inbound.accepted(n, partner_id="ch-swissmedic")
    other = await inbound.accepted(100, partner_id="de-bfarm")
    worker = inbound.worker(registry)
    try:
        assert await worker.run_once() == 13
        await asyncio.sleep(0.5)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "parsed"), 2) == "parsed"  # the receive path
        for _ in range(40):
            if (await inbound.store.get(other.id)).state is State.DELIVERED:
                break
            await asyncio.sleep(0.05)
        assert (await inbound.store.get(other.id)).state is State.DELIVERED
        assert len(inside) == deliver_mod.FOLDER_WRITES_PER_PARTNER  # the hung partner's writes, no more
    finally:
        gate.set()
    await asyncio.wait(set(worker._delivering))
    assert len(permits(hung)) == 12


async def message_with_attachment(inbound: Inbound) -> MessageRecord:
    content = b"%PDF-1.7 supporting document"
    new = NewMessage(
        direction=Direction.INBOUND,
        message_id="m-att@ch-swissmedic.test",
        conversation_id="c-att",
        partner_id="ch-swissmedic",
        from_party="CH-SWISSMEDIC",
        to_party="BE-FAMHP",
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        document_type="ImportAuthorization",
        document_number="CH-IA-2026-0077",
        payload_sha256=inbound.payloads.put(PERMIT),
        payload_mime_type="application/xml",
        attachments=[
            {
                "position": 1,
                "filename": "licence.pdf",
                "mime_type": "application/pdf",
                "sha256": inbound.payloads.put(content),
                "size": len(content),
            }
        ],
    )
    record, _ = await inbound.store.add(new, then=Event.ACCEPT)
    return record


def umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line in /proc/self/status")


async def test_delivered_files_are_readable_by_the_national_system_and_payloads_stay_private(
    inbound: Inbound,
) -> None:
    assert umask() & 0o044 == 0, "run the tests under a umask that lets others read (022)"
    await message_with_attachment(inbound)
    assert await inbound.worker(ProfileRegistry([partner()])).drain() == 1

    delivered = [p for p in inbound.inbox.rglob("*") if p.is_file()]
    assert len(delivered) == 3  # the permit, its metadata, the attachment
    for path in delivered:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask(), path
    stored = inbound.payloads._root
    kept = [p for p in stored.rglob("*") if p.is_file()]
    assert kept and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)


class Webhook:
    """Answers by the permit's document number's last digit: 1 hangs, 2 is a 503 with a long body, else 200."""

    def __init__(self) -> None:
        self.delivery_ids: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.delivery_ids.append(request.headers.get("X-Permit-Delivery-Id", ""))
        kind = request.headers["X-Permit-Document-Number"][-1]
        if kind == "1":
            await asyncio.sleep(3)
        if kind == "2":
            body = '{"error": "schema\nvalidation failed", "detail": "é' + "x" * 100_000 + '"}'
            return web.Response(status=503, text=body)
        return web.Response(status=200)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield hook, f"http://127.0.0.1:{server.port}/hook"
    await server.close()


async def test_webhook_failures_say_why_and_the_delivery_id_is_sent(
    inbound: Inbound, webhook: tuple[Webhook, str]
) -> None:
    _, url = webhook
    hung, refused, taken = [await inbound.accepted(n) for n in (1, 2, 3)]
    registry = ProfileRegistry([partner(delivery={"method": "webhook", "url": url})])
    async with aiohttp.ClientSession() as session:
        assert await inbound.worker(registry, timeout=0.5, session=session).drain() == 1

    timed_out = (await inbound.store.get(hung.id)).last_error
    assert timed_out == (
        f"webhook {url}: no answer within 0.5 s ([outbound] http_timeout_seconds); check that the national "
        "system's webhook is up, or raise the setting if it takes longer"
    )
    answered = (await inbound.store.get(refused.id)).last_error
    assert answered is not None
    start = f"webhook {url} answered HTTP 503: " + '{"error": "schema\\nvalidation failed", "detail": "\\xe9'
    assert answered.startswith(start) and answered.endswith("...")
    assert len(answered) < len(start) + 220
    assert (await inbound.store.get(taken.id)).state is State.DELIVERED


async def test_the_delivery_id_reaches_webhook_and_folder_consumers(
    inbound: Inbound, webhook: tuple[Webhook, str]
) -> None:
    hook, url = webhook
    pushed = await inbound.accepted(3)
    registry = ProfileRegistry([partner(delivery={"method": "webhook", "url": url})])
    async with aiohttp.ClientSession() as session:
        assert await inbound.worker(registry, session=session).drain() == 1
    expected = hashlib.sha256(f"{pushed.from_party}\0{pushed.message_id}".encode()).hexdigest()
    assert hook.delivery_ids == [expected] == [delivery_id(pushed)]

    written = await inbound.accepted(4, partner_id="de-bfarm")
    assert await inbound.worker(ProfileRegistry([partner("de-bfarm")])).drain() == 1
    meta = json.loads(next(inbound.inbox.glob("*.json")).read_text())
    assert meta["delivery_id"] == delivery_id(written) != delivery_id(pushed)


async def test_temporary_files_a_crash_left_in_delivery_folders_are_deleted(
    inbound: Inbound, tmp_path: Path
) -> None:
    own = tmp_path / "de-inbox"
    registry = ProfileRegistry([partner(), partner("de-bfarm", delivery={"method": "folder", "folder": str(own)})])
    old = time.time() - 2 * 3600
    stale = [
        inbound.inbox / ".incoming-abc123",
        inbound.inbox / "CH-IA-1.0a1b.attachments" / ".incoming-def456",
        own / ".incoming-ghi789",
    ]
    kept = [
        inbound.inbox / ".incoming-fresh",  # a write in progress
        inbound.inbox / "incoming-not-ours",
        inbound.inbox / "CH-IA-1.0a1b.xml",
        inbound.inbox / "deeper" / ".incoming-elsewhere",
        own / ".tmp-someone-elses",
    ]
    for path in [*stale, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    for path in [*stale, *kept]:
        if path.name != ".incoming-fresh":
            os.utime(path, (old, old))
    (inbound.inbox / ".incoming-folder").mkdir()
    os.utime(inbound.inbox / ".incoming-folder", (old, old))

    await inbound.worker(registry).drain()
    assert [path for path in stale if path.exists()] == []
    assert [path for path in kept if not path.exists()] == []
    assert (inbound.inbox / ".incoming-folder").is_dir()


async def test_a_message_whose_partner_profile_is_gone_is_not_delivered_to_the_default_folder(
    inbound: Inbound,
) -> None:
    """Its profile delivered by webhook; once the profile was removed the message went to [folders].inbox and
    was marked DELIVERED, and the national system that reads the webhook never had it."""
    record = await inbound.accepted(1)
    worker = inbound.worker(ProfileRegistry([]))

    assert await worker.drain() == 0

    held = await inbound.store.get(record.id)
    assert held.state is State.ACCEPTED and permits(inbound.inbox) == []
    assert held.last_error is not None
    assert f"no partner profile {record.partner_id!r} on this node" in held.last_error
    assert "restore the profile" in held.last_error
    assert held.next_attempt_at is not None and held.next_attempt_at > inbound.clock.now()
