"""Requests to partners go through the configured outbound HTTP proxy (``[outbound] proxy``): sends, pulls and
pings, an https:// partner tunnelled with CONNECT. A proxy that refuses us is named as the problem, with the fix,
never taken for the partner being down; the message waits for its retry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from typer.testing import CliRunner

from gateway.errors import ConfigError
from gateway.interfaces.cli import app as cli
from gateway.interfaces.demo import exchange, wait_for
from gateway.interfaces.keys import NODE
from gateway.interfaces.node import PROXY, create_app
from gateway.interfaces.profiles_cli import _ping
from gateway.outbound.ping import Stage, ping
from gateway.outbound.proxy import ProxySettings, proxy_settings
from gateway.profiles.devpki import DevPki
from gateway.settings import OutboundSettings, settings_from_dict
from tests.conftest import free_port
from tests.e2e.conftest import Harness, example, harness, session, submit  # noqa: F401 - the two-gateway fixtures
from tests.e2e.test_mutual_tls import TlsFront
from tests.e2e.test_pull import BE, CH, pull_harness, write_ch_view  # noqa: F401 - a fixture

IA = "BE-IA-2026-0001.xml"
PASSWORD_ENV = "TEST_OUTBOUND_PROXY_PASSWORD"


@dataclass
class ForwardProxy:
    """A small forward proxy on loopback: absolute-form requests forwarded, CONNECT tunnelled, and with
    ``credentials`` anything without that Proxy-Authorization answered 407. Records what came through it."""

    credentials: str | None = None
    connect_refused: bytes | None = None
    """An answer to every CONNECT (``HTTP/1.1 403 Forbidden``: a proxy rule), instead of the tunnel."""
    seen: list[tuple[str, str]] = field(default_factory=list)
    """(method, target) of each request, refused ones too."""
    authorizations: list[str | None] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append((method, target))
        self.authorizations.append(headers.get("proxy-authorization"))
        expected = f"Basic {base64.b64encode(self.credentials.encode()).decode()}" if self.credentials else None
        if expected is not None and headers.get("proxy-authorization") != expected:
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nwho are you?"
            )
            await writer.drain()
            return
        if method == "CONNECT" and self.connect_refused is not None:
            writer.write(self.connect_refused + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        url = target.removeprefix("http://")
        authority, _, path = url.partition("/")
        host, port = authority.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        kept = [line for line in lines if line and not line.lower().startswith(("proxy-", "connection:"))]
        forwarded = "".join(f"{line}\r\n" for line in kept)
        up_writer.write(
            f"{method} /{path} HTTP/1.1\r\n{forwarded}Connection: close\r\n\r\n".encode("latin-1") + body
        )
        await up_writer.drain()
        await _pipe(up_reader, writer)
        up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


@dataclass
class SilentProxy:
    """A proxy that takes the connection and reads what comes (the CONNECT) but never answers."""

    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()


@pytest.fixture
async def silent() -> AsyncIterator[SilentProxy]:
    running = SilentProxy()
    await running.start()
    yield running
    await running.close()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    running = ForwardProxy()
    await running.start()
    yield running
    await running.close()


async def _ping_ch(
    be: Any, client: aiohttp.ClientSession, two: Harness, proxy: ProxySettings, timeout: float = 30.0
) -> Any:
    """``profiles ping ch-swissmedic`` from Belgium's running gateway, through ``proxy``."""
    node = be.runner.app[NODE]
    return await ping(
        node.partners.get("ch-swissmedic"),
        identity=node.settings.identity,
        keys=node.keys,
        session=client,
        clock=two.clock,
        timeout=timeout,
        proxy=proxy,
    )


def outbound(proxy: str | None, **keys: object) -> OutboundSettings:
    """The test gateways' [outbound], with the proxy; partners run on loopback, so no_proxy is emptied."""
    return OutboundSettings.model_validate(
        {"sweep_seconds": 5.0, "http_timeout_seconds": 10.0, "proxy": proxy, "no_proxy": []} | keys
    )


def ch_endpoint(gateways: Harness) -> str:
    return f"http://127.0.0.1:{gateways.ports['CH-SWISSMEDIC']}/as4"


async def test_a_permit_to_an_http_partner_goes_through_the_proxy_and_is_acknowledged(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
) -> None:
    be = await harness.start("BE-FAMHP", outbound=outbound(proxy.url))
    ch = await harness.start("CH-SWISSMEDIC")
    done = await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    assert ("POST", ch_endpoint(harness)) in proxy.seen
    assert proxy.authorizations == [None] * len(proxy.seen)
    assert done.message_id


async def test_proxy_credentials_are_sent_from_the_environment_variable(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy.credentials = "gateway:s3cret pass"
    monkeypatch.setenv(PASSWORD_ENV, "s3cret pass")
    settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
    be = await harness.start("BE-FAMHP", outbound=settings)
    ch = await harness.start("CH-SWISSMEDIC")
    await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    assert ("POST", ch_endpoint(harness)) in proxy.seen
    assert set(proxy.authorizations) == {f"Basic {base64.b64encode(b'gateway:s3cret pass').decode()}"}


async def test_a_wrong_proxy_password_is_named_as_the_proxy_and_the_message_waits_for_its_retry(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy.credentials = "gateway:right"
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
    be = await harness.start("BE-FAMHP", outbound=settings)
    ch = await harness.start("CH-SWISSMEDIC")
    with capture_logs() as logs:
        _, body = await submit(session, be, example(IA, today=harness.clock.now()))
        waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    error = waiting["last_error"]
    assert f"the outbound proxy 127.0.0.1:{proxy.port} answered HTTP 407" in error, error
    assert "proxy_user" in error and "proxy_password_env" in error
    assert "wrong-password" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["proxy_problem"] == f"127.0.0.1:{proxy.port}"
    assert "407" in failed["detail"]["reason"]
    [logged] = [e for e in logs if e["event"] == "outbound proxy problem"]
    assert logged["proxy"] == f"127.0.0.1:{proxy.port}" and "407" in logged["reason"]
    assert not any("wrong-password" in str(e) for e in logs)
    assert not ch.inbox.exists() or list(ch.inbox.iterdir()) == []


async def test_a_proxy_that_is_down_is_named_not_the_partner(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    port = free_port()  # nothing listens there
    be = await harness.start("BE-FAMHP", outbound=outbound(f"http://127.0.0.1:{port}"))
    await harness.start("CH-SWISSMEDIC")
    _, body = await submit(session, be, example(IA, today=harness.clock.now()))
    waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    error = waiting["last_error"]
    assert f"cannot connect to the outbound proxy 127.0.0.1:{port}" in error, error
    assert "[outbound] proxy" in error
    assert "check that the endpoint is up" not in error  # not the partner's wording
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["proxy_problem"] == f"127.0.0.1:{port}"


async def test_a_host_in_no_proxy_is_reached_directly(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
) -> None:
    be = await harness.start("BE-FAMHP", outbound=outbound(proxy.url, no_proxy=["127.0.0.1"]))
    ch = await harness.start("CH-SWISSMEDIC")
    await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    assert proxy.seen == []


async def test_pulling_from_a_partner_goes_through_the_proxy(
    pull_harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
) -> None:
    """Switzerland pulls Belgium's permit (PullRequest, then the receipt) through its proxy."""
    be = await pull_harness.start(BE)
    ch = await pull_harness.start(CH, outbound=outbound(proxy.url))
    submitted = await submit(session, be, example(IA, today=pull_harness.clock.now()))
    await wait_for(session, ch, submitted[1]["message_id"], "DELIVERED")
    await wait_for(session, be, submitted[1]["message_id"], "ACKNOWLEDGED")
    be_endpoint = f"http://127.0.0.1:{pull_harness.ports[BE]}/as4"
    assert proxy.seen.count(("POST", be_endpoint)) >= 2  # the PullRequest, and the receipt for what came


def test_no_proxy_matches_names_domains_and_addresses_and_nothing_else() -> None:
    settings = OutboundSettings(
        proxy="http://proxy.example:3128",
        no_proxy=(".Internal.example.", "as4.partner.example", "::1", "10.0.0.5"),
    )
    proxy = proxy_settings(settings)
    through = "http://proxy.example:3128"
    assert proxy.route("https://as4.internal.example/as4").proxy is None
    assert proxy.route("https://internal.example/as4").proxy is None
    assert proxy.route("https://notinternal.example/as4").proxy == through
    assert proxy.route("https://AS4.partner.example:8443/as4").proxy is None
    assert proxy.route("https://x.as4.partner.example/as4").proxy == through
    assert proxy.route("http://[0:0::1]:8480/as4").proxy is None
    assert proxy.route("http://10.0.0.5/as4").proxy is None
    assert proxy.route("http://127.0.0.1:8480/as4").proxy == through, "loopback bypasses only when listed"
    assert proxy_settings(OutboundSettings()).route("http://as4.partner.example/as4").proxy is None
    assert OutboundSettings().no_proxy == ("localhost", "127.0.0.1", "::1")


async def test_an_https_partner_is_tunnelled_with_connect_keeping_the_profile_tls(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    pki: DevPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The credentials go on the CONNECT, to the proxy; TLS to the partner is end to end, with the profile's
    tls.ca_bundle (the proxy sees only ciphertext after the CONNECT)."""
    proxy.credentials = "gateway:right"
    monkeypatch.setenv(PASSWORD_ENV, "right")
    settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
    front, runner, endpoint = await _tls_front(harness, pki, tmp_path)
    try:
        be = await harness.start("BE-FAMHP", outbound=settings)
        ch = await harness.start("CH-SWISSMEDIC")
        await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    finally:
        await runner.cleanup()
    assert {method for method, _ in proxy.seen} == {"CONNECT"}
    assert ("CONNECT", endpoint.removeprefix("https://").removesuffix("/as4")) in proxy.seen
    assert set(proxy.authorizations) == {aiohttp.encode_basic_auth("gateway", "right")}
    assert front.clients, "the partner's TLS front answered through the tunnel"


async def test_ping_through_a_proxy_that_refuses_connect_names_the_proxy_and_407(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    pki: DevPki,
    tmp_path: Path,
) -> None:
    proxy.credentials = "gateway:right"
    front, runner, _ = await _tls_front(harness, pki, tmp_path)
    try:
        be = await harness.start("BE-FAMHP")
        credentials = aiohttp.encode_basic_auth("gateway", "pw-not-shown")
        result = await _ping_ch(be, session, harness, ProxySettings(url=proxy.url, authorization=credentials))
    finally:
        await runner.cleanup()
    assert result.stage is Stage.PROXY, result.detail
    assert f"the outbound proxy 127.0.0.1:{proxy.port} answered HTTP 407" in result.detail
    assert "to CONNECT" in result.detail and "proxy_password_env" in result.detail
    assert "pw-not-shown" not in result.detail
    assert [method for method, _ in proxy.seen] == ["CONNECT"]
    assert proxy.authorizations == [aiohttp.encode_basic_auth("gateway", "pw-not-shown")]
    assert front.clients == []


async def test_profiles_ping_uses_the_configured_proxy(
    harness: Harness,  # noqa: F811
    proxy: ForwardProxy,
) -> None:
    await harness.start("CH-SWISSMEDIC")
    settings = harness.settings("BE-FAMHP", outbound=outbound(proxy.url))
    result = await _ping(settings, "ch-swissmedic", 10.0)
    assert result.stage is Stage.RECEIPT_OK, result.detail
    assert proxy.seen == [("POST", ch_endpoint(harness))]


async def test_the_started_log_names_the_proxy_without_its_password(
    harness: Harness,  # noqa: F811
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2-secret")
    settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
    with capture_logs() as logs:
        await harness.start("BE-FAMHP", outbound=settings)
    [started] = [e for e in logs if e["event"] == "gateway started"]
    assert started["outbound_proxy"].startswith(f"{proxy.url} as gateway")
    assert "hunter2-secret" not in str(started)


def test_a_missing_proxy_password_variable_stops_the_start_naming_it(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    settings = harness.settings(
        "BE-FAMHP",
        outbound=outbound("http://proxy.example:3128", proxy_user="gateway", proxy_password_env=PASSWORD_ENV),
    )
    with pytest.raises(ConfigError) as raised:
        create_app(settings, watch_outbox=False)
    assert f"[outbound].proxy_password_env names the environment variable {PASSWORD_ENV!r}" in str(raised.value)
    assert "not set" in str(raised.value)


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ({"proxy": "https://proxy.example:3128"}, "expected http://HOST:PORT: the gateway speaks plain HTTP"),
        ({"proxy": "socks5://proxy.example:1080"}, "an https:// or other proxy scheme is not supported"),
        ({"proxy": "http://proxy.example:3128/path"}, "with the port written and nothing after it"),
        ({"proxy": "http://proxy.example"}, "with the port written and nothing after it"),
        ({"proxy": "http://alice:topsecret@proxy.example:3128"}, "proxy_user, and the password in an environment"),
        ({"proxy": "http://proxy.example:3128", "proxy_user": "alice"}, "set proxy_user and proxy_password_env"),
        ({"proxy_user": "alice", "proxy_password_env": "X"}, "proxy_user is set but proxy is not"),
        ({"proxy": "http://proxy.example:3128", "no_proxy": ["http://a.example"]}, "no_proxy entry"),
    ],
)
def test_proxy_configuration_mistakes_name_the_key_and_the_fix(
    tmp_path: Path, keys: dict[str, object], said: str
) -> None:
    data = {
        "identity": {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"},
        "outbound": keys,
    }
    with pytest.raises(ConfigError) as raised:
        settings_from_dict(data, base=tmp_path)
    message = str(raised.value)
    assert "[outbound]" in message and said in message, message
    assert "topsecret" not in message


async def _tls_front(gateways: Harness, pki: DevPki, tmp_path: Path) -> tuple[TlsFront, web.AppRunner, str]:
    """An HTTPS front (the dev CA's certificate for 127.0.0.1) for Switzerland's gateway, which Belgium's
    profile of it names with the dev CA as its tls.ca_bundle."""
    port = free_port()
    front = TlsFront(pki, tmp_path, f"http://127.0.0.1:{gateways.ports['CH-SWISSMEDIC']}")
    front.context.verify_mode = ssl.CERT_NONE  # server TLS is what is tested here, not a client certificate
    app = web.Application()
    app.router.add_post("/as4", front.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=front.context).start()
    endpoint = f"https://127.0.0.1:{port}/as4"
    profile = gateways.tmp / "profiles" / "ch-swissmedic.yaml"
    text = profile.read_text().replace(ch_endpoint(gateways), endpoint)
    profile.write_text(f"{text}tls:\n  ca_bundle: {pki.ca_certificate}\n")
    return front, runner, endpoint


FAST = 0.5
"""[outbound] http_timeout_seconds of the tests where a proxy never answers: the time-out is waited for."""


async def test_a_proxy_that_takes_the_connection_and_never_answers_the_connect_is_named_not_the_partner(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    silent: SilentProxy,
    pki: DevPki,
    tmp_path: Path,
) -> None:
    """Before, the request's whole time-out ran out inside the CONNECT and the attempt read as a partner that is
    down or slow, the proxy a mere maybe."""
    front, runner, _ = await _tls_front(harness, pki, tmp_path)
    try:
        be = await harness.start(
            "BE-FAMHP", outbound=outbound(f"http://127.0.0.1:{silent.port}", http_timeout_seconds=FAST)
        )
        with capture_logs() as logs:
            _, body = await submit(session, be, example(IA, today=harness.clock.now()))
            waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    finally:
        await runner.cleanup()
    error = waiting["last_error"]
    assert (
        f"the outbound proxy 127.0.0.1:{silent.port} did not open the connection within the time-out ([outbound] "
        f"http_timeout_seconds = {FAST:g} s); is it up and reachable?" in error
    ), error
    assert "the partner may be down or slow" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["proxy_problem"] == f"127.0.0.1:{silent.port}"
    [logged] = [e for e in logs if e["event"] == "outbound proxy problem"]
    assert logged["proxy"] == f"127.0.0.1:{silent.port}"
    assert silent.connections == 1 and front.clients == []


async def test_a_ping_through_a_proxy_that_never_answers_the_connect_names_the_proxy(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    silent: SilentProxy,
    pki: DevPki,
    tmp_path: Path,
) -> None:
    """Before, the ping's whole time-out ran out inside the CONNECT: 'the proxy or the partner is down or slow'."""
    front, runner, _ = await _tls_front(harness, pki, tmp_path)
    try:
        be = await harness.start("BE-FAMHP")
        silent_proxy = ProxySettings(url=f"http://127.0.0.1:{silent.port}")
        result = await _ping_ch(be, session, harness, silent_proxy, timeout=FAST)
    finally:
        await runner.cleanup()
    assert result.stage is Stage.PROXY, result.detail
    assert f"the outbound proxy 127.0.0.1:{silent.port} did not open the connection" in result.detail
    assert silent.connections == 1 and front.clients == []


async def test_a_pull_through_a_proxy_that_never_answers_the_connect_fails_naming_the_proxy_and_pulls_again(
    pull_harness: Harness,  # noqa: F811
    silent: SilentProxy,
) -> None:
    """Before, a PullRequest (time-outs per read, none in all) waited for the CONNECT's answer for ever, and the
    partner was never pulled from again."""
    endpoint = f"https://127.0.0.1:{free_port()}/as4"
    write_ch_view(pull_harness, endpoint)
    with capture_logs() as logs:
        await pull_harness.start(
            CH, outbound=outbound(f"http://127.0.0.1:{silent.port}", http_timeout_seconds=FAST)
        )
        failed = await _logged(logs, "pull failed", count=2)
    assert {e["partner"] for e in failed} == {"be-famhp"}
    reason = failed[0]["reason"]
    assert reason.startswith(f"POST to {endpoint} not sent: the outbound proxy 127.0.0.1:{silent.port} did not ")
    assert f"http_timeout_seconds = {FAST:g} s" in reason, reason
    assert silent.connections >= 2


async def test_a_connect_refused_by_a_proxy_rule_is_named_as_the_proxy_refusing_the_tunnel_and_retried(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    pki: DevPki,
    tmp_path: Path,
) -> None:
    proxy.connect_refused = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain"
    front, runner, endpoint = await _tls_front(harness, pki, tmp_path)
    try:
        be = await harness.start("BE-FAMHP", outbound=outbound(proxy.url))
        _, body = await submit(session, be, example(IA, today=harness.clock.now()))
        waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    finally:
        await runner.cleanup()
    error = waiting["last_error"]
    assert (
        f"{endpoint} not reached: the outbound proxy 127.0.0.1:{proxy.port} answered HTTP 403 Forbidden to CONNECT: "
        "it would not open a tunnel to the partner (a proxy rule may not allow its host or port); check [outbound] "
        "proxy" in error
    ), error
    assert "407" not in error and "proxy_user" in error  # the fix names the settings, not missing credentials
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert (failed["detail"]["proxy_problem"], failed["detail"]["http_status"]) == (f"127.0.0.1:{proxy.port}", 403)
    assert [method for method, _ in proxy.seen] == ["CONNECT"] and front.clients == []


async def test_a_407_while_pulling_names_the_proxy_and_the_next_pull_works_once_the_credentials_are_right(
    pull_harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is lost meanwhile: the partner keeps the message, and the gateway keeps pulling."""
    proxy.credentials = "gateway:the-new-one"
    monkeypatch.setenv(PASSWORD_ENV, "pull-pw-6120")
    be = await pull_harness.start(BE)
    submitted = await submit(session, be, example(IA, today=pull_harness.clock.now()))
    message_id = submitted[1]["message_id"]
    settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
    with capture_logs() as logs:
        ch = await pull_harness.start(CH, outbound=settings)
        [failed] = await _logged(logs, "pull failed")
    be_endpoint = f"http://127.0.0.1:{pull_harness.ports[BE]}/as4"
    assert failed["partner"] == "be-famhp"
    assert failed["reason"].startswith(
        f"the outbound proxy 127.0.0.1:{proxy.port} answered HTTP 407 to our POST to {be_endpoint}: it needs "
        "credentials, or refused ours"
    ), failed
    assert "proxy_password_env" in failed["reason"] and "pull-pw-6120" not in str(logs)
    assert ("POST", be_endpoint) in proxy.seen
    assert not ch.inbox.exists() or list(ch.inbox.iterdir()) == []

    proxy.credentials = "gateway:pull-pw-6120"  # the proxy's administrator gives the gateway's account this one
    await wait_for(session, ch, message_id, "DELIVERED")
    await wait_for(session, be, message_id, "ACKNOWLEDGED")


async def test_the_proxy_password_shows_nowhere_a_failed_attempt_is_told(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    pki: DevPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not in the timeline, the last error, the log, the REST message JSON, 'messages show' or a configuration
    error; neither as written nor as its Proxy-Authorization (base64). The partner is https://, so the proxy's
    407 comes on the CONNECT, whose aiohttp error holds the request's headers."""
    secret = "Canary-Proxy-Pw-93817"
    encoded = aiohttp.encode_basic_auth("gateway", secret).split()[1]
    proxy.credentials = "gateway:another"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    _, runner, _ = await _tls_front(harness, pki, tmp_path)
    try:
        with capture_logs() as logs:
            be = await harness.start(
                "BE-FAMHP", outbound=outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
            )
            _, body = await submit(session, be, example(IA, today=harness.clock.now()))
            waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    finally:
        await runner.cleanup()
    error = waiting["last_error"]
    assert "answered HTTP 407 Proxy Authentication Required to CONNECT" in error, error
    assert set(proxy.authorizations) == {f"Basic {encoded}"}, "the password was sent, to the proxy only"
    async with session.get(f"{be.url}/api/v1/messages/{body['message_id']}") as answer:
        rest = await answer.text()
    async with session.get(f"{be.url}/api/v1/messages?direction=outbound") as answer:
        listed = await answer.text()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'data_dir = "{be.settings.data_dir}"\n[identity]\nparty_id = "BE-FAMHP"\ncountry = "BE"\n'
        f'authority_name = "FAMHP"\n[store]\nurl = "{be.settings.store.url}"\n[profiles]\n'
        f'folder = "{be.settings.profiles.folder}"\ncertificates = "{pki.folder}"\n[outbound]\n'
        f'proxy = "{proxy.url}"\nproxy_user = "gateway"\nproxy_password_env = "{PASSWORD_ENV}"\n'
    )
    shown = await asyncio.to_thread(
        CliRunner().invoke, cli, ["messages", "show", body["message_id"], "--config", str(config)]
    )
    assert shown.exit_code == 0 and "Proxy Authentication Required to CONNECT" in shown.output, shown.output
    with pytest.raises(ConfigError) as mistaken:  # the password written into the proxy's URL by mistake
        settings_from_dict(
            {
                "identity": {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"},
                "outbound": {"proxy": f"http://gateway:{secret}@proxy.example:3128"},
            },
            base=tmp_path,
        )
    told = {
        "timeline and last error (REST)": rest,
        "message list (REST)": listed,
        "log": repr(logs),
        "messages show": shown.output,
        "configuration error": str(mistaken.value),
    }
    for where, text in told.items():
        assert secret not in text and encoded not in text, where


async def _logged(logs: list[dict[str, Any]], event: str, count: int = 1, seconds: float = 15.0) -> list[Any]:
    """The first ``count`` log entries of ``event``, waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in logs if e["event"] == event]
        if len(found) >= count:
            return found[:count]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} {event!r} logged in {seconds:g} s: {logs}")


async def _partner_at(gateways: Harness, endpoint: str, pki: DevPki) -> None:
    """Belgium's profile of Switzerland names ``endpoint``, trusting the dev CA for its TLS."""
    profile = gateways.tmp / "profiles" / "ch-swissmedic.yaml"
    text = profile.read_text().replace(ch_endpoint(gateways), endpoint)
    profile.write_text(f"{text}tls:\n  ca_bundle: {pki.ca_certificate}\n")


async def test_a_partner_whose_tls_handshake_hangs_behind_a_working_proxy_is_told_as_the_partner(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    silent: SilentProxy,
    pki: DevPki,
) -> None:
    """The proxy answers the CONNECT and tunnels; the partner takes the TCP connection and never does TLS. Before,
    the connection's own limit ran out in the handshake and read as 'the outbound proxy did not open the
    connection'."""
    endpoint = f"https://127.0.0.1:{silent.port}/as4"  # the silent server as the partner
    await _partner_at(harness, endpoint, pki)
    be = await harness.start("BE-FAMHP", outbound=outbound(proxy.url, http_timeout_seconds=FAST))
    result = await _ping_ch(be, session, harness, ProxySettings(url=proxy.url), timeout=FAST)
    assert result.stage is Stage.TIMEOUT, result.detail
    assert f"through the outbound proxy 127.0.0.1:{proxy.port} which opened the tunnel" in result.detail
    assert "the partner is down or slow, not the proxy" in result.detail and "did not open" not in result.detail
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{silent.port}")] and silent.connections == 1

    _, body = await submit(session, be, example(IA, today=harness.clock.now()))
    waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    error = waiting["last_error"]
    assert f"{endpoint}: no answer within the time-out" in error, error
    assert "which opened the tunnel" in error and "not reached" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert "proxy_problem" not in failed["detail"]


async def test_waiting_for_a_pooled_connection_is_not_told_as_the_proxy(proxy: ForwardProxy) -> None:
    """aiohttp's connection limit counts the wait for a free connection of the pool: a request that waited
    there past it never reached the proxy (here the pool holds one, taken by a partner that is slow)."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(FAST * 3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/as4", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = ProxySettings(url=proxy.url)
    url = f"http://127.0.0.1:{port}/as4"

    async def post(pool: aiohttp.ClientSession) -> BaseException | int:
        try:
            timeout = settings.timeout(url, aiohttp.ClientTimeout(total=FAST * 10), FAST)
            async with pool.post(url, data=b"x", proxy=settings.route(url).proxy, timeout=timeout) as answer:
                return answer.status
        except aiohttp.ClientError as exc:
            return exc

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as pool:
            first, second = await asyncio.gather(post(pool), post(pool))
    finally:
        await runner.cleanup()
    assert first == 200
    assert isinstance(second, aiohttp.ConnectionTimeoutError), second
    assert settings.problem(second, FAST, url) is None, settings.problem(second, FAST, url)
    told = settings.through(second)
    assert "no connection of this gateway's pool came free in time" in told, told
    assert f"neither the outbound proxy 127.0.0.1:{proxy.port} nor the partner was asked" in told
    assert len(proxy.seen) == 1


async def test_a_proxy_host_name_that_does_not_resolve_is_named_as_the_proxy(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    pki: DevPki,
) -> None:
    """Before, the proxy's name not resolving read as the partner's: 'cannot connect ... check that the endpoint
    is up ... (DNS)' when sending, stage 'dns' of the partner's host when pinging."""
    unknown = "http://no-such-proxy.invalid:3128"
    front, runner, endpoint = await _tls_front(harness, pki, harness.tmp)
    try:
        be = await harness.start("BE-FAMHP", outbound=outbound(unknown))
        _, body = await submit(session, be, example(IA, today=harness.clock.now()))
        waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
        result = await _ping_ch(be, session, harness, ProxySettings(url=unknown), timeout=5.0)
    finally:
        await runner.cleanup()
    error = waiting["last_error"]
    said = "the outbound proxy's host no-such-proxy.invalid cannot be resolved"
    assert f"{endpoint} not reached: {said}" in error, error
    assert "[outbound] proxy (now no-such-proxy.invalid:3128)" in error
    assert "check that the endpoint is up" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["proxy_problem"] == "no-such-proxy.invalid:3128"
    assert result.stage is Stage.PROXY and said in result.detail, result.detail
    assert front.clients == []


async def test_a_connect_answered_503_by_a_proxy_that_cannot_reach_the_partner_names_the_partner_host(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    pki: DevPki,
) -> None:
    """What squid answers when the partner refuses the connection (ERR_CONNECT_FAIL): before, told as a proxy
    rule that may not allow the partner's host or port; then, told right but tagged ``proxy_problem`` (and a ping
    stopped at stage 'proxy'), which sent operators to their proxy settings for a partner that is down."""
    proxy.connect_refused = b"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_CONNECT_FAIL 111"
    down = free_port()
    endpoint = f"https://127.0.0.1:{down}/as4"
    await _partner_at(harness, endpoint, pki)
    be = await harness.start("BE-FAMHP", outbound=outbound(proxy.url))
    _, body = await submit(session, be, example(IA, today=harness.clock.now()))
    waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
    result = await _ping_ch(be, session, harness, ProxySettings(url=proxy.url), timeout=5.0)
    assert result.stage is Stage.CONNECT and f"the partner's 127.0.0.1:{down}" in result.detail, result
    error = waiting["last_error"]
    assert (
        f"{endpoint} not reached: the outbound proxy 127.0.0.1:{proxy.port} answered HTTP 503 Service Unavailable "
        f"to CONNECT: it could not reach the partner's 127.0.0.1:{down} (the partner's endpoint or the route to it "
        "may be down)" in error
    ), error
    assert "proxy rule" not in error and "proxy_password_env" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["http_status"] == 503 and "proxy_problem" not in failed["detail"]


async def _moved(new_endpoint: str) -> tuple[web.AppRunner, str]:
    """An http:// endpoint that answers every POST with a 308 to ``new_endpoint``."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(new_endpoint)

    app = web.Application()
    app.router.add_post("/as4", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/as4"


async def test_a_partner_redirecting_to_https_through_an_authenticating_proxy_is_told_as_a_moved_endpoint(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The partner moved to https and its old http:// endpoint answers 308. Before, the redirect was followed
    with the proxy's credentials left on the first request, and the CONNECT's 407 read as wrong credentials."""
    proxy.credentials = "gateway:right"
    monkeypatch.setenv(PASSWORD_ENV, "right")
    new_endpoint = f"https://127.0.0.1:{free_port()}/as4"
    runner, old_endpoint = await _moved(new_endpoint)
    profile = harness.tmp / "profiles" / "ch-swissmedic.yaml"
    profile.write_text(profile.read_text().replace(ch_endpoint(harness), old_endpoint))
    try:
        settings = outbound(proxy.url, proxy_user="gateway", proxy_password_env=PASSWORD_ENV)
        be = await harness.start("BE-FAMHP", outbound=settings)
        _, body = await submit(session, be, example(IA, today=harness.clock.now()))
        waiting = await wait_for(session, be, body["message_id"], "RETRY_WAIT")
        result = await _ping_ch(be, session, harness, be.runner.app[PROXY], timeout=5.0)
    finally:
        await runner.cleanup()
    said = f"the partner's endpoint {old_endpoint} answered HTTP 308 to {new_endpoint}: redirects are not followed"
    error = waiting["last_error"]
    assert said in error and "update endpoint in our profile of the partner" in error, error
    assert "ch-swissmedic" in error and "needs credentials" not in error
    [failed] = [e for e in waiting["events"] if e["kind"] == "send_failed"]
    assert failed["detail"]["http_status"] == 308 and "proxy_problem" not in failed["detail"]
    assert result.stage is Stage.HTTP and result.http_status == 308, result.detail
    assert said in result.detail and "needs credentials" not in result.detail
    assert {method for method, _ in proxy.seen} == {"POST"}, "the redirect is not followed: no CONNECT"


async def test_a_pull_from_a_partner_whose_endpoint_redirects_names_the_redirect(
    pull_harness: Harness,  # noqa: F811
    proxy: ForwardProxy,
) -> None:
    new_endpoint = f"https://127.0.0.1:{free_port()}/as4"
    runner, old_endpoint = await _moved(new_endpoint)
    write_ch_view(pull_harness, old_endpoint)
    try:
        with capture_logs() as logs:
            await pull_harness.start(CH, outbound=outbound(proxy.url))
            [failed] = await _logged(logs, "pull failed")
    finally:
        await runner.cleanup()
    assert failed["reason"].startswith(
        f"the partner's endpoint {old_endpoint} answered HTTP 308 to {new_endpoint}: redirects are not followed; "
        "update endpoint in our profile of the partner (the file in partner_profiles/ with id: be-famhp)"
    ), failed
    assert {method for method, _ in proxy.seen} == {"POST"}


def test_a_connection_time_out_whose_phase_cannot_be_told_names_both_the_proxy_and_the_partner() -> None:
    """Should aiohttp's connector change so that its frames no longer tell the phases apart, neither the proxy
    nor the partner is blamed alone."""
    settings = ProxySettings(url="http://proxy.example:3128")
    told = settings.problem(aiohttp.ConnectionTimeoutError("Connection timeout"), 2.0, "https://as4.example/as4")
    assert told is not None and told.startswith(
        "the outbound proxy proxy.example:3128 did not open the tunnel, or the partner did not complete its TLS "
        "handshake through it, within the time-out ([outbound] http_timeout_seconds = 2 s)"
    ), told
