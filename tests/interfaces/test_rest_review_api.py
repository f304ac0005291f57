"""The REST API against its own description (gateway/interfaces/openapi.yaml), on a real gateway over loopback
with SQLite and PostgreSQL stores: a NUL character in a path or query value is a 400 naming it, not a server
error; a profile id too long for a file name is a 404; every answer and status is documented; validation is
the description's; and errors name their fix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from gateway.clock import FixedClock
from gateway.inbound.deliver import metadata, webhook_headers
from gateway.interfaces.demo import AUTHORITIES, Running, gateway_settings, start_gateway, write_profiles
from gateway.interfaces.rest import REASON_PATTERN, attachments_json
from gateway.profiles.devpki import DevPki
from gateway.settings import AdminSettings, StoreSettings
from gateway.store import Direction, MessageRecord, State
from tests.conftest import free_port
from tests.e2e.conftest import example
from tests.e2e.test_openapi import REGISTRY, SPEC, check

IA = "BE-IA-2026-0001.xml"
ADMIN_TOKEN = "admin-token-for-the-review-tests"
NUL_REQUESTS = [
    ("GET", "/api/v1/messages/a%00b", "/api/v1/messages/{message_id}", "message_id"),
    ("GET", "/api/v1/messages/a%00b/receipt", "/api/v1/messages/{message_id}/receipt", "message_id"),
    ("GET", "/api/v1/messages/x@y?from=%00", "/api/v1/messages/{message_id}", "from"),
    ("GET", "/api/v1/permits?country=%00", "/api/v1/permits", "country"),
    ("GET", "/api/v1/permits/IA/B%00E/1", "/api/v1/permits/{type}/{country}/{number}", "country"),
    ("GET", "/api/v1/permits/IA/BE/1%00", "/api/v1/permits/{type}/{country}/{number}", "number"),
    ("GET", "/api/v1/inbox/a%00b", "/api/v1/inbox/{message_id}", "message_id"),
    ("GET", "/api/v1/inbox?partner=%00", "/api/v1/inbox", "partner"),
    ("POST", "/api/v1/messages/a%00b/retry", "/api/v1/messages/{message_id}/retry", "message_id"),
    ("POST", "/api/v1/inbox/a%00b/ack", "/api/v1/inbox/{message_id}/ack", "message_id"),
]


@dataclass
class Gateway:
    running: Running
    session: aiohttp.ClientSession
    now: datetime

    @property
    def url(self) -> str:
        return self.running.url

    async def call(self, method: str, path: str, template: str, **kw: Any) -> tuple[int, Any, Any]:
        """(status, JSON body or bytes, headers), the status and body checked against the description."""
        async with self.session.request(method, f"{self.url}{path}", **kw) as response:
            is_json = response.content_type == "application/json"
            body = await response.json() if is_json else await response.read()
            check(method, template, response.status, body if is_json else None)
            return response.status, body, response.headers

    async def submitted(self) -> str:
        status, body, _ = await self.call(
            "POST", "/api/v1/documents", "/api/v1/documents", data=example(IA, today=self.now)
        )
        assert status == 202, body
        return str(body["message_id"])


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    create: Callable[[], str] = request.getfixturevalue("pg_databases")
    return create()


async def _start(
    tmp_path: Path,
    pki: DevPki,
    store_url: str,
    session: aiohttp.ClientSession,
    *,
    profile_extra: str = "",
    **sections: Any,
) -> Gateway:
    port = free_port()
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    # Switzerland's endpoint answers nothing: what Belgium sends stays on its way
    endpoints = {
        "BE-FAMHP": f"http://127.0.0.1:{port}/as4",
        "CH-SWISSMEDIC": f"http://127.0.0.1:{free_port()}/as4",
    }
    write_profiles(profiles, endpoints, extra=profile_extra)
    settings = gateway_settings(AUTHORITIES[0], pki, port=port, data_dir=tmp_path / "data", profiles=profiles)
    settings = settings.model_copy(update={"store": StoreSettings(url=store_url), **sections})
    now = datetime.now(UTC)
    return Gateway(await start_gateway("BE", settings, FixedClock(now)), session, now)


@asynccontextmanager
async def running(tmp_path: Path, pki: DevPki, store_url: str | None = None, **kw: Any) -> AsyncIterator[Gateway]:
    """Belgium's gateway on ``store_url`` (an SQLite file in ``tmp_path`` by default), for as long as the block runs."""
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    async with aiohttp.ClientSession() as session:
        found = await _start(tmp_path, pki, url, session, **kw)
        try:
            yield found
        finally:
            await found.running.runner.cleanup()


@pytest.fixture
async def gateway(tmp_path: Path, pki: DevPki, store_url: str) -> AsyncIterator[Gateway]:
    async with running(tmp_path, pki, store_url) as found:
        yield found


@pytest.fixture
async def sqlite_gateway(tmp_path: Path, pki: DevPki) -> AsyncIterator[Gateway]:
    async with running(tmp_path, pki) as found:
        yield found


async def test_a_nul_character_in_a_path_or_query_value_is_a_400_naming_it(gateway: Gateway) -> None:
    for method, path, template, name in NUL_REQUESTS:
        status, body, _ = await gateway.call(method, path, template)
        assert status == 400, (path, body)
        assert repr(name) in body["detail"] and "NUL" in body["detail"], body
        assert body["fix"], body
    status, body, _ = await gateway.call("GET", "/api/v1/messages/a%ED%A0%80b", "/api/v1/messages/{message_id}")
    assert status == 404 and body["fix"]  # not UTF-8 once decoded, and no NUL: looked up and not found


async def test_an_overlong_profile_id_is_a_404_on_every_admin_route(
    tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEW_ADMIN_TOKEN", ADMIN_TOKEN)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    store = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    async with aiohttp.ClientSession(headers=auth) as session:
        gateway = await _start(tmp_path, pki, store, session, admin=AdminSettings(token_env="REVIEW_ADMIN_TOKEN"))
        try:
            profile = "/api/v1/admin/profiles/{profile_id}"
            for long_id in ("a" * 201, "a" * 256, "-".join(["ab"] * 200)):
                base = f"/api/v1/admin/profiles/{long_id}"
                for suffix in ("", "/history", "/diff", "/history/1"):
                    status, body, _ = await gateway.call(
                        "GET", base + suffix, profile + suffix.replace("1", "{version}")
                    )
                    assert status == 404 and "at most 200 characters" in body["error"], (suffix, body)
                headers = {"If-None-Match": "*", "Content-Type": "application/yaml"}
                status, body, _ = await gateway.call("PUT", base, profile, data=b"id: x\n", headers=headers)
                assert status == 404, body
            parameter = SPEC["components"]["parameters"]["ProfileId"]["schema"]
            assert parameter["maxLength"] == 200
            assert Draft202012Validator(parameter).is_valid("a" * 200)
            status, _, _ = await gateway.call("GET", "/api/v1/admin/profiles/" + "a" * 200, profile)
            assert status == 404  # no such profile; the id itself is one
        finally:
            await gateway.running.runner.cleanup()


ADMIN_OPERATIONS = [
    (method.upper(), template)
    for template, item in SPEC["paths"].items()
    if template.startswith("/api/v1/admin/")
    for method in item
    if method in {"get", "put", "post", "patch", "delete"}
]


async def test_every_admin_operation_answers_a_documented_403_while_the_admin_api_is_off(
    sqlite_gateway: Gateway,
) -> None:
    for method, template in ADMIN_OPERATIONS:
        path = template.replace("{profile_id}", "be-famhp").replace("{version}", "1")
        status, body, _ = await sqlite_gateway.call(method, path, template, headers={"If-Match": '"x"'})
        assert status == 403 and "admin API is off" in body["error"], (method, template, body)


async def test_the_wire_file_answers_ranges_and_conditions_as_documented(sqlite_gateway: Gateway) -> None:
    message_id = await sqlite_gateway.submitted()
    template = "/api/v1/messages/{message_id}/wire"
    path = f"/api/v1/messages/{message_id}/wire"
    status, whole, headers = await sqlite_gateway.call("GET", path, template)
    assert status == 200 and headers["Accept-Ranges"] == "bytes"
    status, part, headers = await sqlite_gateway.call("GET", path, template, headers={"Range": "bytes=0-9"})
    assert status == 206 and part == whole[:10] and headers["Content-Range"].startswith("bytes 0-9/")
    etag = headers["ETag"]
    assert (await sqlite_gateway.call("GET", path, template, headers={"If-None-Match": etag}))[0] == 304
    assert (await sqlite_gateway.call("GET", path, template, headers={"If-Match": '"other"'}))[0] == 412
    far = {"Range": f"bytes={len(whole) + 10}-"}
    assert (await sqlite_gateway.call("GET", path, template, headers=far))[0] == 416
    for template in ("/api/v1/messages/{message_id}/wire", "/api/v1/messages/{message_id}/attachments/{position}"):
        responses = SPEC["paths"][template]["get"]["responses"]
        assert {"206", "304", "412", "416"} <= set(responses), template


async def test_get_routes_answer_head_only_where_the_description_says(sqlite_gateway: Gateway) -> None:
    for path in ("/api/v1/messages", "/api/v1/permits", "/api/v1/openapi.json", "/metrics", "/api/v1/admin/audit"):
        async with sqlite_gateway.session.head(f"{sqlite_gateway.url}{path}") as response:
            assert response.status == 405, path
            assert "GET" in response.headers["Allow"]
    async with sqlite_gateway.session.head(f"{sqlite_gateway.url}/health") as response:
        assert response.status == 200
    assert "200" in SPEC["paths"]["/health"]["head"]["responses"]


async def test_an_empty_filter_is_a_400_naming_it_and_a_limit_may_have_leading_zeros(
    sqlite_gateway: Gateway,
) -> None:
    for query, named, allowed in (
        ("state=", "state", "FAILED"),
        ("direction=", "direction", "outbound"),
        ("limit=", "limit", "500"),
    ):
        status, body, _ = await sqlite_gateway.call("GET", f"/api/v1/messages?{query}", "/api/v1/messages")
        assert status == 400 and named in body["detail"] and allowed in body["detail"], body
        assert body["fix"]
    for query in ("type=", "status="):
        status, body, _ = await sqlite_gateway.call("GET", f"/api/v1/permits?{query}", "/api/v1/permits")
        assert status == 400 and "use one of" in body["detail"], body
    assert (await sqlite_gateway.call("GET", "/api/v1/messages?limit=0500", "/api/v1/messages"))[0] == 200
    assert (await sqlite_gateway.call("GET", "/api/v1/inbox?limit=0050", "/api/v1/inbox"))[0] == 200
    assert (await sqlite_gateway.call("GET", "/api/v1/messages?limit=0501", "/api/v1/messages"))[0] == 400
    status, _, _ = await sqlite_gateway.call("GET", "/api/v1/permits?limit=" + "0" * 5000 + "7", "/api/v1/permits")
    assert status == 200


REASONS = [
    "\u001e",
    "\u001f x",
    " \t\n",
    "\u00a0",
    "\u3000\ufeff",
    "\u0085",
    "\u200b",
    "x",
    " ok ",
    "é",
    "\u0000y",
]


async def test_a_retry_reason_is_refused_exactly_when_the_description_says_it_is_invalid(
    sqlite_gateway: Gateway,
) -> None:
    message_id = await sqlite_gateway.submitted()
    template = "/api/v1/messages/{message_id}/retry"
    schema = {
        "$ref": "urn:permit-gateway:openapi#/paths/~1api~1v1~1messages~1{message_id}~1retry/post/requestBody/content/application~1json/schema"
    }
    validator = Draft202012Validator(schema, registry=REGISTRY)
    assert (
        SPEC["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "reason"
        ]["pattern"]
        == REASON_PATTERN
    )
    for reason in REASONS:
        path = f"/api/v1/messages/{message_id}/retry"
        status, body, _ = await sqlite_gateway.call("POST", path, template, json={"reason": reason})
        valid = validator.is_valid({"reason": reason})
        assert (status == 400) is (not valid), (reason, status, body)
        assert status in (400, 409), body  # 409: the message is on its way, not FAILED


async def test_a_body_that_is_not_a_permit_document_is_a_415_naming_the_accepted_types(
    sqlite_gateway: Gateway,
) -> None:
    document = example(IA, today=sqlite_gateway.now)
    for content_type in ("application/json", "text/csv", "image/png"):
        status, body, _ = await sqlite_gateway.call(
            "POST", "/api/v1/documents", "/api/v1/documents", data=document, headers={"Content-Type": content_type}
        )
        assert status == 415, (content_type, body)
        assert content_type in body["detail"] and "application/xml" in body["fix"], body
    for content_type in (
        "text/xml",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "text/plain",
    ):
        headers = {"Content-Type": content_type}
        status, body, _ = await sqlite_gateway.call(
            "POST", "/api/v1/documents", "/api/v1/documents", data=document, headers=headers
        )
        assert status in (200, 202), (content_type, body)


async def test_errors_name_their_fix(sqlite_gateway: Gateway) -> None:
    gateway = sqlite_gateway
    message_id = await gateway.submitted()
    message = "/api/v1/messages/{message_id}"
    cases = [
        ("GET", "/api/v1/messages/nope@x", message, 404, "GET /api/v1/messages"),
        ("GET", "/api/v1/messages/nope@x?direction=inbound", message, 404, "leave out ?direction="),
        (
            "GET",
            f"/api/v1/messages/{message_id}/attachments/1",
            f"{message}/attachments/{{position}}",
            404,
            "none",
        ),
        ("POST", "/api/v1/messages/nope@x/retry", f"{message}/retry", 404, "state=FAILED"),
        ("POST", f"/api/v1/messages/{message_id}/retry", f"{message}/retry", 409, "only a FAILED message"),
        ("GET", "/api/v1/inbox/nope@x", "/api/v1/inbox/{message_id}", 404, "delivery.method: rest-pull"),
        ("POST", "/api/v1/inbox/nope@x/ack", "/api/v1/inbox/{message_id}/ack", 404, "acknowledged already"),
        (
            "GET",
            "/api/v1/permits/IA/BE/none",
            "/api/v1/permits/{type}/{country}/{number}",
            404,
            "/api/v1/permits?",
        ),
    ]
    for method, path, template, expected, fix in cases:
        status, body, _ = await gateway.call(method, path, template)
        assert status == expected and fix in body.get("fix", ""), (path, body)
    status, body, _ = await gateway.call(
        "GET", f"/api/v1/messages/{message_id}/attachments/1", f"{message}/attachments/{{position}}"
    )
    assert body["detail"] == "it has 0 supporting documents"
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.txt")
    status, body, _ = await gateway.call("POST", "/api/v1/documents", "/api/v1/documents", data=form)
    assert status == 400 and "'document'" in body["detail"] and "'attachment'" in body["detail"]
    assert "'document' part" in body["fix"]


def _received() -> MessageRecord:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    return MessageRecord(
        id=1, direction=Direction.INBOUND, message_id="m-1@ch", conversation_id="c-1", ref_to_message_id=None,
        mpc=None, partner_id="ch-swissmedic", from_party="CH-SWISSMEDIC", to_party="BE-FAMHP", service="s",
        action="ImportAuthorization", document_type="ImportAuthorization", document_number="CH-IA-1",
        payload_sha256="0" * 64, payload_mime_type="application/xml", wire_sha256=None, wire_content_type=None,
        signed_references=None, attachments=None, state=State.ACCEPTED, attempts=0, next_attempt_at=None,
        lease_owner=None, lease_expires_at=None, expires_at=None, last_error=None, created_at=at, updated_at=at,
    )  # fmt: skip


def test_the_inbox_entry_and_its_headers_are_described_with_the_delivery_id() -> None:
    record = _received()
    entry = metadata(record) | {"state": record.state.value, "url": "/api/v1/inbox/m-1@ch"}
    entry["attachments"] = attachments_json(record)
    schema = SPEC["components"]["schemas"]["InboxEntry"]
    assert set(entry) <= set(schema["properties"]), set(entry) - set(schema["properties"])
    assert "delivery_id" in schema["required"]
    strict = {"$ref": "urn:permit-gateway:openapi#/components/schemas/InboxEntry"}
    errors = list(Draft202012Validator(strict, registry=REGISTRY).iter_errors(entry))
    assert errors == []
    documented = SPEC["paths"]["/api/v1/inbox/{message_id}"]["get"]["responses"]["200"]["headers"]
    sent = {name for name in webhook_headers(record) if name.startswith("X-Permit-")}
    assert sent <= set(documented), sent - set(documented)
    header = webhook_headers(record)["X-Permit-Delivery-Id"]
    assert header == entry["delivery_id"] and re.fullmatch(
        documented["X-Permit-Delivery-Id"]["schema"]["pattern"], header
    )
