"""The AS4 endpoint: read the request, hand the bytes to the receive path, write its answer.

Small requests are read into memory; a large one (over ``IN_MEMORY_BYTES``, or of unknown length) is written
to the data folder as it arrives, hashed on the way, and read back from there in chunks. User messages go to
the ``Receiver``; signals arriving as requests (a PullRequest, or the receipt or error signal for a message a
partner pulled) go to ``SIGNALS``, the One-Way/Pull server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.as4 import MAX_SIGNAL_BYTES, EbmsError, Outgoing, SignalPeek, peek_signal
from gateway.inbound.receive import Receiver
from gateway.outbound.pull_serve import StoredAnswer
from gateway.store import PayloadStore
from gateway.store.payloads import IncomingFile

RECEIVER = web.AppKey("receiver", Receiver)
PAYLOADS = web.AppKey("payloads", PayloadStore)
MAX_MESSAGE_BYTES: web.AppKey[int] = web.AppKey("max_message_bytes")
READ_TIMEOUT: web.AppKey[float] = web.AppKey("read_timeout")
ON_ACCEPTED: web.AppKey[Callable[[], None]] = web.AppKey("on_accepted")
SignalHandler = Callable[[str, bytes, SignalPeek], Awaitable[Outgoing | StoredAnswer]]
SIGNALS: web.AppKey[SignalHandler] = web.AppKey("signals")
IN_MEMORY_BYTES = 1024 * 1024
_READ_CHUNK = 256 * 1024


async def as4_endpoint(request: web.Request) -> web.StreamResponse:
    limit = request.app[MAX_MESSAGE_BYTES]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    content_type = request.headers.get("Content-Type", "")
    if request.content_length is not None and request.content_length <= IN_MEMORY_BYTES:
        body = await _small_body(request)
        peeked = _peek(content_type, body)
        if peeked is not None:
            return _response(await request.app[SIGNALS](content_type, body, peeked))
        reception = await request.app[RECEIVER].receive(content_type, body)
    else:
        incoming = await _spooled(request, limit)
        try:
            signal = _spooled_signal(content_type, incoming)
            if signal is not None:  # a signal sent with chunked transfer encoding
                return _response(await request.app[SIGNALS](content_type, *signal))
            reception = await request.app[RECEIVER].receive(content_type, incoming)
        finally:
            incoming.close()
    if reception.record is not None and not reception.duplicate:
        request.app[ON_ACCEPTED]()
    return _response(reception.response)


def _peek(content_type: str, body: bytes) -> SignalPeek | None:
    try:
        return peek_signal(content_type, body)
    except EbmsError:
        return None  # a broken signal: the receive path refuses it with the code that fits


def _spooled_signal(content_type: str, incoming: IncomingFile) -> tuple[bytes, SignalPeek] | None:
    if incoming.size > MAX_SIGNAL_BYTES:
        return None
    body = b"".join(incoming.chunks())
    peeked = _peek(content_type, body)
    return None if peeked is None else (body, peeked)


def _response(answer: Outgoing | StoredAnswer) -> web.StreamResponse:
    if isinstance(answer, StoredAnswer):  # a large pulled message goes out from its file, not from memory
        return web.FileResponse(answer.path, headers={"Content-Type": answer.content_type})
    if not answer.body:
        return web.Response(status=answer.http_status)
    return web.Response(status=answer.http_status, body=answer.body, headers={"Content-Type": answer.content_type})


async def _small_body(request: web.Request) -> bytes:
    """A body of at most ``IN_MEMORY_BYTES``, which must arrive whole within the read time-out."""
    seconds = request.app[READ_TIMEOUT]
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise _stalled(
            f"the {request.content_length}-byte request body did not arrive within {seconds:g} s"
        ) from None


async def _spooled(request: web.Request, limit: int) -> IncomingFile:
    """A large body, or one of unknown length, written to the data folder as it comes; it may take as long as it
    needs, but not stall: no byte for the read time-out and it is dropped."""
    incoming = request.app[PAYLOADS].incoming()
    seconds = request.app[READ_TIMEOUT]
    try:
        while True:
            try:
                async with asyncio.timeout(seconds):
                    chunk = await request.content.read(_READ_CHUNK)
            except TimeoutError:
                raise _stalled(
                    f"the request body stalled after {incoming.size} bytes: none for {seconds:g} s"
                ) from None
            if not chunk:
                return incoming
            if incoming.size + len(chunk) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=incoming.size + len(chunk))
            incoming.write(chunk)
    except BaseException:
        incoming.close()
        raise


def _stalled(what: str) -> web.HTTPRequestTimeout:
    """408: a sender that stalls must not hold a connection (and a spool file) for ever. What arrived is dropped;
    the sender's retry sends the whole message again."""
    return web.HTTPRequestTimeout(text=f"{what} ([inbound].read_timeout_seconds); send the message again")


routes: list[web.RouteDef] = [web.post("/as4", as4_endpoint)]
