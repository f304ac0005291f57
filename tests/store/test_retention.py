"""The retention purge on SQLite and PostgreSQL: old final messages go with their events, evidence and the
payload files no other message names; recent, unfinished and shared things stay; batches cover everything."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.clock import FixedClock
from gateway.errors import ConfigError
from gateway.metrics import RETENTION_PURGED
from gateway.settings import settings_from_dict
from gateway.store import (
    Direction,
    Event,
    Evidence,
    MessageStore,
    PayloadStore,
    State,
)
from gateway.store import payloads as payloads_module
from gateway.store.retention import purge
from gateway.store.schema import evidence, message_events
from tests.store.helpers import new_message

YEAR = timedelta(days=365)
KEEP = {State.ACKNOWLEDGED: YEAR, State.FAILED: YEAR, State.DELIVERED: YEAR, State.REJECTED: YEAR}
RECEIPT = Evidence(kind="receipt", content_type="application/soap+xml", body=b"<receipt/>")


async def _acknowledged(store: MessageStore, message_id: str, payload: str) -> int:
    record, _ = await store.add(new_message(message_id, payload_sha256=payload))
    await store.claim_due("a", limit=100, lease=timedelta(minutes=1))
    return (await store.move(record.id, Event.RECEIPT_OK, evidence=RECEIPT)).id


async def _rows(store: MessageStore, table: object, pk: int) -> int:
    async with store.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(table.c.message_pk == pk)  # type: ignore[attr-defined]
        return int((await conn.execute(query)).scalar_one())


def _age(payloads: PayloadStore, sha256: str) -> None:
    old = payloads.path(sha256).stat().st_mtime - 7200
    os.utime(payloads.path(sha256), (old, old))


async def test_old_final_messages_go_with_events_evidence_and_unshared_files(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    payloads = PayloadStore(tmp_path / "payloads")
    alone, shared = payloads.put(b"<permit>alone</permit>"), payloads.put(b"<permit>shared</permit>")
    for sha in (alone, shared):
        _age(payloads, sha)
    old = await _acknowledged(store, "old@be", alone)
    old_shared = await _acknowledged(store, "old-shared@be", shared)
    received, _ = await store.add(
        new_message("in@ch", payload_sha256=shared, direction=Direction.INBOUND), then=Event.ACCEPT
    )
    await store.move(received.id, Event.DELIVER)
    clock.advance(YEAR - timedelta(days=1))
    recent = await _acknowledged(store, "recent@be", shared)  # names the shared file: it stays
    pending, _ = await store.add(new_message("pending@be", payload_sha256=shared))  # not final: never purged
    before = RETENTION_PURGED.labels(state="ACKNOWLEDGED")._value.get()

    clock.advance(timedelta(days=2))
    report = await purge(store, payloads, KEEP, now=clock.now())

    assert report.by_state == {State.ACKNOWLEDGED: 2, State.DELIVERED: 1} and report.files == 1
    assert RETENTION_PURGED.labels(state="ACKNOWLEDGED")._value.get() == before + 2
    for gone in (old, old_shared, received.id):
        assert await store.find(Direction.OUTBOUND, "old@be") is None
        assert await _rows(store, message_events, gone) == 0 and await _rows(store, evidence, gone) == 0
    assert (await store.get(recent)).state is State.ACKNOWLEDGED
    assert (await store.get(pending.id)).state is State.SUBMITTED
    assert await store.get_evidence(recent, "receipt") is not None
    assert not payloads.path(alone).exists() and payloads.get(shared) == b"<permit>shared</permit>"
    assert (await purge(store, payloads, KEEP, now=clock.now())).messages == 0


async def test_purge_runs_in_batches_until_nothing_is_left(store: MessageStore, clock: FixedClock) -> None:
    for n in range(7):
        await _acknowledged(store, f"m{n}@be", "0" * 64)
    clock.advance(YEAR + timedelta(days=1))
    seen: list[int] = []
    original = store.purge_batch

    async def counting(older_than, *, limit):  # type: ignore[no-untyped-def]
        batch = await original(older_than, limit=limit)
        seen.append(batch.messages)
        return batch

    store.purge_batch = counting  # type: ignore[method-assign]
    report = await purge(store, PayloadStore(Path("/nonexistent")), KEEP, now=clock.now(), batch_size=3)
    assert report.messages == 7 and seen == [3, 3, 1]


async def test_a_file_reused_lately_is_kept_even_when_no_message_names_it(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    payloads = PayloadStore(tmp_path / "payloads")
    sha = payloads.put(b"<permit/>")
    _age(payloads, sha)
    await _acknowledged(store, "old@be", sha)
    assert payloads.put(b"<permit/>") == sha  # a new submission of the same bytes, not yet stored
    clock.advance(YEAR + timedelta(days=1))
    report = await purge(store, payloads, KEEP, now=clock.now())
    assert report.messages == 1 and report.files == 0 and payloads.path(sha).exists()


def test_inbound_retention_shorter_than_the_duplicate_window_is_refused(tmp_path: Path) -> None:
    identity = {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"}
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(
            {
                "identity": identity,
                "inbound": {"duplicate_window_hours": 720},
                "retention": {"delivered_days": 20},
            },
            base=tmp_path,
        )
    assert "[retention].delivered_days = 20 days" in str(caught.value)
    assert "[inbound].duplicate_window_hours = 720 hours" in str(caught.value)
    settings = settings_from_dict({"identity": identity}, base=tmp_path)
    assert settings.inbound.duplicate_window_hours == 720 and settings.retention.delivered_days == 365


async def test_claim_takes_at_most_limit_oldest_due_first(store: MessageStore, clock: FixedClock) -> None:
    ids = []
    for n in range(5):
        record, _ = await store.add(new_message(f"m{n}@be", payload_sha256="0" * 64))
        ids.append(record.id)
        clock.advance(timedelta(seconds=1))
    first = await store.claim_due("a", limit=2, lease=timedelta(minutes=1))
    second = await store.claim_due("b", limit=2, lease=timedelta(minutes=1))
    assert [r.id for r in first] == ids[:2] and [r.id for r in second] == ids[2:4]
    assert all(r.state is State.SENDING and r.attempts == 1 for r in first + second)
    assert [r.lease_owner for r in second] == ["b", "b"]


async def test_attachment_files_go_with_their_last_message_and_stay_while_another_names_them(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    payloads = PayloadStore(tmp_path / "payloads")
    permit, scan, shared = (payloads.put(d) for d in (b"<permit/>", b"%PDF scan", b"%PDF shared"))
    for sha in (permit, scan, shared):
        _age(payloads, sha)

    def described(*shas: str) -> list[dict[str, object]]:
        return [
            {"position": n, "filename": f"{n}.pdf", "mime_type": "application/pdf", "sha256": s, "size": 9}
            for n, s in enumerate(shas, start=1)
        ]

    old, _ = await store.add(
        replace(new_message("old@be", payload_sha256=permit), attachments=described(scan, shared))
    )
    await store.claim_due("a", limit=100, lease=timedelta(minutes=1))
    await store.move(old.id, Event.RECEIPT_OK, evidence=RECEIPT)
    clock.advance(YEAR + timedelta(days=1))
    await store.add(
        replace(new_message("pending@be", payload_sha256=permit), attachments=described(shared))
    )  # not final: kept

    report = await purge(store, payloads, KEEP, now=clock.now())

    assert report.by_state == {State.ACKNOWLEDGED: 1} and report.files == 1
    assert not payloads.path(scan).exists()
    assert payloads.get(shared) == b"%PDF shared" and payloads.get(permit) == b"<permit/>"
    assert await store.referenced([scan, shared, permit]) == {shared, permit}


async def test_half_written_incoming_files_from_a_crash_are_removed_after_the_grace(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    payloads = PayloadStore(tmp_path / "payloads")
    stale, fresh = payloads.incoming(), payloads.incoming()
    for incoming in (stale, fresh):
        incoming.write(b"half a request body")
        incoming.file.flush()
    leftover = next(
        p
        for p in (tmp_path / "payloads").glob(".incoming-*")
        if p.stat().st_ino == os.fstat(stale.file.fileno()).st_ino
    )
    old = leftover.stat().st_mtime - 7200
    os.utime(leftover, (old, old))

    report = await purge(store, payloads, KEEP, now=clock.now())

    assert report.files == 1 and not leftover.exists()
    assert len(list((tmp_path / "payloads").glob(".incoming-*"))) == 1  # the fresh one: maybe still arriving
    stale.close()
    fresh.close()
    assert list((tmp_path / "payloads").glob(".incoming-*")) == []


async def test_payload_files_no_message_ever_named_go_after_the_grace(
    store: MessageStore, clock: FixedClock, tmp_path: Path
) -> None:
    """A refused submission's attachment, a rolled-back unit of work, a crash between writing a file and naming
    it: such files were never named by a purged message, and stayed forever."""
    payloads = PayloadStore(tmp_path / "payloads")
    orphan, fresh, named = (payloads.put(b"<permit>%d</permit>" % n) for n in range(3))
    for sha in (orphan, named):
        _age(payloads, sha)
    await store.add(new_message("kept@be", payload_sha256=named))
    leftover = payloads.path(orphan).parent / ".tmp-crashed"
    leftover.write_bytes(b"half a payload")
    os.utime(leftover, (leftover.stat().st_mtime - 7200,) * 2)
    (payloads.path(orphan).parent / "not-a-payload").write_bytes(b"left alone")

    report = await purge(store, payloads, KEEP, now=clock.now())

    assert report.messages == 0 and report.files == 1
    assert not payloads.path(orphan).exists() and not leftover.exists()
    assert payloads.path(fresh).exists() and payloads.path(named).exists()
    assert (payloads.path(orphan).parent / "not-a-payload").exists()


def test_a_file_another_node_reuses_while_this_one_deletes_it_stays(tmp_path: Path) -> None:
    """A submission reusing the file between the purge's look and its delete (here or on another node sharing
    the data folder) was told the file is stored and then named a file that was gone. A crash half way through
    the delete loses nothing either."""
    node_a, node_b = PayloadStore(tmp_path / "payloads"), PayloadStore(tmp_path / "payloads")
    sha = node_a.put(b"<permit/>")
    _age(node_a, sha)
    path = node_a.path(sha)
    stat = Path.stat

    def reused_by_node_b_after_the_look(self: Path, *args: Any, **kwargs: Any) -> os.stat_result:
        found = stat(self, *args, **kwargs)
        if self == path:
            assert node_b.put(b"<permit/>") == sha  # told the file is stored
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "stat", reused_by_node_b_after_the_look)
        assert node_a.remove(sha, untouched_for=timedelta(hours=1)) is False
    assert node_b.get(sha) == b"<permit/>"

    # a crash between setting aside and deleting, just after a reuse touched the file: back at the next sweep
    os.replace(path, path.with_name(f".aside-{path.name}"))
    with pytest.MonkeyPatch.context() as patch:
        assert node_a.old_files(sha[:2], untouched_for=timedelta(hours=1)) == []
        assert not path.exists(), "set aside a moment ago: a remove may be under way"
        patch.setattr(payloads_module, "ASIDE_SECONDS", -1.0)  # as if a minute had passed
        assert node_a.old_files(sha[:2], untouched_for=timedelta(hours=1)) == []
    assert node_a.get(sha) == b"<permit/>"


def test_a_file_another_nodes_sweep_puts_back_mid_delete_is_left_to_the_next_purge(tmp_path: Path) -> None:
    """Node B's sweep put back the file node A had just set aside: A's look again failed with FileNotFoundError,
    which ended A's whole purge run."""
    node_a, node_b = PayloadStore(tmp_path / "payloads"), PayloadStore(tmp_path / "payloads")
    sha = node_a.put(b"<permit/>")
    _age(node_a, sha)
    replace = os.replace

    def node_b_sweeps_after_the_set_aside(source: Any, target: Any) -> None:
        replace(source, target)
        if str(target).endswith(f".aside-{sha[2:]}"):
            node_b.old_files(sha[:2], untouched_for=timedelta(hours=1))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(payloads_module, "ASIDE_SECONDS", -1.0)
        patch.setattr(payloads_module.os, "replace", node_b_sweeps_after_the_set_aside)
        assert node_a.remove(sha, untouched_for=timedelta(hours=1)) is False
    assert node_a.get(sha) == b"<permit/>"
