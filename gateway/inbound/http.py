"""The AS4 endpoint: read the request, hand the bytes to the receive path, write its answer.

Small requests are read into memory; a large one (over ``IN_MEMORY_BYTES``, or of unknown length) is written
to the data folder as it arrives, hashed on the way, and read back from there in chunks. User messages go to
the ``Receiver``; signals arriving as requests (a PullRequest, or the receipt or error signal for a message a
partner pulled) go to ``SIGNALS``, the One-Way/Pull server. Requests are read before their sender is known, so
at most ``[inbound] max_concurrent_requests`` are handled at once, each body within ``[inbound] body_seconds``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.as4 import MAX_SIGNAL_BYTES, EbmsError, Outgoing, SignalPeek, peek_signal
from gateway.inbound.receive import Receiver, check_content_type
from gateway.interfaces.keys import SETTINGS
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
BUSY_RETRY_AFTER_SECONDS = 10
_HANDLING: weakref.WeakKeyDictionary[web.Application, int] = weakref.WeakKeyDictionary()
"""Requests each application is handling on /as4: a count per gateway, not per process (tests run two)."""


async def as4_endpoint(request: web.Request) -> web.StreamResponse:
    app = request.app
    most = app[SETTINGS].inbound.max_concurrent_requests
    if _HANDLING.get(app, 0) >= most:
        return _busy(most)
    _HANDLING[app] = _HANDLING.get(app, 0) + 1
    try:
        return await _handle(request)
    finally:
        _HANDLING[app] -= 1


def _busy(most: int) -> web.Response:
    """503 before the body is read: the sender's retry comes when a place is free, nothing is spooled meanwhile."""
    text = (
        f"this gateway is handling {most} AS4 requests at once, its limit ([inbound].max_concurrent_requests); "
        f"send the message again after {BUSY_RETRY_AFTER_SECONDS} s (Retry-After)"
    )
    response = web.Response(status=503, text=text, headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
    response.force_close()  # the body is not read: the connection cannot carry another request
    return response


async def _handle(request: web.Request) -> web.StreamResponse:
    limit = request.app[MAX_MESSAGE_BYTES]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    content_type = request.headers.get("Content-Type", "")
    try:
        check_content_type(content_type)
    except EbmsError as exc:  # before the body is read: nothing in it can be parsed under this header
        response = _response(request.app[RECEIVER].refuse(exc, content_type))
        response.force_close()
        return response
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
    """A large body, or one of unknown length, written to the data folder as it comes; it must not stall (no byte
    for the read time-out) nor take longer than ``[inbound] body_seconds`` in all, or it is dropped."""
    incoming = request.app[PAYLOADS].incoming()
    whole = request.app[SETTINGS].inbound.body_seconds
    try:
        async with asyncio.timeout(whole):
            return await _spool(request, incoming, limit)
    except TimeoutError:
        incoming.close()
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive whole within {whole:g} s ({incoming.size} bytes came; "
            "[inbound].body_seconds); send the message again, on a faster connection or as a smaller message"
        ) from None
    except BaseException:
        incoming.close()
        raise


async def _spool(request: web.Request, incoming: IncomingFile, limit: int) -> IncomingFile:
    seconds = request.app[READ_TIMEOUT]
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


def _stalled(what: str) -> web.HTTPRequestTimeout:
    """408: a sender that stalls must not hold a connection (and a spool file) for ever. What arrived is dropped;
    the sender's retry sends the whole message again."""
    return web.HTTPRequestTimeout(text=f"{what} ([inbound].read_timeout_seconds); send the message again")


routes: list[web.RouteDef] = [web.post("/as4", as4_endpoint)]
