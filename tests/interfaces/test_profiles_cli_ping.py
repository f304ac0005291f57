"""``profiles ping``: the AS4 test message against a fake partner on loopback, and each way it can fail."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.as4 import (
    TEST_ACTION,
    TEST_SERVICE,
    EbmsCode,
    EbmsError,
    KeyPair,
    SecurityPolicy,
    build_error_signal,
    build_receipt,
    parse_incoming,
)
from gateway.clock import FixedClock
from gateway.outbound.ping import PingResult, Stage, ping
from gateway.profiles import DevPki, PartnerProfile, generate_dev_pki
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.model import Security
from gateway.profiles.trust import Partner, load_key_pair, partner_of
from gateway.settings import IdentitySettings
from tests.profiles.conftest import AUTHORITIES, NOW
from tests.profiles.helpers import default_structlog

US = IdentitySettings(party_id="BE-FAMHP", country="BE", authority_name="FAMHP")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


def keys_of(pki: DevPki, party_id: str) -> KeyPair:
    files = pki.files_for(party_id)
    return load_key_pair(files.key, files.certificate, None, now=NOW)


def partner_at(pki: DevPki, endpoint: str) -> Partner:
    profile = PartnerProfile(
        id="ch-swissmedic",
        authority_name="Swissmedic",
        country="CH",
        party_id="CH-SWISSMEDIC",
        endpoint=endpoint,
        security=Security(signing_certificate=pki.files_for("CH-SWISSMEDIC").certificate),
    )
    return partner_of(profile, now=NOW)


def receipting(pki: DevPki, signer: str = "CH-SWISSMEDIC") -> Handler:
    """A partner that checks the test message as a real one and answers with a signed receipt."""
    ours, theirs = keys_of(pki, "CH-SWISSMEDIC"), keys_of(pki, signer)
    policy = SecurityPolicy(signing_certificates=(keys_of(pki, "BE-FAMHP").certificate,))

    async def handle(request: web.Request) -> web.Response:
        received = parse_incoming(
            request.headers["Content-Type"],
            await request.read(),
            policy_for=lambda _: policy,
            keys=(ours,),
            now=NOW,
        )
        assert (received.user_message.service, received.user_message.action) == (TEST_SERVICE, TEST_ACTION)
        assert received.payloads == ()
        receipt = build_receipt(
            received.user_message.message_id,
            received.references,
            key=theirs,
            message_id=f"{uuid.uuid4()}@ch.test",
            now=NOW,
        )
        return web.Response(body=receipt.body, headers={"Content-Type": receipt.content_type})

    return handle


async def run_ping(partner: Partner, pki: DevPki, timeout: float = 5.0) -> PingResult:
    async with aiohttp.ClientSession() as session:
        return await ping(
            partner,
            identity=US,
            keys=OwnKeys.single(keys_of(pki, "BE-FAMHP")),
            session=session,
            clock=FixedClock(NOW),
            timeout=timeout,
        )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/as4", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/as4"

    yield start
    for server in servers:
        await server.close()


async def test_signed_receipt_round_trip(pki: DevPki, serve: Callable[[Handler], Awaitable[str]]) -> None:
    endpoint = await serve(receipting(pki))

    result = await run_ping(partner_at(pki, endpoint), pki)

    assert result.ok, result
    assert result.stage is Stage.RECEIPT_OK and result.http_status == 200
    assert result.round_trip_ms is not None and result.round_trip_ms > 0
    assert result.detail.startswith("signed receipt ") and result.detail.endswith(" verified")


async def test_receipt_signed_by_a_stranger_is_invalid(
    pki: DevPki, serve: Callable[[Handler], Awaitable[str]]
) -> None:
    endpoint = await serve(receipting(pki, signer="DE-BFARM"))

    result = await run_ping(partner_at(pki, endpoint), pki)

    assert result.stage is Stage.INVALID_RECEIPT
    assert result.detail.startswith("EBMS:0302: ")
    assert "CN=DE-BFARM' (SHA-256 " in result.detail
    assert result.detail.endswith("is not among the certificates pinned in the partner profile")


async def test_ebms_error_signal(pki: DevPki, serve: Callable[[Handler], Awaitable[str]]) -> None:
    ours = keys_of(pki, "CH-SWISSMEDIC")

    async def refuse(request: web.Request) -> web.Response:
        error = EbmsError(EbmsCode.PROCESSING_MODE_MISMATCH, "no agreement for the test service with BE-FAMHP")
        signal = build_error_signal(error, key=ours, message_id=f"{uuid.uuid4()}@ch.test", now=NOW)
        return web.Response(
            status=signal.http_status, body=signal.body, headers={"Content-Type": signal.content_type}
        )

    result = await run_ping(partner_at(pki, await serve(refuse)), pki)

    assert result.stage is Stage.EBMS_ERROR
    assert result.error_codes == ("EBMS:0010",)
    assert "no agreement for the test service with BE-FAMHP" in result.detail


async def test_http_error_without_ebms(pki: DevPki, serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance until 18:00")

    result = await run_ping(partner_at(pki, await serve(unavailable)), pki)

    assert result.stage is Stage.HTTP and result.http_status == 503
    assert result.detail == "HTTP 503 Service Unavailable: maintenance until 18:00"


async def test_timeout(pki: DevPki, serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    result = await run_ping(partner_at(pki, await serve(slow)), pki, timeout=0.2)

    assert result.stage is Stage.TIMEOUT
    assert result.detail.endswith("within 0.2 s")


async def test_dns_failure(pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver answers at once that the name does not exist, as no real query is made (loopback only)."""
    real = socket.getaddrinfo

    def no_such_name(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    result = await run_ping(partner_at(pki, "http://no-such-host.invalid/as4"), pki)

    assert result.stage is Stage.DNS
    assert result.detail.startswith("the host of http://no-such-host.invalid/as4 cannot be resolved")


async def test_tls_failure(pki: DevPki) -> None:
    files = pki.files_for("CH-SWISSMEDIC")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.certificate, files.key)
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        result = await run_ping(partner_at(pki, f"https://127.0.0.1:{port}/as4"), pki)
    finally:
        await runner.cleanup()

    assert result.stage is Stage.TLS
    assert "certificate verify failed" in result.detail


async def test_profile_with_an_expired_certificate_is_not_pinged(pki: DevPki) -> None:
    partner = partner_at(pki, "http://127.0.0.1:9/as4")
    async with aiohttp.ClientSession() as session:
        result = await ping(
            partner,
            identity=US,
            keys=OwnKeys.single(keys_of(pki, "BE-FAMHP")),
            session=session,
            clock=FixedClock(NOW + timedelta(days=800)),
        )

    assert result.stage is Stage.PROFILE
    assert "expired on" in result.detail
