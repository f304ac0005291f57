"""One-Way/Pull between two real gateways on loopback: Switzerland's gateway cannot be reached, so Belgium
keeps what it sends there (``transport: pull``) and Switzerland fetches it (``pull.receive_by_pulling``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from gateway.as4 import (
    DEFAULT_MPC,
    MAX_SIGNAL_BYTES,
    ErrorReceived,
    KeyPair,
    Outgoing,
    Payload,
    PullRequest,
    SecurityPolicy,
    build_pull_request,
    build_receipt,
    build_user_message,
    is_empty_mpc,
    mime,
    parse_incoming,
    parse_pull_answer,
    parse_response,
    peek_signal,
)
from gateway.as4.envelope import new_draft
from gateway.as4.header import add_pull_request
from gateway.interfaces.demo import Running, start_gateway, submit, wait_for
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from tests.conftest import free_port, make_key_pair
from tests.e2e.conftest import Harness, example, permit_user_message

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"
MPC = "urn:permit-gateway:mpc:be-to-ch"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"


def _profile(party: str, body: str) -> str:
    name = {BE: "Federal Agency for Medicines and Health Products", CH: "Swissmedic"}[party]
    stem = party.lower()
    return (
        f"id: {stem}\nauthority_name: {name}\ncountry: {party[:2]}\nparty_id: {party}\n"
        f"security:\n  signing_certificate: {stem}.crt.pem\n{body}"
    )


@pytest.fixture
def pull_harness(harness: Harness) -> Harness:
    """Belgium's profile for Switzerland: no endpoint, it pulls on MPC; Switzerland's for Belgium: pull from it."""
    be_folder, ch_folder = harness.tmp / "be-profiles", harness.tmp / "ch-profiles"
    be_folder.mkdir()
    ch_folder.mkdir()
    awareness = "reception_awareness:\n  retries: 3\n  retry_delays_seconds: [60]\n  receipt_timeout_seconds: 1\n"
    (be_folder / "ch-swissmedic.yaml").write_text(
        _profile(CH, f"transport: pull\npull:\n  mpc: {MPC}\n{awareness}")
    )
    harness.profile_folders = {BE: be_folder, CH: ch_folder}
    write_ch_view(harness, f"http://127.0.0.1:{harness.ports[BE]}/as4")
    return harness


def write_ch_view(harness: Harness, be_endpoint: str) -> None:
    (harness.profile_folders[CH] / "be-famhp.yaml").write_text(
        _profile(
            BE,
            f"endpoint: {be_endpoint}\npull:\n  mpc: {MPC}\n  receive_by_pulling: true\n  interval_seconds: 1\n",
        )
    )


def be_policy(harness: Harness) -> SecurityPolicy:
    return SecurityPolicy(signing_certificates=(harness.keys(BE).certificate,))


async def post(session: aiohttp.ClientSession, gateway: Running, out: Outgoing) -> tuple[int, str, bytes]:
    headers = {"Content-Type": out.content_type}
    async with session.post(f"{gateway.url}/as4", data=out.body, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


def pull_request(key: KeyPair, harness: Harness, mpc: str = MPC, n: int = 1) -> Outgoing:
    pull = PullRequest(message_id=f"pull-{n}@ch-swissmedic.test", timestamp=harness.clock.now(), mpc=mpc)
    return build_pull_request(pull, key=key)


async def state_of(session: aiohttp.ClientSession, gateway: Running, message_id: str) -> str:
    async with session.get(f"{gateway.url}/api/v1/messages/{message_id}") as response:
        return "absent" if response.status == 404 else str((await response.json())["state"])


async def test_pulls_are_served_only_to_the_signer_on_its_mpc(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    ch_key, stranger = harness.keys(CH), make_key_pair("MALLORY")

    status, content_type, body = await post(session, be, pull_request(ch_key, harness))
    sent = pull_request(ch_key, harness)
    empty = parse_pull_answer(content_type, body, sent=sent, policy=be_policy(harness), now=harness.clock.now())
    assert status == 200 and empty is not None and empty.signed and is_empty_mpc(empty)

    submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]
    await asyncio.sleep(0.3)  # the push loop ran (woken by the submission) and left it alone
    assert await state_of(session, be, message_id) == "SUBMITTED"

    refusals = {
        "stranger": (pull_request(stranger, harness, n=2), "EBMS:0101", "no profile of a pulling partner"),
        "wrong MPC": (pull_request(ch_key, harness, mpc=DEFAULT_MPC, n=3), "EBMS:0010", f"pulls MPC '{MPC}'"),
        "unsigned": (_unsigned_pull(harness), "EBMS:0103", "serves signed PullRequests only"),
    }
    for what, (request, code, detail) in refusals.items():
        status, content_type, body = await post(session, be, request)
        refused = parse_response(
            content_type, body, sent=request, policy=be_policy(harness), now=harness.clock.now()
        )
        assert status == 400 and isinstance(refused, ErrorReceived), what
        assert refused.errors[0].code == code and detail in (refused.errors[0].detail or ""), what
        assert refused.errors[0].ref_to_message_in_error == request.message_id, what
        assert await state_of(session, be, message_id) == "SUBMITTED", what

    status, content_type, body = await post(session, be, pull_request(ch_key, harness, n=4))
    assert status == 200 and peek_signal(content_type, body) is None
    assert message_id.encode() in mime.parse(content_type, body).envelope
    node = be.runner.app[NODE]
    record = await node.store.find(Direction.OUTBOUND, message_id)
    assert record is not None and record.state.value == "SENDING" and record.attempts == 1
    assert body == node.payloads.get(record.wire_sha256 or "")  # the stored signed bytes, as stored
    kinds = [e.kind for e in await node.store.events(record.id)]
    assert kinds == ["submitted", "pulled"]

    # the receipt comes back as a request of its own: forged or unknown ones are refused, the message waits
    pulled = parse_incoming(
        content_type, body, policy_for=lambda um: be_policy(harness), keys=[ch_key], now=harness.clock.now()
    )
    now = harness.clock.now()
    forged = build_receipt(message_id, pulled.references, key=stranger, message_id="r-1@ch.test", now=now)
    unknown = build_receipt("nobody@be.test", pulled.references, key=ch_key, message_id="r-2@ch.test", now=now)
    for receipt, detail in ((forged, "is not among the certificates pinned"), (unknown, "names no message")):
        status, answer_type, answer = await post(session, be, receipt)
        refused = parse_response(answer_type, answer, sent=receipt, policy=be_policy(harness), now=now)
        assert status == 400 and isinstance(refused, ErrorReceived)
        assert refused.errors[0].code == "EBMS:0302" and detail in (refused.errors[0].detail or "")
    assert await state_of(session, be, message_id) == "SENDING"
    receipt = build_receipt(message_id, pulled.references, key=ch_key, message_id="r-3@ch.test", now=now)
    for _ in range(2):  # a receipt sent twice is taken twice, and kept once
        assert await post(session, be, receipt) == (200, "", b"")
    kinds = [e.kind for e in await node.store.events(record.id)]
    assert kinds == ["submitted", "pulled", "receipt_refused", "receipt_ok", "receipt_again"]
    assert await node.store.get_evidence(record.id, "receipt") == (receipt.content_type, receipt.body)


async def test_a_pull_request_replayed_or_stale_takes_nothing(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A captured PullRequest, sent again, would take the partner's message (and one of its offers) for
    whoever sent it: each is answered once, while fresh."""
    harness = pull_harness
    be = await harness.start(BE)
    ch_key = harness.keys(CH)
    answered = pull_request(ch_key, harness, n=1)
    assert (await post(session, be, answered))[0] == 200  # nothing waits yet: an empty MPC
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    made = harness.clock.now() - timedelta(minutes=11)
    stale = build_pull_request(
        PullRequest(message_id="pull-2@ch-swissmedic.test", timestamp=made, mpc=MPC), key=ch_key
    )

    for request, detail in ((answered, "was answered before"), (stale, "more than 10 minutes ago")):
        status, content_type, body = await post(session, be, request)
        refused = parse_response(
            content_type, body, sent=request, policy=be_policy(harness), now=harness.clock.now()
        )
        assert status == 400 and isinstance(refused, ErrorReceived), detail
        assert refused.errors[0].code == "EBMS:0003" and detail in (refused.errors[0].detail or ""), refused.errors
    assert await state_of(session, be, message_id) == "SUBMITTED"
    status, content_type, body = await post(session, be, pull_request(ch_key, harness, n=3))
    assert status == 200 and message_id.encode() in mime.parse(content_type, body).envelope


async def test_a_pull_request_replayed_to_another_node_of_the_store_takes_nothing(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Two Belgian nodes share one store: a PullRequest answered by one, replayed to the other, is refused
    there and leaves the waiting message for the partner's next (new) PullRequest."""
    harness = pull_harness
    be = await harness.start(BE)
    settings = harness.settings(BE)
    second = settings.model_copy(update={"http": settings.http.model_copy(update={"port": free_port()})})
    other = await start_gateway("BE", second, harness.clock)
    try:
        ch_key = harness.keys(CH)
        answered = pull_request(ch_key, harness, n=1)
        assert (await post(session, be, answered))[0] == 200  # nothing waits yet: an empty MPC
        message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]

        status, content_type, body = await post(session, other, answered)
        refused = parse_response(
            content_type, body, sent=answered, policy=be_policy(harness), now=harness.clock.now()
        )
        assert status == 400 and isinstance(refused, ErrorReceived)
        assert refused.errors[0].code == "EBMS:0003" and "was answered before" in (refused.errors[0].detail or "")
        assert await state_of(session, be, message_id) == "SUBMITTED"
        status, content_type, body = await post(session, other, pull_request(ch_key, harness, n=2))
        assert status == 200 and message_id.encode() in mime.parse(content_type, body).envelope
    finally:
        await other.runner.cleanup()


async def test_a_pull_request_dated_ahead_within_the_skew_is_remembered_until_it_is_stale(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Its MessageId is kept until its own timestamp is out of the window, not the time it was answered: a
    PullRequest dated 4 minutes ahead (within the clock skew) is still fresh 11 minutes after its answer."""
    harness = pull_harness
    be = await harness.start(BE)
    ch_key = harness.keys(CH)
    ahead = PullRequest(
        message_id="pull-ahead@ch-swissmedic.test", timestamp=harness.clock.now() + timedelta(minutes=4), mpc=MPC
    )
    request = build_pull_request(ahead, key=ch_key)
    assert (await post(session, be, request))[0] == 200
    harness.clock.advance(timedelta(minutes=11))
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    status, content_type, body = await post(session, be, request)
    refused = parse_response(content_type, body, sent=request, policy=be_policy(harness), now=harness.clock.now())
    assert status == 400 and isinstance(refused, ErrorReceived)
    assert "was answered before" in (refused.errors[0].detail or "")
    assert await state_of(session, be, message_id) == "SUBMITTED"


def _unsigned_pull(harness: Harness) -> Outgoing:
    draft = new_draft()
    pull = PullRequest(message_id="pull-9@ch-swissmedic.test", timestamp=harness.clock.now(), mpc=MPC)
    add_pull_request(draft.messaging, pull)
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type="application/soap+xml")
    return Outgoing(message_id=pull.message_id, content_type=content_type, body=body)


async def test_a_gateway_without_an_endpoint_pulls_its_permits_and_the_sender_keeps_the_receipt(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    ch = await harness.start(CH)
    submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]

    received = await wait_for(session, ch, message_id, "DELIVERED")
    sent = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert [e["kind"] for e in sent["events"]] == ["submitted", "pulled", "receipt_ok"]
    assert sent["attempts"] == 1 and sent["events"][-1]["detail"]["pulled"] is True
    assert [e["kind"] for e in received["events"]][:2] == ["received", "accept"]
    node = be.runner.app[NODE]
    record = await node.store.find(Direction.OUTBOUND, message_id)
    assert record is not None
    evidence = await node.store.get_evidence(record.id, "receipt")
    ch_node = ch.runner.app[NODE]
    inbound = await ch_node.store.find(Direction.INBOUND, message_id)
    assert inbound is not None and evidence is not None
    assert evidence == await ch_node.store.get_evidence(inbound.id, "receipt")  # the very receipt CH stored
    assert len([p for p in ch.inbox.iterdir() if p.suffix == ".xml"]) == 1

    answer = await submit(session, ch, example(EA, today=harness.clock.now()))  # and back, pushed to BE
    await wait_for(session, be, answer["message_id"], "DELIVERED")
    await wait_for(session, ch, answer["message_id"], "ACKNOWLEDGED")


async def test_a_partner_that_takes_our_pull_request_and_never_answers_delays_no_other_pull(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    heard = asyncio.Event()
    release = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await request.read()
        heard.set()
        await release.wait()
        return web.Response(status=503)

    async with _loopback_as4(silent) as url:
        (harness.profile_folders[CH] / "de-bfarm.yaml").write_text(
            "id: de-bfarm\nauthority_name: BfArM\ncountry: DE\nparty_id: DE-BFARM\n"
            f"endpoint: {url}\nsecurity:\n  signing_certificate: de-bfarm.crt.pem\n"
            "pull:\n  receive_by_pulling: true\n  interval_seconds: 1\n"
        )
        be = await harness.start(BE)
        ch = await harness.start(CH)
        await asyncio.wait_for(heard.wait(), 10)  # Switzerland's pull from Germany now hangs for a minute

        submitted = await submit(session, be, example(IA, today=harness.clock.now()))
        await wait_for(session, ch, submitted["message_id"], "DELIVERED", timeout=10)
        release.set()


@contextlib.asynccontextmanager
async def _loopback_as4(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port answering POST /as4 with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_post("/as4", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/as4"
    finally:
        await runner.cleanup()


@pytest.fixture
async def lossy_proxy(pull_harness: Harness) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback hop in front of Belgium's endpoint that drops the first receipt (answers 503)."""
    target = f"http://127.0.0.1:{pull_harness.ports[BE]}/as4"
    dropped: list[int] = []

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        peeked = peek_signal(content_type, body)
        if peeked is not None and peeked.kind == "Receipt" and not dropped:
            dropped.append(1)
            return web.Response(status=503, text="receipt lost on the way")
        headers = {"Content-Type": content_type}
        async with aiohttp.ClientSession() as client, client.post(target, data=body, headers=headers) as answer:
            data = await answer.read()
            kept = {"Content-Type": answer.headers["Content-Type"]} if data else {}
            return web.Response(status=answer.status, body=data, headers=kept)

    async with _loopback_as4(forward) as url:
        yield url, dropped


async def test_a_lost_receipt_gets_the_message_offered_again_and_delivered_once(
    pull_harness: Harness, lossy_proxy: tuple[str, list[int]], session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    proxy, dropped = lossy_proxy
    write_ch_view(harness, proxy)
    be = await harness.start(BE)
    ch = await harness.start(CH)
    submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]

    await wait_for(session, ch, message_id, "DELIVERED")
    assert dropped == [1] and await state_of(session, be, message_id) == "SENDING"
    harness.clock.advance(timedelta(seconds=2))  # past the 1 s receipt timeout
    await be.runner.app[NODE].store.recover_leases()  # the lease-recovery job's work (it may have run already)

    sent = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert [e["kind"] for e in sent["events"]] == ["submitted", "pulled", "lease_expired", "pulled", "receipt_ok"]
    assert sent["attempts"] == 2
    received = await wait_for(session, ch, message_id, "DELIVERED")
    assert [e["kind"] for e in received["events"]].count("duplicate") == 1
    assert len([p for p in ch.inbox.iterdir() if p.suffix == ".xml"]) == 1


async def test_a_receipt_that_comes_after_the_lease_ran_out_still_acknowledges_the_message(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    target = f"http://127.0.0.1:{harness.ports[BE]}/as4"
    held, release, answers = asyncio.Event(), asyncio.Event(), []

    async def slow(request: web.Request) -> web.Response:
        """Forwards to Belgium; the first receipt only once the test says so."""
        body, content_type = await request.read(), request.headers.get("Content-Type", "")
        peeked = peek_signal(content_type, body)
        receipt = peeked is not None and peeked.kind == "Receipt" and not held.is_set()
        if receipt:
            held.set()
            await release.wait()
        async with (
            aiohttp.ClientSession() as client,
            client.post(target, data=body, headers={"Content-Type": content_type}) as answer,
        ):
            data = await answer.read()
            if receipt:
                answers.append(answer.status)
            kept = {"Content-Type": answer.headers["Content-Type"]} if data else {}
            return web.Response(status=answer.status, body=data, headers=kept)

    async with _loopback_as4(slow) as proxy:
        write_ch_view(harness, proxy)
        be = await harness.start(BE)
        await harness.start(CH)
        message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
        await asyncio.wait_for(held.wait(), 10)
        harness.clock.advance(timedelta(seconds=2))  # past the 1 s receipt timeout: the lease runs out
        await be.runner.app[NODE].store.recover_leases()
        release.set()
        sent = await wait_for(session, be, message_id, "ACKNOWLEDGED")

    assert answers == [200], "the late receipt was refused"
    kinds = [e["kind"] for e in sent["events"]]
    assert kinds[:3] == ["submitted", "pulled", "lease_expired"] and "receipt_ok" in kinds


async def test_a_pulled_permit_the_receiver_refuses_fails_at_the_sender_with_its_reason(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    view = harness.profile_folders[CH] / "be-famhp.yaml"
    view.write_text(view.read_text() + "documents:\n  receive: [ExportAuthorization]\n")
    be = await harness.start(BE)
    ch = await harness.start(CH)
    submitted = await submit(session, be, example(IA, today=harness.clock.now()))

    failed = await wait_for(session, be, submitted["message_id"], "FAILED")
    assert [e["kind"] for e in failed["events"]] == ["submitted", "pulled", "error_signal", "final_error"]
    assert "EBMS:0010" in failed["last_error"] and "documents.receive" in failed["last_error"]
    assert await state_of(session, ch, submitted["message_id"]) == "absent"


async def offered(session: aiohttp.ClientSession, be: Running, harness: Harness, n: int) -> bool:
    """Switzerland's ``n``-th PullRequest to Belgium: True when it was handed a message, False for an empty MPC."""
    status, content_type, body = await post(session, be, pull_request(harness.keys(CH), harness, n=n))
    assert status == 200, n
    return peek_signal(content_type, body) is None


async def test_a_pulled_message_never_receipted_fails_as_a_missing_receipt(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Offered once and then once per retry (three), each time without a receipt: EBMS:0301, as for a push."""
    harness = pull_harness
    be = await harness.start(BE)
    node = be.runner.app[NODE]
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    for n in range(1, 6):
        assert await offered(session, be, harness, n) == (n <= 4), n
        harness.clock.advance(timedelta(seconds=2))  # past the 1 s receipt timeout
        await node.store.recover_leases()

    failed = await wait_for(session, be, message_id, "FAILED")
    assert failed["last_error"] == "EBMS:0301 MissingReceipt: no receipt after it was pulled 4 times"


async def test_a_pulled_message_whose_receipt_never_comes_fails_at_its_time_to_live(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    message_id = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    assert await offered(session, be, harness, 1)
    harness.clock.advance(timedelta(hours=73))  # the default time_to_live_hours is 72
    node = be.runner.app[NODE]
    await node.store.recover_leases()
    await node.pull_server.expire()  # the expiry job's work (it may have run already: the reason is the same)

    assert not await offered(session, be, harness, 2), "nothing left to pull"
    failed = await wait_for(session, be, message_id, "FAILED")
    assert failed["last_error"] == (
        "EBMS:0301 MissingReceipt: its time to live ran out before a receipt for it arrived"
    )


async def test_a_message_nobody_pulls_fails_when_its_time_to_live_runs_out(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    node = be.runner.app[NODE]
    first = await submit(session, be, example(IA, today=harness.clock.now()))
    harness.clock.advance(timedelta(hours=73))  # the default time_to_live_hours is 72

    assert await node.pull_server.expire() == 1
    failed = await wait_for(session, be, first["message_id"], "FAILED")
    assert failed["last_error"] == "its time to live ran out before the partner pulled it"
    assert await node.pull_server.expire() == 0


async def test_a_large_pulled_message_streams_from_the_senders_file_and_spools_at_the_puller(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    ch = await harness.start(CH)
    large = os.urandom(6 * 1024 * 1024)  # incompressible: the wire message is over MAX_SIGNAL_BYTES
    form = aiohttp.FormData()
    form.add_field("document", example(IA, today=harness.clock.now()), filename="permit.xml")
    form.add_field("attachment", large, filename="scan.bin", content_type="application/octet-stream")
    async with session.post(f"{be.url}/api/v1/documents", data=form) as response:
        submitted = await response.json()
        assert response.status == 202, submitted
    record = await be.runner.app[NODE].store.find(Direction.OUTBOUND, submitted["message_id"])
    assert record is not None and be.runner.app[NODE].payloads.size(record.wire_sha256 or "") > MAX_SIGNAL_BYTES

    await wait_for(session, be, submitted["message_id"], "ACKNOWLEDGED")
    await wait_for(session, ch, submitted["message_id"], "DELIVERED")
    (permit,) = ch.inbox.glob("*.xml")
    assert (permit.with_suffix(".attachments") / "1-scan.bin").read_bytes() == large


def _pulled_answer(harness: Harness, mpc: str, n: int) -> Outgoing:
    """A UserMessage from Belgium to Switzerland on ``mpc``, as Belgium's gateway would hand it out."""
    um = permit_user_message(harness, f"pulled-{n}@be-famhp.test", mpc=mpc)
    permit = Payload(content_id="permit@test", mime_type="application/xml", data=example(IA, today=um.timestamp))
    return build_user_message(
        um, [permit], sender=harness.keys(BE), recipient_certificate=harness.keys(CH).certificate
    )


@pytest.fixture
async def off_mpc_partner(pull_harness: Harness) -> AsyncIterator[tuple[str, list[ErrorReceived]]]:
    """A stand-in for Belgium's gateway that answers every PullRequest with a message on another MPC, and
    keeps the signals Switzerland sends back."""
    signals: list[ErrorReceived] = []
    sent: list[Outgoing] = []

    async def as4(request: web.Request) -> web.Response:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        peeked = peek_signal(content_type, body)
        assert peeked is not None
        if peeked.kind == "PullRequest":
            sent.append(_pulled_answer(pull_harness, "urn:permit-gateway:mpc:somebody-else", len(sent)))
            return web.Response(body=sent[-1].body, headers={"Content-Type": sent[-1].content_type})
        policy = SecurityPolicy(signing_certificates=(pull_harness.keys(CH).certificate,))
        answer = parse_response(content_type, body, sent=sent[-1], policy=policy, now=pull_harness.clock.now())
        assert isinstance(answer, ErrorReceived)
        signals.append(answer)
        return web.Response(status=200)

    async with _loopback_as4(as4) as url:
        yield url, signals


async def test_a_pulled_message_on_another_mpc_is_refused_and_not_delivered(
    pull_harness: Harness, off_mpc_partner: tuple[str, list[ErrorReceived]], session: aiohttp.ClientSession
) -> None:
    endpoint, signals = off_mpc_partner
    write_ch_view(pull_harness, endpoint)
    ch = await pull_harness.start(CH)
    for _ in range(100):
        if signals:
            break
        await asyncio.sleep(0.05)
    error = signals[0].errors[0]
    assert (error.code, signals[0].ref_to_message_id) == ("EBMS:0010", "pulled-0@be-famhp.test")
    assert "urn:permit-gateway:mpc:somebody-else" in (error.detail or "") and MPC in (error.detail or "")
    assert await state_of(session, ch, "pulled-0@be-famhp.test") == "absent"
    assert not ch.inbox.exists() or not [p for p in ch.inbox.iterdir() if p.suffix == ".xml"]
