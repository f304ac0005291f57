"""The OpenAPI description (gateway/interfaces/openapi.yaml) is what the gateway serves: every route with its
methods and nothing else, the code's enums, references that resolve, and real answers of two gateways that
exchange a permit validate against its schemas with a status it documents."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.documents import DocumentType
from gateway.interfaces import admin, rest
from gateway.interfaces.demo import Running, submit, wait_for, write_profiles
from gateway.interfaces.rest import openapi_document
from gateway.settings import AdminSettings
from gateway.store import PermitState, State
from tests.conftest import free_port
from tests.e2e.conftest import RETRIES, Harness, example

SPEC = openapi_document()
BASE = "urn:permit-gateway:openapi"


def _absolute(node: Any) -> Any:
    """The description with its local references made absolute, so a schema taken out of it still resolves."""
    if isinstance(node, dict):
        return {k: f"{BASE}{v}" if k == "$ref" else _absolute(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolute(v) for v in node]
    return node


ABSOLUTE = _absolute(SPEC)
REGISTRY: Registry[Any] = Registry().with_resource(
    BASE, Resource.from_contents(ABSOLUTE, default_specification=DRAFT202012)
)
METHODS = {"get", "put", "post", "patch", "delete"}
IA = "BE-IA-2026-0001.xml"


def _template(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


def test_every_route_the_gateway_serves_is_described_and_nothing_else() -> None:
    served = {(r.method.lower(), _template(r.path)) for r in [*rest.routes, *admin.routes]}
    described = {(m, path) for path, item in SPEC["paths"].items() for m in item if m in METHODS}
    assert served - described == set(), "routes missing from openapi.yaml"
    assert described - served == set(), "openapi.yaml describes routes the gateway does not serve"


def test_the_enums_are_the_codes() -> None:
    schemas = SPEC["components"]["schemas"]
    assert schemas["MessageState"]["enum"] == [s.value for s in State]
    assert schemas["PermitStatus"]["enum"] == [s.value for s in PermitState]
    assert schemas["DocumentType"]["enum"] == [t.value for t in DocumentType]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_every_schema_is_valid_json_schema() -> None:
    resolver = REGISTRY.resolver(BASE)
    for ref in _refs(SPEC):
        assert ref.startswith("#/components/"), ref
        resolver.lookup(f"{BASE}{ref}")
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def _operation(method: str, template: str) -> dict[str, Any]:
    operation: dict[str, Any] = ABSOLUTE["paths"][template][method.lower()]
    return operation


def _json_schema(response: dict[str, Any]) -> dict[str, Any] | None:
    if "$ref" in response:
        response = REGISTRY.resolver(BASE).lookup(response["$ref"]).contents
    content = response.get("content", {})
    return content["application/json"]["schema"] if "application/json" in content else None


def check(method: str, template: str, status: int, body: Any) -> None:
    """``status`` is documented for the operation, and a JSON ``body`` validates against its schema."""
    responses = _operation(method, template)["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which openapi.yaml does not list"
    schema = _json_schema(responses[str(status)])
    if schema is not None:
        validator = Draft202012Validator(schema, registry=REGISTRY)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], f"{method} {template} {status}: {errors}"


async def call(
    session: aiohttp.ClientSession, gateway: Running, method: str, template: str, *, query: str = "", **kw: Any
) -> tuple[int, Any]:
    """Call a route, check the answer against the description, return (status, JSON or bytes)."""
    params = {k: v for k, v in kw.items() if k not in ("data",)}
    path = template.format(**{k: quote(str(v), safe="@/") for k, v in params.items()})
    async with session.request(method, f"{gateway.url}{path}{query}", data=kw.get("data")) as response:
        is_json = response.content_type == "application/json"
        body = await response.json() if is_json else await response.read()
        check(method, template, response.status, body if is_json else None)
        return response.status, body


@pytest.fixture
def rest_pull(harness: Harness) -> None:
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=RETRIES + "delivery:\n  method: rest-pull\n")


@pytest.mark.usefixtures("rest_pull")
async def test_the_answers_of_two_gateways_exchanging_a_permit_match_the_description(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, ch = await harness.start("BE-FAMHP"), await harness.start("CH-SWISSMEDIC")
    document = example(IA, today=harness.clock.now())
    invalid = example("IA-001-importing-country-not-issuer.xml", today=harness.clock.now(), folder="invalid")

    status, sent = await call(session, be, "POST", "/api/v1/documents", data=document)
    assert status == 202
    message_id = sent["message_id"]
    assert (await call(session, be, "POST", "/api/v1/documents", data=document))[0] == 200
    assert (await call(session, be, "POST", "/api/v1/documents", data=invalid))[0] == 422
    form = aiohttp.FormData()
    form.add_field("attachment", b"%PDF", filename="scan.pdf")
    assert (await call(session, be, "POST", "/api/v1/documents", data=form))[0] == 400
    empty = aiohttp.FormData(default_to_multipart=True)
    empty.add_field("document", "")  # read as an empty bytearray, which lxml misread (a 500)
    assert (await call(session, be, "POST", "/api/v1/documents", data=empty))[0] == 422
    for method, path, status in (("GET", "/api/v1/nothing", 404), ("DELETE", "/api/v1/messages", 405)):
        async with session.request(method, f"{be.url}{path}") as response:
            assert response.status == status
            assert "/api/v1/openapi.json" in (await response.json())["fix"]
    await wait_for(session, be, message_id, "ACKNOWLEDGED")

    for gateway in (be, ch):
        assert (await call(session, gateway, "GET", "/api/v1/messages"))[0] == 200
        assert (await call(session, gateway, "GET", "/api/v1/messages", query="?state=nonsense"))[0] == 400
        assert (await call(session, gateway, "GET", "/api/v1/messages/{message_id}", message_id=message_id))[
            0
        ] == 200
        receipt = await call(
            session, gateway, "GET", "/api/v1/messages/{message_id}/receipt", message_id=message_id
        )
        assert receipt[0] == 200
        wire = await call(session, gateway, "GET", "/api/v1/messages/{message_id}/wire", message_id=message_id)
        assert wire[0] == 200
    missing = "/api/v1/messages/{message_id}/attachments/{position}"
    assert (await call(session, be, "GET", missing, message_id=message_id, position=1))[0] == 404
    assert (await call(session, be, "GET", "/api/v1/messages/{message_id}", message_id="no@where"))[0] == 404
    retry = "/api/v1/messages/{message_id}/retry"
    assert (await call(session, be, "POST", retry, message_id=message_id))[0] == 409
    assert (await call(session, be, "POST", retry, message_id="no@where"))[0] == 404

    status, listing = await call(session, ch, "GET", "/api/v1/inbox")
    assert status == 200 and [m["message_id"] for m in listing["messages"]] == [message_id]
    assert (await call(session, ch, "GET", "/api/v1/inbox/{message_id}", message_id=message_id))[1] == document
    assert (await call(session, ch, "POST", "/api/v1/inbox/{message_id}/ack", message_id=message_id))[0] == 200
    assert (await call(session, ch, "POST", "/api/v1/inbox/{message_id}/ack", message_id="no@where"))[0] == 404

    for gateway in (be, ch):
        assert (await call(session, gateway, "GET", "/api/v1/permits"))[0] == 200
        permit = "/api/v1/permits/{type}/{country}/{number}"
        found = await call(session, gateway, "GET", permit, type="IA", country="BE", number="BE-IA-2026-0001")
        assert found[0] == 200 and found[1]["lines"]
        assert (await call(session, gateway, "GET", permit, type="XX", country="BE", number="1"))[0] == 400
        assert (await call(session, gateway, "GET", permit, type="IA", country="BE", number="none"))[0] == 404
        assert (await call(session, gateway, "GET", "/api/v1/permits/overdue-endorsements"))[0] == 200
    assert (await call(session, be, "GET", "/health"))[0] == 200
    assert (await call(session, be, "GET", "/metrics"))[0] == 200
    assert (await call(session, be, "GET", "/api/v1/openapi.json"))[1] == SPEC
    assert (await call(session, be, "GET", "/api/v1/admin/profiles"))[0] == 403


SCHEMATHESIS_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
"""Every answer is documented and valid. Left out: 'schema-valid request rejected' (a permit's validity is its
XSD and treaty rules, which the description cannot hold) and 'schema-violating request accepted' (the API is
lenient where it costs nothing: a state in lower case, an empty filter)."""


ADMIN_TOKEN = "admin-token-for-the-fuzzer"


async def _fuzz(session: aiohttp.ClientSession, harness: Harness, folder: Path, routes: str) -> str:
    """Schemathesis run against ``routes`` of Belgium's gateway, one permit exchanged first: its output, or a
    failure with it."""
    be = await harness.start("BE-FAMHP", admin=AdminSettings(token_env="TEST_ADMIN_TOKEN"))
    await harness.start("CH-SWISSMEDIC")
    sent = await submit(session, be, example(IA, today=harness.clock.now()))  # data for the routes to find
    await wait_for(session, be, sent["message_id"], "ACKNOWLEDGED")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{be.url}/api/v1/openapi.json",
        *(
            ["--exclude-path-regex=/admin/"]
            if routes == "national"
            else ["--include-path-regex=/admin/", f"--header=Authorization: Bearer {ADMIN_TOKEN}"]
        ),
        f"--checks={SCHEMATHESIS_CHECKS}",
        "--max-examples=25",
        "--seed=20261127",
        "--no-shrink",
        f"--report-dir={folder}",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=folder
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{routes} routes: {text[-6000:]}"
    summary = text.split("SUMMARY")[-1].lower().replace("0 failures", "")
    assert "generated" in text and "failures" not in summary, f"{routes} routes: {text[-6000:]}"
    return text


def _own_harness(harness: Harness, folder: Path) -> Harness:
    """Gateways of their own (ports, data, profiles) beside ``harness``'s, with the same PKI and clock."""
    ports = {party: free_port() for party in harness.ports}
    (folder / "profiles").mkdir(parents=True)
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in ports.items()}
    write_profiles(folder / "profiles", endpoints, extra=RETRIES + "delivery:\n  method: rest-pull\n")
    return Harness(tmp=folder, pki=harness.pki, clock=harness.clock, ports=ports, running={})


@pytest.mark.usefixtures("rest_pull")
async def test_generated_requests_get_no_server_error_and_only_documented_answers(
    harness: Harness, session: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The national and the admin routes each fuzzed against gateways of their own (the admin run changes
    profiles), at the same time: each schemathesis process keeps a core busy generating."""
    monkeypatch.setenv("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    admin_harness = _own_harness(harness, tmp_path / "admin")
    (tmp_path / "national").mkdir()
    try:
        runs = await asyncio.gather(  # both to their end: no schemathesis left running after the test
            _fuzz(session, harness, tmp_path / "national", "national"),
            _fuzz(session, admin_harness, tmp_path / "admin", "admin"),
            return_exceptions=True,
        )
        for run in runs:
            if isinstance(run, BaseException):
                raise run
    finally:
        for party_id in list(admin_harness.running):
            await admin_harness.stop(party_id)
