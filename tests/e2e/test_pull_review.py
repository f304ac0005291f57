"""One-Way/Pull after review: a partner's signed refusal that comes after the lease ran out, a graceful stop
while the partner holds a message, a claim racing a late receipt, a partner's endpoint failing without an
ebMS answer, and a pulled message over the puller's size limit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    Outgoing,
    Payload,
    SecurityPolicy,
    build_error_signal,
    build_user_message,
    is_empty_mpc,
    parse_pull_answer,
    parse_response,
    peek_signal,
)
from gateway.interfaces.demo import Running, submit, wait_for
from gateway.interfaces.keys import NODE
from gateway.metrics import REGISTRY
from gateway.store import Direction, Event, MessageRecord, State
from tests.e2e import test_pull
from tests.e2e.conftest import Harness, example, permit_user_message
from tests.e2e.test_pull import (
    BE,
    CH,
    IA,
    MPC,
    _loopback_as4,
    be_policy,
    offered,
    post,
    pull_request,
    state_of,
    write_ch_view,
)

pull_harness = test_pull.pull_harness  # the fixture: Belgium keeps what it sends Switzerland, which pulls

LIMIT = 1024 * 1024
"""Switzerland's [inbound].max_message_bytes in the size tests (the smallest allowed)."""


async def _submitted(session: aiohttp.ClientSession, be: Running, harness: Harness) -> str:
    return str((await submit(session, be, example(IA, today=harness.clock.now())))["message_id"])


async def _lease_runs_out(be: Running, harness: Harness) -> None:
    harness.clock.advance(timedelta(seconds=2))  # past the 1 s receipt timeout
    await be.runner.app[NODE].store.recover_leases()  # the lease-recovery job's work


async def _record(be: Running, message_id: str) -> MessageRecord:
    record = await be.runner.app[NODE].store.find(Direction.OUTBOUND, message_id)
    assert record is not None
    return record


async def _refused_by_ch(session: aiohttp.ClientSession, be: Running, harness: Harness, error: EbmsError) -> None:
    signal = build_error_signal(error, key=harness.keys(CH), message_id="e-1@ch.test", now=harness.clock.now())
    assert await post(session, be, signal) == (200, "", b"")


def _failures() -> float:
    sample = {"direction": Direction.OUTBOUND.value, "partner": "ch-swissmedic"}
    return REGISTRY.get_sample_value("permit_gateway_messages_failed_total", sample) or 0.0


async def test_a_final_error_signal_after_the_lease_ran_out_fails_the_pulled_message_and_alerts(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Switzerland took 2 s to refuse the permit; its 1 s lease had run out (RETRY_WAIT) meanwhile."""
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    await _lease_runs_out(be, harness)
    failures = _failures()

    refusal = EbmsError(
        EbmsCode.PROCESSING_MODE_MISMATCH,
        "ImportAuthorization not agreed (documents.receive)",
        ref_to_message_id=message_id,
    )
    with capture_logs() as logs:
        await _refused_by_ch(session, be, harness, refusal)

    record = await _record(be, message_id)
    assert record.state is State.FAILED
    assert record.last_error is not None and "EBMS:0010" in record.last_error
    assert "documents.receive" in record.last_error
    kinds = [e.kind for e in await be.runner.app[NODE].store.events(record.id)]
    assert kinds == ["submitted", "pulled", "lease_expired", "error_signal", "final_error"]
    alerts = [e for e in logs if e["event"] == "message FAILED: alert the operator"]
    assert [a["message_id"] for a in alerts] == [message_id]
    assert _failures() == failures + 1
    assert not await offered(session, be, harness, 2), "a refused message is not offered again"


async def test_a_retryable_error_signal_after_the_lease_ran_out_waits_the_retry_delay(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    await _lease_runs_out(be, harness)

    await _refused_by_ch(
        session, be, harness, EbmsError(EbmsCode.OTHER, "our store is restarting", ref_to_message_id=message_id)
    )

    record = await _record(be, message_id)
    assert record.state is State.RETRY_WAIT
    assert record.next_attempt_at == harness.clock.now() + timedelta(seconds=60)  # retry_delays_seconds: [60]
    assert not await offered(session, be, harness, 2), "offered again before the retry delay"
    harness.clock.advance(timedelta(seconds=61))
    assert await offered(session, be, harness, 3)


async def test_a_graceful_stop_leaves_a_pulled_message_to_its_lease(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The partner holds the message and its receipt may be on the way: a rolling restart of the serving node
    does not hand it out again at once, and the lease recovery still takes it back when the lease runs out."""
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    await harness.stop(BE)
    be = await harness.start(BE)

    assert not await offered(session, be, harness, 2), "handed out again while the partner holds it"
    record = await _record(be, message_id)
    assert (record.state, record.attempts) == (State.SENDING, 1)
    assert record.lease_owner is not None and record.lease_owner.endswith("/pull")
    harness.clock.advance(timedelta(seconds=2))
    assert await be.runner.app[NODE].store.recover_leases() == 1, "stranded by the stop"
    assert await offered(session, be, harness, 3)
    assert (await _record(be, message_id)).attempts == 2


async def test_a_claim_that_races_a_late_receipt_answers_the_pull_request(
    pull_harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offered four times without a receipt in time, the fifth claim gives the message up; the fourth offer's
    receipt lands (on another node) between the claim and the give-up. The PullRequest still gets its answer."""
    harness = pull_harness
    be = await harness.start(BE)
    store = be.runner.app[NODE].store
    message_id = await _submitted(session, be, harness)
    for n in range(1, 5):  # retries: 3, so four offers
        assert await offered(session, be, harness, n)
        await _lease_runs_out(be, harness)
    claim_due = store.claim_due

    async def claim_then_receipt_lands(*args: Any, **kwargs: Any) -> list[MessageRecord]:
        claimed = await claim_due(*args, **kwargs)
        for record in claimed:
            await store.move(record.id, Event.RECEIPT_OK, detail={"late": True}, lease_owner=None)
        return claimed

    monkeypatch.setattr(store, "claim_due", claim_then_receipt_lands)
    request = pull_request(harness.keys(CH), harness, n=5)
    status, content_type, body = await post(session, be, request)

    assert status == 200
    answer = parse_pull_answer(
        content_type, body, sent=request, policy=be_policy(harness), now=harness.clock.now()
    )
    assert answer is not None and answer.signed and is_empty_mpc(answer)
    record = await _record(be, message_id)
    assert record.state is State.ACKNOWLEDGED
    assert Event.GIVE_UP.value not in [e.kind for e in await store.events(record.id)]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "shown"),
    [
        (503, "text/html", b"<html><body>503 Service Unavailable</body></html>", "<html><body>503 Service"),
        (502, "text/plain", b"", "(empty body)"),
    ],
    ids=["a proxy's 503 page", "an empty 502"],
)
async def test_a_partner_failing_without_an_ebms_answer_is_logged_with_its_http_status(
    pull_harness: Harness, status: int, content_type: str, body: bytes, shown: str
) -> None:
    """A proxy before the partner's gateway answers for it: the log says HTTP 503, not EBMS:0003."""

    async def down(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    async with _loopback_as4(down) as url:
        write_ch_view(pull_harness, url)
        ch = await pull_harness.start(CH)
        node = ch.runner.app[NODE]
        with capture_logs() as logs:
            assert not await node.puller.pull_once(node.partners.get("be-famhp"))

    reasons = [str(e["reason"]) for e in logs if e["event"] == "pull failed"]
    assert reasons, logs
    for reason in reasons:
        assert reason.startswith(f"HTTP {status}: {shown}"), reason
        assert url in reason and "EBMS:0003" not in reason


async def test_an_oversized_pulled_message_is_refused_to_its_sender_naming_the_limit(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Belgium hands out a 3 MiB message (with its Content-Length); Switzerland takes 1 MiB at most. Its
    sender is told with a signed error signal and fails it at once, instead of offering it until MissingReceipt."""
    harness = pull_harness
    be = await harness.start(BE)
    form = aiohttp.FormData()
    form.add_field("document", example(IA, today=harness.clock.now()), filename="permit.xml")
    form.add_field(
        "attachment", os.urandom(3 * LIMIT), filename="scan.bin", content_type="application/octet-stream"
    )
    async with session.post(f"{be.url}/api/v1/documents", data=form) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]
    inbound = harness.settings(CH).inbound.model_copy(update={"max_message_bytes": LIMIT})
    ch = await harness.start(CH, inbound=inbound)

    failed = await wait_for(session, be, message_id, "FAILED")
    assert [e["kind"] for e in failed["events"]] == ["submitted", "pulled", "error_signal", "final_error"]
    assert "EBMS:0010" in failed["last_error"]
    assert f"[inbound].max_message_bytes = {LIMIT}" in failed["last_error"]
    assert await state_of(session, ch, message_id) == "absent"


def _large_answer(harness: Harness) -> Outgoing:
    um = permit_user_message(harness, "pulled-large@be-famhp.test", mpc=MPC)
    payloads = [
        Payload(content_id="permit@test", mime_type="application/xml", data=example(IA, today=um.timestamp)),
        Payload(content_id="scan@test", mime_type="application/octet-stream", data=os.urandom(2 * LIMIT)),
    ]
    return build_user_message(
        um, payloads, sender=harness.keys(BE), recipient_certificate=harness.keys(CH).certificate
    )


@pytest.fixture
async def chunked_partner(pull_harness: Harness) -> AsyncIterator[tuple[str, list[ErrorReceived]]]:
    """A stand-in for Belgium's gateway that answers the first PullRequest with a 2 MiB message sent chunked
    (no Content-Length), later ones with 503, and keeps the signals Switzerland sends back, verified."""
    large = _large_answer(pull_harness)
    signals: list[ErrorReceived] = []
    pulls: list[int] = []

    async def as4(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        peeked = peek_signal(content_type, body)
        assert peeked is not None
        if peeked.kind == "PullRequest":
            pulls.append(1)
            return await _chunked(request, large) if len(pulls) == 1 else web.Response(status=503)
        policy = SecurityPolicy(signing_certificates=(pull_harness.keys(CH).certificate,))
        answer = parse_response(content_type, body, sent=large, policy=policy, now=pull_harness.clock.now())
        assert isinstance(answer, ErrorReceived)
        signals.append(answer)
        return web.Response(status=200)

    async with _loopback_as4(as4) as url:  # type: ignore[arg-type]  # a StreamResponse serves as well
        yield url, signals


async def _chunked(request: web.Request, answer: Outgoing) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": answer.content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(answer.body), 64 * 1024):
        await response.write(answer.body[start : start + 64 * 1024])
    await response.write_eof()
    return response


async def test_an_oversized_pulled_message_without_a_length_is_refused_to_its_sender(
    pull_harness: Harness, chunked_partner: tuple[str, list[ErrorReceived]]
) -> None:
    endpoint, signals = chunked_partner
    write_ch_view(pull_harness, endpoint)
    inbound = pull_harness.settings(CH).inbound.model_copy(update={"max_message_bytes": LIMIT})
    await pull_harness.start(CH, inbound=inbound)
    for _ in range(100):
        if signals:
            break
        await asyncio.sleep(0.05)

    assert signals, "the sender was never told"
    (signal,) = signals
    assert signal.signed and signal.ref_to_message_id == "pulled-large@be-famhp.test"
    (error,) = signal.errors
    assert error.code == "EBMS:0010" and f"[inbound].max_message_bytes = {LIMIT}" in (error.detail or "")
