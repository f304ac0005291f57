"""The REST API's edges, on a real gateway over loopback: a client that drops its connection is no store outage,
a form carries one permit and at most MAX_ATTACHMENTS supporting documents, a body over its route's limit is
refused before it is read (and before ``100 Continue``), and the answers are the ones openapi.yaml describes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.interfaces.demo import Running
from gateway.interfaces.rest import MAX_DOCUMENT_BYTES, MAX_RETRY_BODY_BYTES
from gateway.metrics import REGISTRY
from gateway.outbound.submit import MAX_ATTACHMENTS
from gateway.settings import ApiSettings, StoreSettings
from tests.e2e.conftest import Harness, StoreOutage, example
from tests.e2e.test_openapi import ABSOLUTE, BASE, METHODS, SPEC, check
from tests.e2e.test_openapi import REGISTRY as SPEC_REFERENCES

IA = "BE-IA-2026-0001.xml"
OUTAGES = "permit_gateway_store_unavailable_total"
ATTACHMENT = "/api/v1/messages/{message_id}/attachments/{position}"
TOKEN = "national-system-token-for-tests"


def _form(document: bytes, *attachments: tuple[str, bytes], documents: int = 1) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for _ in range(documents):
        form.add_field("document", document, filename="permit.xml", content_type="application/xml")
    for name, data in attachments:
        form.add_field("attachment", data, filename=name, content_type="application/pdf")
    return form


async def _post(session: aiohttp.ClientSession, gateway: Running, data: Any) -> tuple[int, Any]:
    async with session.post(f"{gateway.url}/api/v1/documents", data=data) as response:
        body = await response.json()
        check("POST", "/api/v1/documents", response.status, body)
        return response.status, body


async def _outbound(session: aiohttp.ClientSession, gateway: Running) -> list[Any]:
    async with session.get(f"{gateway.url}/api/v1/messages?direction=outbound") as response:
        return list((await response.json())["messages"])


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def _raw(port: int, head: str, *, wait: float = 5.0) -> bytes:
    """Send a request head byte for byte, none of the body it announces, and read what comes back within
    ``wait`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()
        answer = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while not _complete(answer) and (chunk := await reader.read(65536)):
                    answer += chunk
        return answer
    finally:
        writer.close()


def _complete(answer: bytes) -> bool:
    head, found, body = answer.split(CONTINUE)[-1].partition(b"\r\n\r\n")
    length = re.search(rb"Content-Length: (\d+)", head)
    return bool(found) and length is not None and len(body) >= int(length.group(1))


def _final(answer: bytes) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the final answer (after any ``100 Continue``)."""
    final = answer.split(CONTINUE)[-1]
    assert final.startswith(b"HTTP/1.1 "), answer[:300]
    head, _, body = final.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def _outages() -> float:
    """Requests answered 503 for the store so far, by this process's gateways (the registry is the process's)."""
    found = (REGISTRY.get_sample_value(OUTAGES, {"endpoint": e}) for e in ("api", "as4"))
    return sum(value or 0.0 for value in found)


async def test_a_client_that_drops_its_connection_mid_body_is_no_store_outage(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """aiohttp raises ConnectionResetError as the body stops; it was taken for the database's and set off the
    critical 'store unavailable' alert."""
    be = await harness.start("BE-FAMHP")
    before = _outages()
    for path in ("/api/v1/documents", "/as4"):
        _, writer = await asyncio.open_connection("127.0.0.1", harness.ports["BE-FAMHP"])
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n"
        )
        writer.write(head.encode() + b"<a>")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
    assert _outages() == before
    status, _ = await _post(session, be, example(IA, today=harness.clock.now()))
    assert status == 202  # the gateway goes on


@pytest.fixture
async def outage(harness: Harness, store_outage: StoreOutage) -> tuple[Running, Any]:
    """BE's gateway, and a way to take its SQLite database away. The store waits 2 s for a connection, not the
    default 30 (a request queued behind a failing connect waits twice that): what is tested is the answer."""
    store = StoreSettings(url=store_outage.url, wait_seconds=2.0)
    store_outage.gateway = await harness.start("BE-FAMHP", store=store)
    return store_outage.gateway, store_outage.cut


async def test_while_the_store_is_out_of_reach_every_route_that_uses_it_answers_the_documented_503(
    harness: Harness, session: aiohttp.ClientSession, outage: tuple[Running, Any]
) -> None:
    be, cut = outage
    status, sent = await _post(session, be, _form(example(IA, today=harness.clock.now()), ("scan.pdf", b"%PDF")))
    assert status == 202
    message_id = sent["message_id"]
    before = _outages()
    await cut()

    calls: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/api/v1/documents", {}, example(IA, today=harness.clock.now())),
        ("GET", "/api/v1/messages", {}, None),
        ("GET", "/api/v1/messages/{message_id}", {"message_id": message_id}, None),
        ("POST", "/api/v1/messages/{message_id}/retry", {"message_id": message_id}, None),
        ("GET", ATTACHMENT, {"message_id": message_id, "position": "1"}, None),
        ("GET", "/api/v1/messages/{message_id}/receipt", {"message_id": message_id}, None),
        ("GET", "/api/v1/messages/{message_id}/wire", {"message_id": message_id}, None),
        ("GET", "/api/v1/inbox", {}, None),
        ("GET", "/api/v1/inbox/{message_id}", {"message_id": message_id}, None),
        ("POST", "/api/v1/inbox/{message_id}/ack", {"message_id": message_id}, None),
        ("GET", "/api/v1/permits", {}, None),
        ("GET", "/api/v1/permits/overdue-endorsements", {}, None),
        (
            "GET",
            "/api/v1/permits/{type}/{country}/{number}",
            {"type": "IA", "country": "BE", "number": "X-1"},
            None,
        ),
    ]
    national = {(m, p) for p, item in SPEC["paths"].items() for m in item if m in METHODS}
    national = {(m, p) for m, p in national if p.startswith("/api/v1/") and "/admin/" not in p}
    national -= {("get", "/api/v1/openapi.json")}  # the one that does not use the store
    assert {(m.lower(), p) for m, p, _, _ in calls} == national, "every national route is called"
    for method, template, params, data in calls:
        async with session.request(method, f"{be.url}{template.format(**params)}", data=data) as response:
            body = await response.json()
            assert response.status == 503, (template, body)
            assert response.headers["Retry-After"] == "2"
            check(method, template, 503, body)
    async with session.get(f"{be.url}/metrics") as response:  # scraped through the outage, which it reports
        assert response.status == 200 and "permit_gateway_store_up 0.0" in await response.text()
    assert _outages() == before + len(calls)  # a real outage still counts; a scrape is no request refused


def _documented(method: str, template: str, status: int, content_type: str) -> bool:
    response = ABSOLUTE["paths"][template][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = SPEC_REFERENCES.resolver(BASE).lookup(response["$ref"]).contents
    kind = content_type.split("/")[0]
    return any(c in response.get("content", {}) for c in (content_type, f"{kind}/*", "*/*"))


async def test_an_attachment_comes_back_in_its_own_media_type_as_the_description_says(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    status, sent = await _post(session, be, _form(example(IA, today=harness.clock.now()), ("scan.pdf", b"%PDF-1")))
    assert status == 202
    async with session.get(f"{be.url}{sent['attachments'][0]['url']}") as response:
        assert response.status == 200 and response.content_type == "application/pdf"
        assert await response.read() == b"%PDF-1"
    assert _documented("GET", ATTACHMENT, 200, "application/pdf")


async def test_a_form_with_a_second_document_part_is_refused_naming_the_part_and_the_fix(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The second part silently replaced the first: a permit the national system sent was never sent."""
    be = await harness.start("BE-FAMHP")
    status, body = await _post(session, be, _form(example(IA, today=harness.clock.now()), documents=2))
    assert status == 400 and body["error"] == "bad submission"
    assert "second 'document' part" in body["detail"]
    assert "one 'document' part per submission" in body["detail"]
    assert await _outbound(session, be) == []


async def test_more_supporting_documents_than_a_submission_carries_are_refused_naming_the_limit(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Each attachment part held a spool file open until the request ended: 1100 of them answered a bare 500
    'Too many open files'."""
    be = await harness.start("BE-FAMHP")
    document = example(IA, today=harness.clock.now())
    files = [(f"scan-{n}.pdf", b"%d" % n) for n in range(MAX_ATTACHMENTS + 1)]
    status, body = await _post(session, be, _form(document, *files))
    assert status == 400
    assert f"more than {MAX_ATTACHMENTS} 'attachment' parts" in body["detail"]
    assert "combine them into fewer files" in body["detail"]
    assert await _outbound(session, be) == []

    status, body = await _post(session, be, _form(document, *files[:MAX_ATTACHMENTS]))
    assert status == 202 and len(body["attachments"]) == MAX_ATTACHMENTS


async def test_a_body_over_the_routes_limit_is_refused_from_its_length_before_it_is_sent(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A 100 MiB body was read up to aiohttp's 64 MiB, then refused with a plain-text 413 the description does
    not list. Here no byte of the body is sent: the answer must come from the Content-Length alone."""
    be = await harness.start("BE-FAMHP")
    port = harness.ports["BE-FAMHP"]
    limit = be.settings.inbound.max_message_bytes
    cases = [
        ("/api/v1/documents", "application/xml", MAX_DOCUMENT_BYTES, "the largest permit document"),
        ("/api/v1/documents", "multipart/form-data; boundary=b", limit, "[inbound] max_message_bytes"),
        ("/api/v1/messages/m@x/retry", "application/json", MAX_RETRY_BODY_BYTES, "a retry's JSON body"),
    ]
    for path, content_type, size, rule in cases:
        head = f"POST {path} HTTP/1.1\nHost: x\nContent-Type: {content_type}\nContent-Length: {size + 1}\n"
        status, body = _final(await _raw(port, head))
        assert status == 413, (path, body)
        assert body["error"] == "request body too large"
        assert f"the limit is {size} bytes ({rule}" in body["detail"]
        assert f"the request body is {size + 1} bytes" in body["detail"] and body["fix"]
        check("POST", "/api/v1/messages/{message_id}/retry" if "retry" in path else path, status, body)


async def test_a_body_without_a_length_is_refused_once_it_is_past_the_limit(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_DOCUMENT_BYTES // (1024 * 1024) + 2):
            yield b"<" * (1024 * 1024)

    headers = {"Content-Type": "application/xml"}
    async with session.post(f"{be.url}/api/v1/documents", data=chunks(), headers=headers) as response:
        status, body = response.status, await response.json()
    assert status == 413 and f"the limit is {MAX_DOCUMENT_BYTES} bytes" in body["detail"]
    check("POST", "/api/v1/documents", status, body)

    form = aiohttp.FormData()
    form.add_field("document", b"<" * (MAX_DOCUMENT_BYTES + 1), filename="permit.xml")
    status, body = await _post(session, be, form)
    assert status == 413 and "the 'document' part is larger" in body["detail"]


@pytest.mark.parametrize(
    ("token", "extra", "status"),
    [
        (False, "X-Forwarded-For: 192.0.2.7\n", 403),
        (True, "", 401),
        (True, f"Authorization: Bearer {TOKEN}\nContent-Length: 1000000000\n", 413),
    ],
    ids=["through-a-proxy", "no-token", "too-large"],
)
async def test_expect_100_continue_gets_the_refusal_instead_of_an_invitation_to_send_the_body(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, token: bool, extra: str, status: int
) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", TOKEN)
    api = ApiSettings(token_env="TEST_API_TOKEN") if token else ApiSettings()
    await harness.start("BE-FAMHP", api=api)
    length = "" if "Content-Length" in extra else "Content-Length: 5000\n"
    head = "POST /api/v1/documents HTTP/1.1\nHost: x\nContent-Type: application/xml\nExpect: 100-continue\n"
    answer = await _raw(harness.ports["BE-FAMHP"], head + length + extra, wait=3)
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:200]
    assert _final(answer)[0] == status


async def test_expect_100_continue_invites_a_body_the_api_takes(harness: Harness) -> None:
    await harness.start("BE-FAMHP")
    document = example(IA, today=harness.clock.now())
    head = (
        "POST /api/v1/documents HTTP/1.1\nHost: x\nContent-Type: application/xml\nExpect: 100-continue\n"
        f"Content-Length: {len(document)}\n"
    )
    port = harness.ports["BE-FAMHP"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(document)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 202")
    finally:
        writer.close()
