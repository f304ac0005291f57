"""A sender that stalls mid-body gets 408 and loses what it sent; one that is slow but keeps sending is served."""

from __future__ import annotations

import asyncio

from gateway.interfaces.demo import Running
from gateway.settings import InboundSettings
from tests.e2e.conftest import Harness

CONTENT_TYPE = 'multipart/related; type="application/soap+xml"; boundary="b"'


async def exchange(gateway: Running, head: str, pieces: list[bytes], pause: float) -> bytes:
    """Send ``head`` and then ``pieces`` with ``pause`` seconds between them, and stay silent; the status line."""
    port = int(gateway.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


def incoming_files(harness: Harness) -> list[str]:
    return [p.name for p in (harness.tmp / "data").rglob(".incoming-*")]


async def test_a_small_body_that_stops_arriving_is_refused_with_408(harness: Harness) -> None:
    be = await harness.start("BE-FAMHP", inbound=InboundSettings(read_timeout_seconds=1.5))
    head = f"POST /as4 HTTP/1.1\r\nHost: be\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: 5000\r\n\r\n"

    status = await exchange(be, head, [b"--b\r\n" + b"x" * 100], pause=0)

    assert status.startswith(b"HTTP/1.1 408")


async def test_a_streamed_body_that_stalls_is_refused_with_408_and_nothing_of_it_is_kept(harness: Harness) -> None:
    be = await harness.start("BE-FAMHP", inbound=InboundSettings(read_timeout_seconds=1.5))
    head = f"POST /as4 HTTP/1.1\r\nHost: be\r\nContent-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"--b\r\n" + b"x" * 4000

    status = await exchange(be, head, [b"%x\r\n%s\r\n" % (len(chunk), chunk)], pause=0)

    assert status.startswith(b"HTTP/1.1 408")
    assert incoming_files(harness) == []


async def test_a_slow_sender_that_keeps_sending_is_not_cut_off(harness: Harness) -> None:
    be = await harness.start("BE-FAMHP", inbound=InboundSettings(read_timeout_seconds=1.5))
    head = f"POST /as4 HTTP/1.1\r\nHost: be\r\nContent-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 1000
    pieces = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 5 + [b"0\r\n\r\n"]

    status = await exchange(be, head, pieces, pause=0.3)  # 1.8 s in all, never 1.5 s without a byte

    assert status.startswith(b"HTTP/1.1 ") and not status.startswith(b"HTTP/1.1 408")
    assert incoming_files(harness) == []
