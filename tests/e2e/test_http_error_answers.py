"""A partner endpoint that answers an HTTP error without an ebMS signal (a proxy's 404 page, a load balancer's
503) is reported as what it is, with the answer's first words and what usually fixes it: before, it read as a
receipt that failed our checks, with advice about the partner's signing certificate."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.interfaces.demo import write_profiles
from gateway.interfaces.keys import NODE
from gateway.store import Direction, State
from tests.e2e.conftest import RETRIES, Harness, example, harness, session, submit  # noqa: F401

IA = "BE-IA-2026-0001.xml"
ANSWERS = {
    404: ("text/html", "<html><body><h1>404 Not Found</h1>\n<p>nginx</p></body></html>", "nothing takes AS4"),
    502: ("text/html", "<html><head><title>502 Bad Gateway</title></head></html>", "cannot take messages now"),
    403: ("text/plain", "client certificate required", "asks for credentials or a client certificate"),
}


@pytest.mark.parametrize("status", list(ANSWERS))
async def test_an_http_error_without_an_ebms_signal_is_named_as_such_and_retried(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    status: int,
) -> None:
    content_type, text, hint = ANSWERS[status]

    async def proxy(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, text=text, content_type=content_type)

    app = web.Application()
    app.router.add_post("/as4", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", harness.ports["CH-SWISSMEDIC"]).start()
    try:
        be = await harness.start("BE-FAMHP")
        status_code, sent = await submit(session, be, example(IA, today=harness.clock.now()))
        assert status_code == 202, sent
        store = be.runner.app[NODE].store
        for _ in range(200):
            record = await store.find(Direction.OUTBOUND, sent["message_id"])
            if record is not None and record.state is State.RETRY_WAIT:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()

    assert record is not None and record.state is State.RETRY_WAIT, record
    reason = record.last_error or ""
    assert reason.startswith(f"HTTP {status} "), reason
    assert "from the endpoint of partner 'ch-swissmedic' (http://127.0.0.1:" in reason, reason
    assert f"not an ebMS answer ({content_type}; charset=utf-8: " in reason, reason
    assert " ".join(text.split())[:40] in reason, reason
    assert hint in reason, reason
    assert "our check" not in reason and "signing certificate" not in reason, reason


async def test_a_partner_endpoint_that_is_this_gateway_is_named_at_start(harness: Harness) -> None:  # noqa: F811
    """A port typed wrong: our messages to the partner came back to us, refused as from an unknown partner, and
    the send log advised pinning the partner's current certificate (which would have been ours)."""
    own = f"http://127.0.0.1:{harness.ports['BE-FAMHP']}/as4"
    write_profiles(harness.tmp / "profiles", {"BE-FAMHP": own, "CH-SWISSMEDIC": own}, extra=RETRIES)

    with capture_logs() as logs:
        await harness.start("BE-FAMHP")

    said = [e for e in logs if e["event"].startswith("a partner's endpoint is this gateway's own AS4 endpoint")]
    assert [(e["partner"], e["endpoint"]) for e in said] == [("ch-swissmedic", own)], logs
