"""Partner profiles that change under traffic: a node without a partner's profile, a reload during a receive, a
renamed profile, and retiring a partner with messages from it still to deliver."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta

import aiohttp
import pytest

from gateway.interfaces.demo import Running, message, start_gateway
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.metrics import REGISTRY
from gateway.settings import AdminSettings, ProfileSettings, StoreSettings
from gateway.store import Direction, Event, MessageRecord, NewMessage, State
from tests.conftest import free_port
from tests.e2e.conftest import Harness, example, metric, submit
from tests.e2e.test_two_gateways import _forged_user_message, _post_as4

IA = "BE-IA-2026-0001.xml"
NO_PROFILE = "no profile for partner 'ch-swissmedic' on this node"
FAILURES = {"direction": "out", "partner": "ch-swissmedic"}


async def _queued(harness: Harness, session: aiohttp.ClientSession) -> tuple[str, Running]:
    """A message from Belgium to Switzerland waiting for its retry (Switzerland is down)."""
    be = await harness.start("BE-FAMHP")
    status, body = await submit(session, be, example(IA, today=harness.clock.now()))
    assert status == 202
    await be.runner.app[NODE].dispatcher.drain()
    record = await be.runner.app[NODE].store.find(Direction.OUTBOUND, body["message_id"])
    assert record is not None and record.state is State.RETRY_WAIT
    return body["message_id"], be


async def _found(be: Running, message_id: str) -> MessageRecord:
    record = await be.runner.app[NODE].store.find(Direction.OUTBOUND, message_id)
    assert record is not None
    return record


async def _past_time_to_live(harness: Harness, be: Running, message_id: str) -> None:
    """The clock past the message's time to live, and a send sweep."""
    expires_at = (await _found(be, message_id)).expires_at
    assert expires_at is not None
    harness.clock.advance(expires_at - harness.clock.now() + timedelta(minutes=1))
    await be.runner.app[NODE].dispatcher.drain()


def _reload(be: Running, why: str) -> None:
    assert be.runner.app[PROFILE_WATCHER].reload(why)


async def test_a_node_without_the_partners_profile_leaves_its_messages_to_a_node_with_it(
    pg_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,
    session: aiohttp.ClientSession,
) -> None:
    """Two nodes on one PostgreSQL; node B does not have Switzerland's profile yet (a rolling deployment)."""
    folder_b = harness.tmp / "profiles-b"
    shutil.copytree(harness.tmp / "profiles", folder_b)
    (folder_b / "ch-swissmedic.yaml").unlink()
    base = harness.settings("BE-FAMHP", store=StoreSettings(url=pg_url))
    a = await start_gateway("A", base, harness.clock)
    profiles_b = ProfileSettings(folder=folder_b, certificates=base.profiles.certificates, poll_seconds=60)
    b_settings = base.model_copy(
        update={"http": base.http.model_copy(update={"port": free_port()}), "profiles": profiles_b}
    )
    b = await start_gateway("B", b_settings, harness.clock)
    try:
        node_a, node_b = a.runner.app[NODE], b.runner.app[NODE]
        status, body = await submit(session, a, example(IA, today=harness.clock.now()))
        assert status == 202
        await node_a.dispatcher.drain()  # Switzerland is down: RETRY_WAIT
        harness.clock.advance(timedelta(minutes=5))

        await node_b.dispatcher.drain()  # B's sweep comes first: it leaves the message alone
        record = await node_b.store.find(Direction.OUTBOUND, body["message_id"])
        assert record is not None and record.state is State.RETRY_WAIT and record.attempts == 1
        held = REGISTRY.get_sample_value("permit_gateway_partner_held", {"partner": "ch-swissmedic"})
        assert held == 1

        # a lane of B that claimed it just before a reload took the profile away gives it back untried
        [claimed] = await node_b.store.claim_due(
            node_b.node_id, limit=1, lease=timedelta(minutes=2), partners=["ch-swissmedic"]
        )
        await node_b.dispatcher._send(claimed)
        record = await node_b.store.get(claimed.id)
        assert record.state is State.RETRY_WAIT and record.attempts == 1
        assert record.next_attempt_at is not None and record.next_attempt_at <= harness.clock.now()
        assert record.last_error is not None and NO_PROFILE in record.last_error
        assert f"({node_b.node_id})" in record.last_error

        await harness.start("CH-SWISSMEDIC")
        await node_a.dispatcher.drain()  # A has the profile: it sends the message
        record = await node_a.store.get(claimed.id)
        assert record.state is State.ACKNOWLEDGED
        assert Event.FINAL_ERROR.value not in [e.kind for e in await node_a.store.events(record.id)]
    finally:
        await a.runner.cleanup()
        await b.runner.cleanup()


async def test_a_message_whose_partner_profile_was_removed_is_held_then_fails_at_its_time_to_live(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    message_id, be = await _queued(harness, session)
    node = be.runner.app[NODE]
    before = await metric(session, be, "permit_gateway_messages_failed_total", **FAILURES)
    (harness.tmp / "profiles" / "ch-swissmedic.yaml").unlink()
    _reload(be, "test: ch-swissmedic removed")
    harness.clock.advance(timedelta(minutes=5))

    await node.dispatcher.drain()
    held = await message(session, be, message_id)
    assert held is not None and held["state"] == "RETRY_WAIT"
    assert await metric(session, be, "permit_gateway_partner_held", partner="ch-swissmedic") == 1

    await _past_time_to_live(harness, be, message_id)
    failed = await message(session, be, message_id)
    assert failed is not None and failed["state"] == "FAILED"
    assert failed["last_error"].startswith("its time to live ran out while it was held unsent: " + NO_PROFILE)
    assert "add the profile to this node's profiles folder" in failed["last_error"]
    assert await metric(session, be, "permit_gateway_messages_failed_total", **FAILURES) == before + 1


async def test_a_reload_during_a_receive_does_not_change_who_sent_the_message(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belgium's profile is retired after its message was opened and verified, before it is stored: the message
    is the one its sender was identified for, answered with a receipt, not an HTTP 500."""
    ch = await harness.start("CH-SWISSMEDIC")
    store, watcher = ch.runner.app[NODE].store, ch.runner.app[PROFILE_WATCHER]
    mid = "reload-mid-receive@be-famhp.test"
    lookup = store.find

    async def find_then_reload(direction: Direction, message_id: str, *args: str) -> object:
        found = await lookup(direction, message_id, *args)
        if message_id == mid and direction is Direction.INBOUND:
            (harness.tmp / "profiles" / "be-famhp.yaml").unlink()
            assert await asyncio.to_thread(watcher.reload, "test: be-famhp removed")
        return found

    monkeypatch.setattr(store, "find", find_then_reload)
    content_type, body = _forged_user_message(harness, example(IA, today=harness.clock.now()), mid)
    status, _, _ = await _post_as4(session, ch.url, content_type, body)

    assert status == 200
    record = await lookup(Direction.INBOUND, mid)
    assert record is not None and record.partner_id == "be-famhp"
    assert record.state in (State.ACCEPTED, State.DELIVERED)


async def test_a_failed_message_to_a_renamed_profile_is_retried_to_it(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    message_id, be = await _queued(harness, session)
    node = be.runner.app[NODE]
    path = harness.tmp / "profiles" / "ch-swissmedic.yaml"
    path.write_text(path.read_text().replace("id: ch-swissmedic", "id: ch-smc", 1))
    _reload(be, "test: ch-swissmedic renamed ch-smc")
    await _past_time_to_live(harness, be, message_id)
    failed = await _found(be, message_id)
    assert failed.state is State.FAILED and NO_PROFILE in (failed.last_error or "")
    await harness.start("CH-SWISSMEDIC")  # the retry goes at once

    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "renamed"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["message_id"] == message_id
    again = await _found(be, message_id)
    assert again.partner_id == "ch-smc"
    [renamed] = [e for e in await node.store.events(again.id) if e.kind == Event.OPERATOR_RETRY.value]
    assert renamed.detail["partner_renamed"] == {"from": "ch-swissmedic", "to": "ch-smc"}
    await node.dispatcher.drain()
    assert (await _found(be, message_id)).state is State.ACKNOWLEDGED


async def test_retrying_a_message_whose_partner_has_no_profile_says_how_to_send_it(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    message_id, be = await _queued(harness, session)
    (harness.tmp / "profiles" / "ch-swissmedic.yaml").unlink()
    _reload(be, "test: ch-swissmedic removed")
    await _past_time_to_live(harness, be, message_id)
    assert (await _found(be, message_id)).state is State.FAILED

    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry") as r:
        assert r.status == 409
        answer = await r.json()
        detail = answer["detail"]
    assert answer["fix"].startswith("restore the partner's profile and retry, or submit the document again")
    assert "partner 'ch-swissmedic'" in detail and "has no profile now" in detail
    assert "restore its profile" in detail and "submit the document again to send it to another partner" in detail
    assert (await _found(be, message_id)).state is State.FAILED


async def test_retiring_a_partner_whose_received_messages_wait_for_delivery_needs_force(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REVIEW_ADMIN_TOKEN", "review-admin-token")
    ch = await harness.start("CH-SWISSMEDIC", admin=AdminSettings(token_env="TEST_REVIEW_ADMIN_TOKEN"))
    node = ch.runner.app[NODE]
    received = NewMessage(
        direction=Direction.INBOUND,
        message_id="waiting@be-famhp.test",
        conversation_id="c-1",
        partner_id="be-famhp",
        from_party="BE-FAMHP",
        to_party="CH-SWISSMEDIC",
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        payload_sha256="0" * 64,
        payload_mime_type="application/xml",
        next_attempt_at=harness.clock.now() + timedelta(days=1),  # the national system is down
    )
    record, _ = await node.store.add(received, then=Event.ACCEPT)
    assert record.state is State.ACCEPTED
    auth = {"Authorization": "Bearer review-admin-token"}
    url = f"{ch.url}/api/v1/admin/profiles/be-famhp"
    async with session.get(url, headers=auth) as r:
        etag = r.headers["ETag"]

    async with session.delete(url, headers=auth | {"If-Match": etag}) as r:
        assert r.status == 409
        error = (await r.json())["error"]
    assert "0 message(s) to 'be-famhp' are still on their way" in error
    assert "1 message(s) received from 'be-famhp' still wait for delivery" in error
    assert "?force=true" in error
    assert "be-famhp" in node.partners.registry
    async with session.delete(f"{url}?force=true", headers=auth | {"If-Match": etag}) as r:
        assert r.status == 200
    assert "be-famhp" not in node.partners.registry
