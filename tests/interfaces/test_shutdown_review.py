"""Stopping a real ``permit-gateway serve`` process (review fix): with an AS4 upload half-way and a send to a
partner that does not answer, SIGTERM ends it within a supervisor's grace period (Kubernetes: 30 s), and the
message it was sending is given back, due at once, instead of held until its lease runs out."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.interfaces.cli import SHUTDOWN_SECONDS
from gateway.profiles.devpki import DevPki
from tests.conftest import free_port
from tests.reliability.harness import World, import_authorization, submit, write_profiles

GRACE_SECONDS = 30.0
"""Kubernetes' default terminationGracePeriodSeconds: the SIGKILL comes after it."""


@asynccontextmanager
async def silent_partner(port: int) -> AsyncIterator[asyncio.Event]:
    """An AS4 endpoint that takes each message and never answers; the event is set when one came."""
    came, released = asyncio.Event(), asyncio.Event()

    async def take(request: web.Request) -> web.Response:
        await request.read()
        came.set()
        await released.wait()
        return web.Response(status=503)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/as4", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield came
    finally:
        released.set()
        await runner.cleanup()


async def _half_an_upload(port: int) -> asyncio.StreamWriter:
    """An AS4 request whose body (4 MiB, so it is spooled to the data folder) stops coming after 1 MiB."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /as4 HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/soap+xml\r\n"
        + f"Content-Length: {4 * 1024 * 1024}\r\n\r\n".encode()
        + b"x" * (1024 * 1024)
    )
    await writer.drain()
    return writer


def _message(db: Path, message_id: str) -> tuple[str, str | None, list[str]]:
    with sqlite3.connect(db) as conn:
        pk, state, owner = conn.execute(
            "SELECT id, state, lease_owner FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        kinds = [kind for (kind,) in conn.execute("SELECT kind FROM message_events WHERE message_pk = ?", (pk,))]
    return state, owner, kinds


async def test_sigterm_mid_upload_and_mid_send_stops_within_the_grace_and_gives_the_send_back(
    tmp_path: Path, pki: DevPki
) -> None:
    be_port, ch_port = free_port(), free_port()
    write_profiles(tmp_path / "profiles", {"BE-FAMHP": be_port, "CH-SWISSMEDIC": ch_port})
    world = World(root=tmp_path, pki=pki)
    node = world.add("BE", "BE-FAMHP", port=be_port, http_timeout=120.0, lease_seconds=120.0)
    async with silent_partner(ch_port) as sent, aiohttp.ClientSession() as session:
        node.start()
        try:
            await node.ready(session)
            message_id = await submit(session, node, import_authorization(1))
            assert message_id is not None
            await asyncio.wait_for(sent.wait(), 30)  # the send is in flight, its message leased to the node
            upload = await _half_an_upload(be_port)
            await asyncio.sleep(0.5)
            assert node.process is not None
            started = time.monotonic()
            node.process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(node.process.wait, GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"still running {GRACE_SECONDS:g} s after SIGTERM: a supervisor would SIGKILL it here"
                ) from None
            took = time.monotonic() - started
            upload.close()
        finally:
            node.kill()

    log = node.log.read_text()
    assert code == 0, log[-3000:]
    assert took < SHUTDOWN_SECONDS + 8, f"stopped {took:.1f} s after SIGTERM"
    state, owner, kinds = _message(tmp_path / "be-famhp" / "gateway.db", message_id)
    assert (state, owner) == ("RETRY_WAIT", None), log[-3000:]
    assert kinds[-1] == "lease_expired"  # given back: due at once for another node or the restart
    assert list((tmp_path / "be-famhp").rglob(".incoming-*")) == []  # the half upload's spool file is gone
