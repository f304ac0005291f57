"""Who the national REST API and /metrics answer: clients on this host by default, a bearer token once
``[api].token_env`` is set. The AS4 endpoint and /health stay open; the admin API keeps its own token."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.interfaces.access import is_loopback
from gateway.interfaces.demo import exchange, message
from gateway.settings import ApiSettings
from tests.e2e.conftest import Harness, example

TOKEN = "national-system-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IA = "BE-IA-2026-0001.xml"


@pytest.mark.parametrize(
    ("remote", "local"),
    [
        ("127.0.0.1", True),
        ("127.10.0.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("2001:db8::1", False),
        ("", False),
        (None, False),
        ("localhost", False),
    ],
)
def test_only_loopback_addresses_count_as_this_host(remote: str | None, local: bool) -> None:
    assert is_loopback(remote) is local


async def test_without_a_token_a_request_through_a_proxy_is_refused_naming_the_fix(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    async with session.get(f"{be.url}/api/v1/messages") as response:
        assert response.status == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        for path in ("/api/v1/messages", "/api/v1/documents", "/metrics"):
            async with session.get(f"{be.url}{path}", headers={header: "192.0.2.7"}) as response:
                assert response.status == 403, (header, path)
                body = await response.json()
                assert "through a proxy" in body["error"] and "[api].token_env" in body["fix"]
    async with session.get(f"{be.url}/health", headers={"X-Forwarded-For": "192.0.2.7"}) as response:
        assert response.status == 200
    async with session.post(
        f"{be.url}/as4", data=b"not AS4", headers={"X-Forwarded-For": "192.0.2.7"}
    ) as response:
        assert response.status != 403  # partners reach /as4 through the TLS terminator


async def test_with_a_token_every_request_needs_it_and_the_exchange_goes_on(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_API_TOKEN", TOKEN)
    be = await harness.start("BE-FAMHP", api=ApiSettings(token_env="TEST_API_TOKEN"))
    ch = await harness.start("CH-SWISSMEDIC")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for path in ("/api/v1/messages", "/metrics", "/api/v1/permits"):
            async with session.get(f"{be.url}{path}", headers=headers) as response:
                assert response.status == 401, (headers, path)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "Authorization: Bearer" in (await response.json())["fix"]
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        assert response.status == 401
    async with session.get(f"{be.url}/api/v1/admin/profiles", headers=AUTH) as response:
        assert response.status == 403  # the admin API has its own token, and it is off here
        assert "[admin].token_env" in (await response.json())["error"]

    async with aiohttp.ClientSession(headers=AUTH) as national:
        done = await exchange(national, be, ch, example(IA, today=harness.clock.now()), IA)
        sent = await message(national, be, done.message_id)
        async with national.get(f"{be.url}/metrics") as response:
            assert response.status == 200
    assert sent is not None and sent["state"] == "ACKNOWLEDGED"


def test_a_token_variable_that_is_not_set_stops_the_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"\[api\]\.token_env names the environment variable 'TEST_API_TOKEN'"):
        ApiSettings(token_env="TEST_API_TOKEN").token()
