"""An error signal signed by the partner in a SOAP Receiver fault says the problem is on the partner's side and
may go away (our own gateway answers a decryption key it lacks, EBMS:0102, so): the message is sent again until
a receipt comes or its time to live runs out, the timeline records the fault and the code, and the failure at
the time to live names the last such error. A final code in a Sender fault still fails the message at once, and
so does EBMS:0202 DeliveryFailure in a Receiver fault (the partner resent in vain; a receiving Permit Gateway
refuses a permit so)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.as4 import EbmsError, KeyPair, build_error_signal
from gateway.as4.errors import EbmsCode, Fault
from gateway.interfaces.demo import Running, message, wait_for, write_profiles
from gateway.interfaces.keys import NODE
from gateway.metrics import FAILURES, SEND_ATTEMPTS
from gateway.settings import StoreSettings
from tests.conftest import free_port
from tests.e2e.conftest import RETRIES, Harness, example, submit

IA = "BE-IA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"
PARTNER = "ch-swissmedic"
NO_KEY = "no private key for the certificate the message was encrypted for; install it"
REFUSED = "the permit document was refused by the receiving authority's checks"
CODES = {
    "receiver": (EbmsCode.FAILED_DECRYPTION, NO_KEY),
    "sender": (EbmsCode.FAILED_DECRYPTION, NO_KEY),
    "delivery-failure": (EbmsCode.DELIVERY_FAILURE, REFUSED),
}


@dataclass
class Answerer:
    """What answers at the endpoint Belgium's profile names for Switzerland: EBMS:0102 signed by Switzerland in a
    ``receiver`` or ``sender`` fault, EBMS:0202 in a Receiver fault (``delivery-failure``), a bare ``http-500``,
    or (``forward``) Switzerland's real gateway."""

    port: int
    key: KeyPair
    mode: str = "receiver"
    real: str = ""
    posts: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append(self.mode)
        if self.mode == "forward":
            headers = {"Content-Type": request.headers["Content-Type"]}
            async with (
                aiohttp.ClientSession() as session,
                session.post(self.real, data=body, headers=headers) as r,
            ):
                return web.Response(status=r.status, body=await r.read(), headers={"Content-Type": r.content_type})
        if self.mode == "http-500":
            return web.Response(status=500, text="Internal Server Error")
        fault: Fault = "Sender" if self.mode == "sender" else "Receiver"
        code, detail = CODES[self.mode]
        answer = build_error_signal(
            EbmsError(code, detail, fault=fault),
            key=self.key,
            message_id=f"err-{len(self.posts)}@answerer.test",
            now=datetime.now(UTC),
        )
        return web.Response(
            status=answer.http_status, body=answer.body, headers={"Content-Type": answer.content_type}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/as4", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def answerer(harness: Harness) -> AsyncIterator[Answerer]:
    """Belgium's own profiles, Switzerland's endpoint at the answerer, which signs with Switzerland's key."""
    found = Answerer(free_port(), harness.keys(CH))
    folder = harness.tmp / "be-profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(folder, endpoints | {CH: f"http://127.0.0.1:{found.port}/as4"}, extra=RETRIES)
    harness.profile_folders[BE] = folder
    await found.start()
    yield found
    await found.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def be_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Belgium's store: its SQLite file (the harness's default), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"store": StoreSettings(url=str(request.getfixturevalue("pg_url")))}


def _counts() -> tuple[float, float, float]:
    """Switzerland's send attempts retried and failed, and its messages FAILED."""
    return (
        SEND_ATTEMPTS.labels(partner=PARTNER, outcome="retry")._value.get(),
        SEND_ATTEMPTS.labels(partner=PARTNER, outcome="failed")._value.get(),
        FAILURES.labels(direction="out", partner=PARTNER)._value.get(),
    )


async def _counted(before: tuple[float, float, float], expected: tuple[int, int, int]) -> None:
    for _ in range(100):
        moved = tuple(int(now - then) for now, then in zip(_counts(), before, strict=True))
        if moved == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"retried, failed attempts and FAILED messages moved by {moved}, not {expected}")


def _failed_attempts(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["detail"] for e in found["events"] if e["kind"] == "send_failed"]


async def _again(harness: Harness, be: Running, after: timedelta = timedelta(minutes=5)) -> None:
    harness.clock.advance(after)
    await be.runner.app[NODE].dispatcher.drain()


async def test_a_signed_final_error_in_a_receiver_fault_is_recorded_and_retried_until_its_receipt(
    be_store: dict[str, Any], harness: Harness, session: aiohttp.ClientSession, answerer: Answerer
) -> None:
    """EBMS:0102 is a final code: before, a signed one failed the message at the first answer, whatever its
    fault said."""
    be = await harness.start(BE, **be_store)
    ch = await harness.start(CH)
    answerer.real = f"{ch.url}/as4"
    before = _counts()
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]

    found = await wait_for(session, be, message_id, "RETRY_WAIT")

    first = _failed_attempts(found)[0]
    recorded = first["receiver_fault_error_signal"]
    assert (recorded["fault"], recorded["signed"], recorded["verified"]) == ("Receiver", True, True), recorded
    assert recorded["http_status"] == 500 and first["http_status"] == 500, first
    assert [e["code"] for e in recorded["errors"]] == ["EBMS:0102"], recorded
    assert recorded["errors"][0]["short_description"] == "FailedDecryption"
    assert recorded["errors"][0]["detail"] == NO_KEY
    assert first["error_codes"] == ["EBMS:0102"], first  # the partner's code: its signature was verified
    assert "unverified_error_signal" not in first, first
    assert "signed error signal in a SOAP Receiver fault" in first["reason"], first["reason"]
    assert f"127.0.0.1:{answerer.port}/as4" in first["reason"], first["reason"]
    assert "next_attempt_at" in first
    await _counted(before, (1, 0, 0))  # a retry, not a failure

    answerer.mode = "forward"  # the partner installed its key
    await _again(harness, be)
    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert done["attempts"] == 2 and answerer.posts == ["receiver", "forward"], done
    await wait_for(session, ch, message_id, "DELIVERED")
    await _counted(before, (1, 0, 0))


async def test_receiver_faults_until_the_time_to_live_fail_it_as_missing_receipt_naming_the_last_one(
    be_store: dict[str, Any], harness: Harness, session: aiohttp.ClientSession, answerer: Answerer
) -> None:
    be = await harness.start(BE, **be_store)
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]
    await wait_for(session, be, message_id, "RETRY_WAIT")
    answerer.mode = "http-500"  # the last attempt fails otherwise: the FAILED reason still names the error
    await _again(harness, be)
    assert (await message(session, be, message_id) or {})["state"] == "RETRY_WAIT"
    before = _counts()

    await _again(harness, be, timedelta(hours=73))  # past the profile's time to live (72 h)

    failed = await message(session, be, message_id) or {}
    assert failed["state"] == "FAILED", failed
    reason = failed["last_error"]
    assert reason.startswith("EBMS:0301 MissingReceipt: its time to live ran out"), reason
    assert "the last error signal answered (attempt 1" in reason, reason
    assert "HTTP 500, signed by the partner, in a SOAP Receiver fault, so retried" in reason, reason
    assert f"EBMS:0102 FailedDecryption: {NO_KEY}" in reason, reason
    assert answerer.posts == ["receiver", "http-500"]
    await _counted(before, (0, 0, 1))


@pytest.mark.parametrize(("mode", "code"), [("sender", "EBMS:0102"), ("delivery-failure", "EBMS:0202")])
async def test_a_final_error_in_a_sender_fault_or_a_delivery_failure_still_fails_the_message_at_once(
    be_store: dict[str, Any],
    harness: Harness,
    session: aiohttp.ClientSession,
    answerer: Answerer,
    mode: str,
    code: str,
) -> None:
    answerer.mode = mode
    be = await harness.start(BE, **be_store)
    before = _counts()
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))

    failed = await wait_for(session, be, submitted["message_id"], "FAILED")

    assert failed["attempts"] == 1 and answerer.posts == [mode], failed
    assert failed["last_error"].startswith(f"partner answered with an error signal: {code}"), failed
    final = [e["detail"] for e in failed["events"] if e["kind"] == "final_error"]
    assert final and final[0]["error_codes"] == [code], final
    assert final[0]["http_status"] == (400 if mode == "sender" else 500), final
    assert "receiver_fault_error_signal" not in final[0], final
    await _counted(before, (0, 1, 1))
