"""One-Way/Pull, the partner's signed error signals: one that comes for an offer made before an operator sent the
message again (the new round has made no offer yet, and there is no retry delay for attempt 0: it stays due,
where it was a 500), one in a SOAP Receiver fault (retried, as for a pushed message, unless DeliveryFailure),
and a fault of our own while a signal is handled (a signed EBMS:0004, not a bare 500)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp

from gateway.as4 import EbmsError, ErrorReceived, build_error_signal, parse_response, peek_signal
from gateway.as4.errors import EbmsCode, Fault
from gateway.interfaces.demo import Running, submit
from gateway.interfaces.keys import NODE
from gateway.outbound.dispatch import RECEIVER_FAULT
from gateway.store import Direction, MessageRecord, State
from tests.e2e import test_pull
from tests.e2e.conftest import Harness, example
from tests.e2e.test_pull import BE, CH, IA, be_policy, offered, post

pull_harness = test_pull.pull_harness  # the fixture: Belgium keeps what it sends Switzerland, which pulls

NO_KEY = "no private key for the certificate the message was encrypted for; install it"


async def _submitted(session: aiohttp.ClientSession, be: Running, harness: Harness) -> str:
    return str((await submit(session, be, example(IA, today=harness.clock.now())))["message_id"])


async def _record(be: Running, message_id: str) -> MessageRecord:
    record = await be.runner.app[NODE].store.find(Direction.OUTBOUND, message_id)
    assert record is not None
    return record


async def _signal(
    session: aiohttp.ClientSession, be: Running, harness: Harness, error: EbmsError, n: int
) -> tuple[int, str, bytes]:
    """Switzerland's signed error signal about a message it pulled, POSTed to Belgium."""
    signal = build_error_signal(error, key=harness.keys(CH), message_id=f"e-{n}@ch.test", now=harness.clock.now())
    return await post(session, be, signal)


async def _kinds(be: Running, record: MessageRecord) -> list[str]:
    return [e.kind for e in await be.runner.app[NODE].store.events(record.id)]


async def test_a_retryable_error_for_an_offer_before_an_operator_retry_leaves_the_message_due(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    refusal = EbmsError(EbmsCode.VALUE_INCONSISTENT, "not agreed yet", ref_to_message_id=message_id)
    assert await _signal(session, be, harness, refusal, 1) == (200, "", b"")
    assert (await _record(be, message_id)).state is State.FAILED
    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "agreed"}) as answer:
        assert answer.status == 200, await answer.text()
    retried = await _record(be, message_id)
    assert (retried.state, retried.attempts) == (State.RETRY_WAIT, 0)

    # Switzerland's answer to its first pull, sent again late: busy then, a retryable code
    late = EbmsError(EbmsCode.OTHER, "our store was restarting", ref_to_message_id=message_id)
    assert await _signal(session, be, harness, late, 2) == (200, "", b"")

    after = await _record(be, message_id)
    assert (after.state, after.attempts, after.next_attempt_at) == (State.RETRY_WAIT, 0, retried.next_attempt_at)
    assert (await _kinds(be, after))[-2:] == ["error_signal", "retry_not_delayed"]
    assert await offered(session, be, harness, 2), "due at once, as the operator's retry left it"


async def test_a_final_error_for_an_offer_before_an_operator_retry_does_not_undo_the_retry(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The operator sent a refused message again; the partner's refusal of an earlier offer, sent again late,
    answers bytes offered before that decision: kept in the timeline, not applied, the message still due."""
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    refusal = EbmsError(EbmsCode.VALUE_INCONSISTENT, "not agreed yet", ref_to_message_id=message_id)
    assert await _signal(session, be, harness, refusal, 1) == (200, "", b"")
    async with session.post(f"{be.url}/api/v1/messages/{message_id}/retry", json={"reason": "agreed"}) as answer:
        assert answer.status == 200, await answer.text()
    retried = await _record(be, message_id)

    assert await _signal(session, be, harness, refusal, 2) == (200, "", b"")  # the same refusal, late

    after = await _record(be, message_id)
    assert (after.state, after.attempts, after.next_attempt_at) == (State.RETRY_WAIT, 0, retried.next_attempt_at)
    assert (await _kinds(be, after))[-2:] == ["error_signal", "refusal_not_applied"]
    assert await offered(session, be, harness, 2), "due at once, as the operator's retry left it"


async def _refused_in_fault(
    session: aiohttp.ClientSession, be: Running, harness: Harness, code: EbmsCode, fault: Fault
) -> MessageRecord:
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    error = EbmsError(code, NO_KEY, ref_to_message_id=message_id, fault=fault)
    assert await _signal(session, be, harness, error, 1) == (200, "", b"")
    return await _record(be, message_id)


async def test_a_signed_error_in_a_receiver_fault_offers_the_pulled_message_again(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Switzerland lacks the key the message was encrypted for (EBMS:0102, its own problem): retried after the
    retry delay, the fault and its code in the timeline, as for a pushed message."""
    harness = pull_harness
    be = await harness.start(BE)
    record = await _refused_in_fault(session, be, harness, EbmsCode.FAILED_DECRYPTION, "Receiver")

    assert record.state is State.RETRY_WAIT, record.last_error
    assert record.next_attempt_at == harness.clock.now() + timedelta(seconds=60)  # retry_delays_seconds: [60]
    assert record.last_error is not None and "SOAP Receiver fault" in record.last_error
    assert "EBMS:0102" in record.last_error and NO_KEY in record.last_error
    events = await be.runner.app[NODE].store.events(record.id)
    noted = [e.detail for e in events if e.kind == "error_signal"]
    assert noted[0][RECEIVER_FAULT]["fault"] == "Receiver" and noted[0]["error_codes"] == ["EBMS:0102"]
    assert not await offered(session, be, harness, 2), "offered again before the retry delay"
    harness.clock.advance(timedelta(seconds=61))
    assert await offered(session, be, harness, 3)


async def test_delivery_failure_in_a_receiver_fault_still_fails_the_pulled_message(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    """EBMS:0202 is final in any fault: the partner resent in vain (a Sender fault's final code is final too)."""
    harness = pull_harness
    be = await harness.start(BE)
    record = await _refused_in_fault(session, be, harness, EbmsCode.DELIVERY_FAILURE, "Receiver")
    assert record.state is State.FAILED
    assert record.last_error is not None and "EBMS:0202" in record.last_error
    assert "Receiver fault" not in record.last_error


async def test_a_fault_of_our_own_while_a_signal_is_handled_is_a_signed_ebms_0004(
    pull_harness: Harness, session: aiohttp.ClientSession
) -> None:
    harness = pull_harness
    be = await harness.start(BE)
    message_id = await _submitted(session, be, harness)
    assert await offered(session, be, harness, 1)
    server = be.runner.app[NODE].pull_server

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    server._error_signal = broken
    sent = build_error_signal(
        EbmsError(EbmsCode.OTHER, "busy", ref_to_message_id=message_id),
        key=harness.keys(CH),
        message_id="e-1@ch.test",
        now=harness.clock.now(),
    )
    status, content_type, body = await post(session, be, sent)

    assert status == 500 and peek_signal(content_type, body) is not None, body[:300]
    answer = parse_response(content_type, body, sent=sent, policy=be_policy(harness), now=harness.clock.now())
    assert isinstance(answer, ErrorReceived) and answer.signed
    assert answer.errors[0].code == "EBMS:0004"
    assert "could not handle this Error (RuntimeError" in (answer.errors[0].detail or "")
    assert answer.errors[0].ref_to_message_in_error == "e-1@ch.test"
    assert (await _record(be, message_id)).state is State.SENDING
