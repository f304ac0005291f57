"""A webhook that answers with a redirect has not taken the permit: a POST redirected becomes a GET without it.
The delivery fails, saying where it was sent and which URL to configure, and is tried again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.inbound.conftest import PERMIT, Inbound, partner


@dataclass
class RedirectingWebhook:
    """POST /permits answers ``status`` to /login; /login answers 200 to anything (a sign-in page)."""

    url: str = ""
    status: int = 302
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    async def permits(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, len(await request.read())))
        return web.Response(status=self.status, headers={"Location": "/login"})

    async def login(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path, len(await request.read())))
        return web.Response(text="<html>please sign in</html>", content_type="text/html")


@pytest.fixture(params=[302, 307])
async def redirecting(request: pytest.FixtureRequest) -> AsyncIterator[RedirectingWebhook]:
    hook = RedirectingWebhook(status=request.param)
    app = web.Application()
    app.router.add_post("/permits", hook.permits)
    app.router.add_route("*", "/login", hook.login)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook.url = f"http://127.0.0.1:{server.port}/permits"
    yield hook
    await server.close()


async def test_a_redirecting_webhook_is_a_failed_delivery_that_names_the_url_to_configure(
    inbound: Inbound, redirecting: RedirectingWebhook
) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner(delivery={"method": "webhook", "url": redirecting.url})])
    async with aiohttp.ClientSession() as session:
        worker = inbound.worker(registry, session=session)
        assert await worker.drain() == 0

    assert redirecting.seen == [("POST", "/permits", len(PERMIT))]  # /login was never asked
    after = await inbound.store.get(record.id)
    assert after.state is State.ACCEPTED and after.next_attempt_at is not None
    assert after.next_attempt_at > inbound.clock.now()
    [failed] = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert failed.detail["reason"] == (
        f"webhook {redirecting.url} answered HTTP {redirecting.status} redirecting to /login: redirects are not "
        "followed, since a redirected POST loses the permit; set delivery.url in partner profile "
        "'ch-swissmedic' to the final URL"
    )
    assert after.last_error == failed.detail["reason"]
