"""Two partners may use the same MessageId (the store keeps both: its key includes the sender). Each message gets
its own delivery file, and REST pull fetches and acknowledges exactly the message it lists."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.inbound.pull import AmbiguousMessageId, NotPullable, PullInbox
from gateway.interfaces import rest
from gateway.interfaces.keys import NODE
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.inbound.conftest import Inbound, partner

SAME = "1@gateway.local"


def _name(number: str, from_party: str, message_id: str) -> str:
    key = f"{from_party}\0{message_id}".encode()
    return f"{number}.{hashlib.sha256(key).hexdigest()[:12]}"


async def test_two_partners_same_message_id_and_number_get_a_file_each(inbound: Inbound) -> None:
    swiss = await inbound.accepted(1, message_id=SAME, data=b"<ImportAuthorization>CH</ImportAuthorization>")
    german = await inbound.accepted(
        1, partner_id="de-bfarm", message_id=SAME, data=b"<ImportAuthorization>DE</ImportAuthorization>"
    )
    worker = inbound.worker(ProfileRegistry([partner(), partner("de-bfarm")]))

    assert await worker.drain() == 2

    names = {
        _name("CH-IA-2026-0001", "CH-SWISSMEDIC", SAME): b"<ImportAuthorization>CH</ImportAuthorization>",
        _name("CH-IA-2026-0001", "DE-BFARM", SAME): b"<ImportAuthorization>DE</ImportAuthorization>",
    }  # NUMBER.HASH as before, the hash of sender and MessageId: the same name when delivered again
    assert {p.name: p.read_bytes() for p in inbound.inbox.glob("*.xml")} == {
        f"{n}.xml": d for n, d in names.items()
    }
    for name in names:
        meta = json.loads((inbound.inbox / f"{name}.json").read_text())
        assert meta["message_id"] == SAME
    senders = {json.loads((inbound.inbox / f"{n}.json").read_text())["from_party"] for n in names}
    assert senders == {"CH-SWISSMEDIC", "DE-BFARM"}
    assert {(await inbound.store.get(r.id)).state for r in (swiss, german)} == {State.DELIVERED}


async def test_rest_pull_fetches_and_acks_the_listed_message_not_another_partners(inbound: Inbound) -> None:
    pushed = await inbound.accepted(1, message_id=SAME, data=b"<ImportAuthorization>CH</ImportAuthorization>")
    pulled = await inbound.accepted(
        2, partner_id="de-bfarm", message_id=SAME, data=b"<ImportAuthorization>DE</ImportAuthorization>"
    )
    registry = ProfileRegistry([partner(), partner("de-bfarm", delivery={"method": "rest-pull"})])
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=registry)

    assert [r.id for r in await pull.waiting()] == [pulled.id]
    record, data = await pull.fetch(SAME)
    assert (record.id, data) == (pulled.id, b"<ImportAuthorization>DE</ImportAuthorization>")
    acked = await pull.ack(SAME)
    assert (acked.record.id, acked.record.state, acked.moved) == (pulled.id, State.DELIVERED, True)

    assert (await inbound.store.get(pushed.id)).state is State.ACCEPTED  # still the folder delivery's
    assert await inbound.worker(registry).drain() == 1
    assert (await inbound.store.get(pushed.id)).state is State.DELIVERED


async def test_rest_pull_refuses_a_message_id_two_pulling_partners_used(inbound: Inbound) -> None:
    first = await inbound.accepted(1, message_id=SAME)
    second = await inbound.accepted(2, partner_id="de-bfarm", message_id=SAME)
    pulling = {"method": "rest-pull"}
    registry = ProfileRegistry([partner(delivery=pulling), partner("de-bfarm", delivery=pulling)])
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=registry)

    assert [r.id for r in await pull.waiting()] == [first.id, second.id]
    for attempt in (pull.fetch, pull.ack):
        with pytest.raises(AmbiguousMessageId) as refused:
            await attempt(SAME)
        assert str(refused.value) == (
            f"MessageId {SAME!r} names more than one REST-pull message: partners ch-swissmedic (CH-SWISSMEDIC), "
            "de-bfarm (DE-BFARM) each sent one, and a MessageId must name one message to be fetched or "
            "acknowledged; set another delivery method (folder, webhook or soap) in all but one of these "
            "partners' profiles, so their copies are pushed, and pull the remaining one"
        )
        assert isinstance(refused.value, NotPullable)
    assert {(await inbound.store.get(r.id)).state for r in (first, second)} == {State.ACCEPTED}

    # the fix the refusal names: Switzerland's copy is pushed, Germany's is pulled
    switched = ProfileRegistry([partner(), partner("de-bfarm", delivery=pulling)])
    assert await inbound.worker(switched).drain() == 1
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=switched)
    assert (await pull.ack(SAME)).record.id == second.id


async def test_a_listed_message_is_fetched_after_its_partners_party_id_changed(inbound: Inbound) -> None:
    """Found by partner, as listed: by the profile's current PartyId, a message received before the partner moved
    to an eDelivery PartyId was listed but could not be fetched or acknowledged."""
    kept = await inbound.accepted(1)  # from CH-SWISSMEDIC
    moved = partner(delivery={"method": "rest-pull"}, party_id="0088:7613000000001")
    pull = PullInbox(store=inbound.store, payloads=inbound.payloads, profiles=ProfileRegistry([moved]))
    assert [r.message_id for r in await pull.waiting()] == [kept.message_id]
    record, _ = await pull.fetch(kept.message_id)
    assert record.id == kept.id and (await pull.ack(kept.message_id)).moved


async def test_the_rest_api_answers_an_ambiguous_message_id_with_409_and_the_fix(inbound: Inbound) -> None:
    await inbound.accepted(1, message_id=SAME)
    await inbound.accepted(2, partner_id="de-bfarm", message_id=SAME)
    pulling = {"method": "rest-pull"}
    registry = ProfileRegistry([partner(delivery=pulling), partner("de-bfarm", delivery=pulling)])
    app = web.Application()
    app[NODE] = SimpleNamespace(  # type: ignore[misc]  # the inbox routes use these three of the node
        store=inbound.store, payloads=inbound.payloads, partners=SimpleNamespace(registry=registry)
    )
    app.router.add_routes(rest.routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for method, path in (("GET", f"/api/v1/inbox/{SAME}"), ("POST", f"/api/v1/inbox/{SAME}/ack")):
            async with client.request(method, path) as response:
                assert response.status == 409, (method, path)
                assert "set another delivery method" in (await response.json())["error"]
        async with client.get("/api/v1/inbox/nobody@x") as response:
            assert response.status == 404
