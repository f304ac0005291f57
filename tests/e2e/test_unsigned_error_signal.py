"""An error signal that answers our push without the partner's signature (unsigned, a bare SOAP Fault, or signed
by a key our profile of the partner does not trust) may come from anything that answers our POST: a proxy, a
firewall, anyone on the path of an http:// endpoint. It is kept in the timeline as unverified evidence and the
message is sent again until a receipt comes, or fails at its time to live naming it; it never fails the message
by itself, and counts as a retry, not a failure. A final error signed by the partner still fails it at once."""

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
from gateway.as4.errors import EbmsCode
from gateway.interfaces.demo import Running, message, wait_for, write_profiles
from gateway.interfaces.keys import NODE
from gateway.metrics import FAILURES, SEND_ATTEMPTS
from gateway.settings import StoreSettings
from tests.conftest import free_port
from tests.e2e.conftest import RETRIES, Harness, example, submit

IA = "BE-IA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"
PARTNER = "ch-swissmedic"
FORGED = "forged: the permit's signature is not valid"


@dataclass
class Answerer:
    """Whatever answers at the endpoint Belgium's profile names for Switzerland: an ebMS error (``mode``), or,
    in ``forward``, Switzerland's real gateway behind it."""

    port: int
    mode: str = "unsigned"
    key: KeyPair | None = None
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
        error = EbmsError(EbmsCode.FAILED_AUTHENTICATION, FORGED, envelope_unreadable=self.mode == "fault")
        signed_by = self.key if self.mode in ("signed", "untrusted") else None
        answer = build_error_signal(
            error, key=signed_by, message_id=f"err-{len(self.posts)}@answerer.test", now=datetime.now(UTC)
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
    """Belgium's own profiles, Switzerland's endpoint at the answerer (Switzerland's gateway keeps its port)."""
    found = Answerer(free_port())
    folder = harness.tmp / "be-profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(folder, endpoints | {CH: f"http://127.0.0.1:{found.port}/as4"}, extra=RETRIES)
    harness.profile_folders[BE] = folder
    await found.start()
    yield found
    await found.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def be_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Belgium's store: its SQLite file (the harness's default), or a fresh PostgreSQL database. The tests list it
    first, so the database is dropped after the gateways stop."""
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
    """The counts moved by ``expected`` since ``before``: a send counts once its move is stored, which the API
    may show a moment earlier."""
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


@pytest.mark.parametrize("form", ["unsigned", "fault"])
async def test_an_unsigned_final_error_is_kept_as_evidence_and_the_message_retried_until_its_receipt(
    be_store: dict[str, Any], harness: Harness, session: aiohttp.ClientSession, answerer: Answerer, form: str
) -> None:
    """EBMS:0101 is final when the partner signs it; unsigned, it made the message FAILED at the first answer."""
    answerer.mode = form
    be = await harness.start(BE, **be_store)
    ch = await harness.start(CH)
    answerer.real = f"{ch.url}/as4"
    before = _counts()
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))
    message_id = submitted["message_id"]

    found = await wait_for(session, be, message_id, "RETRY_WAIT")

    first = _failed_attempts(found)[0]
    evidence = first["unverified_error_signal"]
    assert (evidence["signed"], evidence["verified"], evidence["signature"]) == (False, False, "none"), evidence
    assert evidence["http_status"] == 400 and first["http_status"] == 400, first
    assert [e["code"] for e in evidence["errors"]] == ["EBMS:0101"], evidence
    assert evidence["errors"][0]["short_description"] == "FailedAuthentication"
    assert evidence["errors"][0]["detail"] == FORGED
    assert "error_codes" not in first, first  # not recorded as the partner's codes
    assert "without a signature" in first["reason"] and "not taken as the partner's answer" in first["reason"]
    assert f"127.0.0.1:{answerer.port}/as4" in first["reason"], first["reason"]
    assert "next_attempt_at" in first
    await _counted(before, (1, 0, 0))  # a retry, not a failure: no FAILED alert

    await _again(harness, be)  # answered the same way again: still waiting, with its normal backoff
    found = await message(session, be, message_id) or {}
    assert found["state"] == "RETRY_WAIT" and len(_failed_attempts(found)) == 2, found["state"]
    assert answerer.posts == [form, form]

    answerer.mode = "forward"  # the partner's own answer gets through
    await _again(harness, be, timedelta(minutes=10))
    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert done["attempts"] == 3 and answerer.posts == [form, form, "forward"], done
    await wait_for(session, ch, message_id, "DELIVERED")
    await _counted(before, (2, 0, 0))  # never counted as failed


async def test_unverified_errors_until_the_time_to_live_fail_it_as_missing_receipt_naming_the_last_one(
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
    assert "HTTP 400, unsigned, so not taken as the partner's answer" in reason, reason
    assert f"EBMS:0101 FailedAuthentication: {FORGED}" in reason, reason
    await _counted(before, (0, 0, 1))  # one FAILED message, alerted as every other give-up at its time to live


async def test_an_error_signed_by_a_key_not_trusted_for_the_partner_is_kept_unverified_and_retried(
    be_store: dict[str, Any], harness: Harness, session: aiohttp.ClientSession, answerer: Answerer
) -> None:
    answerer.mode, answerer.key = "untrusted", harness.keys("DE-BFARM")
    be = await harness.start(BE, **be_store)
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))

    found = await wait_for(session, be, submitted["message_id"], "RETRY_WAIT")

    evidence = _failed_attempts(found)[0]["unverified_error_signal"]
    assert (evidence["signed"], evidence["verified"]) == (True, False), evidence
    assert evidence["signature"].startswith("not verified: "), evidence
    assert [e["code"] for e in evidence["errors"]] == ["EBMS:0101"], evidence


async def test_a_final_error_signed_by_the_partner_still_fails_the_message_at_once(
    be_store: dict[str, Any], harness: Harness, session: aiohttp.ClientSession, answerer: Answerer
) -> None:
    answerer.mode, answerer.key = "signed", harness.keys(CH)
    be = await harness.start(BE, **be_store)
    before = _counts()
    _, submitted = await submit(session, be, example(IA, today=harness.clock.now()))

    failed = await wait_for(session, be, submitted["message_id"], "FAILED")

    assert failed["attempts"] == 1 and answerer.posts == ["signed"], failed
    assert failed["last_error"].startswith("partner answered with an error signal: EBMS:0101"), failed
    final = [e["detail"] for e in failed["events"] if e["kind"] == "final_error"]
    assert final and final[0]["error_codes"] == ["EBMS:0101"] and "unverified_error_signal" not in final[0]
    await _counted(before, (0, 1, 1))
