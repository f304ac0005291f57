"""Hostile HTTP input to a running gateway is answered, never with an unhandled error: mutated AS4 messages on
/as4 get an ebMS error signal or a SOAP Fault, and odd REST requests get a 4xx that says why.

Seeded, so a failure repeats; FUZZ_REQUESTS raises the count for a long campaign. Campaigns like this one found
the REST API's HTTP 500s on a multipart body without its boundary and on ``limit=abc``.
"""

from __future__ import annotations

import os
import random

import aiohttp

from tests.e2e.conftest import Harness, example
from tests.e2e.test_two_gateways import IA, _forged_user_message

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "150"))
UNHANDLED = b"Server got itself in trouble"  # aiohttp's body for an exception no handler caught
_INSERTS = [b"\r\n", b"--", b"<", b"&", b"\x00", b"<!DOCTYPE x>", b"]]>", b"9" * 40, b"</", b"Id=", b"cid:"]
_ODD = ["", "0", "-1", "abc", "9" * 30, "1e3", "%00", "..%2F..%2Fetc", "%3Cx%3E", "%C2%B2", "x" * 300, "true"]


def _mutated(rng: random.Random, data: bytes) -> bytes:
    body = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        at = rng.randrange(len(body) + 1)
        action = rng.random()
        if action < 0.3 and at < len(body):
            body[at] ^= rng.randint(1, 255)
        elif action < 0.6:
            body[at:at] = rng.choice(_INSERTS)
        elif action < 0.8:
            del body[at : at + rng.randint(1, 64)]
        else:
            body[at:at] = body[at : at + rng.randint(1, 300)]
    return bytes(body)


async def test_mutated_as4_messages_get_an_ebms_answer(harness: Harness, session: aiohttp.ClientSession) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    content_type, body = _forged_user_message(harness, example(IA, today=harness.clock.now()), "f1@be-famhp.test")
    rng = random.Random(1)
    unanswered = []
    for _ in range(REQUESTS):
        mutant = _mutated(rng, body)
        async with session.post(f"{ch.url}/as4", data=mutant, headers={"Content-Type": content_type}) as response:
            answer = await response.read()
        if response.status >= 500 and (UNHANDLED in answer or b"Fault" not in answer):
            unanswered.append((response.status, answer[:200]))
    assert unanswered == []


def _odd_request(rng: random.Random, document: bytes) -> tuple[str, str, bytes | None, dict[str, str]]:
    def odd() -> str:
        return rng.choice(_ODD)

    kind = rng.random()
    if kind < 0.3:
        content_type = rng.choice(
            ["application/xml", "text/plain", "application/json", "multipart/form-data; boundary=x"]
        )
        return (
            "POST",
            f"/api/v1/documents?partner={odd()}",
            _mutated(rng, document),
            {"Content-Type": content_type},
        )
    if kind < 0.4:
        part = b'--x\r\nContent-Disposition: form-data; name="document"\r\n\r\n' + document + b"\r\n--x--\r\n"
        return (
            "POST",
            "/api/v1/documents",
            _mutated(rng, part),
            {"Content-Type": "multipart/form-data; boundary=x"},
        )
    path = rng.choice(
        [
            f"/api/v1/messages?limit={odd()}&direction={odd()}",
            f"/api/v1/messages/{odd()}",
            f"/api/v1/messages/{odd()}/attachments/{rng.choice(['0', '1', '9' * 30])}",
            f"/api/v1/inbox?partner={odd()}&limit={odd()}",
            f"/api/v1/inbox/{odd()}",
            f"/api/v1/permits?type={odd()}&country={odd()}&status={odd()}&limit={odd()}",
            f"/api/v1/permits/{odd()}/{odd()}/{odd()}",
            f"/api/v1/permits/overdue-endorsements?days={odd()}",
        ]
    )
    if path.startswith("/api/v1/inbox/") and rng.random() < 0.5:
        return "POST", f"{path}/ack", None, {}
    if path.startswith("/api/v1/messages/") and path.count("/") == 4 and rng.random() < 0.5:
        return (
            "POST",
            f"{path}/retry",
            _mutated(rng, b'{"reason": "resend"}'),
            {"Content-Type": "application/json"},
        )
    return "GET", path, None, {}


async def test_odd_rest_requests_get_no_server_error(harness: Harness, session: aiohttp.ClientSession) -> None:
    be = await harness.start("BE-FAMHP")
    document = example(IA, today=harness.clock.now())
    rng = random.Random(2)
    failed = []
    for _ in range(REQUESTS * 2):
        method, path, body, headers = _odd_request(rng, document)
        async with session.request(method, f"{be.url}{path}", data=body, headers=headers) as response:
            text = await response.read()
        if response.status >= 500:
            failed.append((method, path[:120], response.status, text[:200]))
    assert failed == []
