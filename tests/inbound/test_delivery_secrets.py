"""A national system's credentials may only be written into delivery.url (user, password, a token in the query):
they never reach the log or the message timeline, whether the delivery succeeds or fails."""

from __future__ import annotations

import aiohttp
import pytest
import structlog
from aiohttp import web

from gateway.inbound.deliver import shown_url
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.conftest import serving
from tests.inbound.conftest import Inbound, partner

SECRETS = ("S3cretPass", "t0ken")


@pytest.mark.parametrize("status", [200, 503])
async def test_webhook_credentials_stay_out_of_the_log_and_the_timeline(inbound: Inbound, status: int) -> None:
    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status)

    record = await inbound.accepted(1)
    async with serving("/inbox", webhook) as url:
        secret_url = url.replace("http://", "http://ops:S3cretPass@") + "?token=t0ken"
        registry = ProfileRegistry([partner(delivery={"method": "webhook", "url": secret_url})])
        with structlog.testing.capture_logs() as logged:
            async with aiohttp.ClientSession() as session:
                await inbound.worker(registry, session=session).drain()

    after = await inbound.store.get(record.id)
    assert after.state is (State.DELIVERED if status == 200 else State.ACCEPTED)
    shown = [repr(event.detail) for event in await inbound.store.events(record.id)]
    shown += [repr(entry) for entry in logged] + [after.last_error or ""]
    assert url in "".join(shown)  # the URL is named, without its credentials
    assert not [text for text in shown if any(secret in text for secret in SECRETS)], shown


def test_a_url_is_shown_without_user_password_query_or_fragment() -> None:
    assert shown_url("https://ops:pw@nat.example:8443/in?token=x#f") == "https://nat.example:8443/in"
    assert shown_url("/login?next=/secret") == "/login"
