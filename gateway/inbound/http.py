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

from aiohttp import hdrs, web
from aiohttp.compression_utils import HAS_BROTLI, HAS_ZSTD
from aiohttp.http_exceptions import ContentEncodingError

from gateway.as4 import MAX_SIGNAL_BYTES, EbmsCode, EbmsError, Outgoing, SignalPeek, peek_signal
from gateway.errors import GatewayError
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


DECODED_ENCODINGS = frozenset(
    {"gzip", "deflate"} | ({"br"} if HAS_BROTLI else set()) | ({"zstd"} if HAS_ZSTD else set())
)
"""The Content-Encodings aiohttp undoes before a handler reads the body (br and zstd only with their libraries)."""
ENCODING_FIX = (
    "send the body uncompressed (no Content-Encoding header) or as valid gzip with Content-Encoding: gzip"
)


class UnreadableBody(GatewayError):
    """A request body that cannot be read as sent: 415 for a Content-Encoding this gateway does not decode, 400 for
    a body that is not what its Content-Encoding says (or whose HTTP framing is broken)."""

    def __init__(self, status: int, detail: str, fix: str) -> None:
        super().__init__(f"{detail}; {fix}")
        self.status, self.detail, self.fix = status, detail, fix

    def json_response(self) -> web.Response:
        """The REST and admin APIs' answer: a JSON problem naming the header and the fix."""
        error = "unsupported content encoding" if self.status == 415 else "request body cannot be decoded"
        response = web.json_response({"error": error, "detail": self.detail, "fix": self.fix}, status=self.status)
        response.force_close()  # the rest of the body is not read: the connection cannot carry another request
        return response


def check_content_encoding(request: web.Request) -> None:
    """UnreadableBody (415) before the body is read, for a Content-Encoding aiohttp passes through undecoded
    (``compress``, ``x-gzip``, a list such as ``gzip, gzip``): its bytes would be taken for the document itself."""
    found = request.headers.get(hdrs.CONTENT_ENCODING)
    if (
        found is None
        or found.lower() in ("", "identity")
        or (found.isascii() and found.lower() in DECODED_ENCODINGS)
    ):
        return
    shown = found.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:100]
    raise UnreadableBody(
        415,
        f"the request body has Content-Encoding: {shown}, which this gateway does not decode (it decodes "
        f"{', '.join(sorted(DECODED_ENCODINGS))})",
        ENCODING_FIX,
    )


async def read_chunk(request: web.Request, size: int) -> bytes:
    """The next at most ``size`` bytes of the decoded body (b"" at its end). A body that cannot be decoded raises
    UnreadableBody instead of aiohttp's RequestPayloadError, which would answer 500 with a traceback."""
    try:
        return await request.content.read(size)
    except web.RequestPayloadError as exc:
        raise unreadable_body(request, exc) from None


def unreadable_body(request: web.Request, exc: web.RequestPayloadError) -> UnreadableBody:
    """What to answer for the body aiohttp could not read (``read_chunk``'s error; a multipart reader's too)."""
    # else aiohttp reads on what is left after the answer, and logs that read's error with a traceback
    request.content.feed_eof()
    if isinstance(exc.__cause__, ContentEncodingError):
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "")
        detail = f"the request body cannot be decoded as its Content-Encoding: {encoding} says (it is not valid {encoding})"
        return UnreadableBody(400, detail, ENCODING_FIX)
    reason = str(exc).replace("\n", " ").strip()
    return UnreadableBody(
        400, f"the request body cannot be read ({reason})", "send the request again, its body whole as announced"
    )


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
    try:  # before the body is read: nothing in it can be parsed under these headers
        check_content_type(content_type)
        check_content_encoding(request)
    except EbmsError as exc:
        return _refused(request, content_type, exc)
    except UnreadableBody as exc:
        return _refused(request, content_type, _as_ebms(exc))
    try:
        return await _answer(request, content_type, limit)
    except UnreadableBody as exc:
        return _refused(request, content_type, _as_ebms(exc))


def _as_ebms(exc: UnreadableBody) -> EbmsError:
    """Refused as a broken MIME body is: the sender's AS4 stack reads the error signal, not a JSON problem."""
    return EbmsError(EbmsCode.MIME_INCONSISTENCY, str(exc), envelope_unreadable=True)


def _refused(request: web.Request, content_type: str, error: EbmsError) -> web.StreamResponse:
    """A request refused unread, or read only in part: the connection cannot carry another one."""
    response = _response(request.app[RECEIVER].refuse(error, content_type))
    response.force_close()
    return response


async def _answer(request: web.Request, content_type: str, limit: int) -> web.StreamResponse:
    # compressed, a small body may decode to far more: only one sent as it is stays in memory
    small = request.content_length is not None and request.content_length <= IN_MEMORY_BYTES
    if small and "Content-Encoding" not in request.headers:
        body = await _small_body(request, limit)
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


async def _small_body(request: web.Request, limit: int) -> bytes:
    """A body of at most ``IN_MEMORY_BYTES``, sent without a Content-Encoding, which must arrive whole within the
    read time-out."""
    seconds = request.app[READ_TIMEOUT]
    body = bytearray()
    try:
        async with asyncio.timeout(seconds):
            while chunk := await read_chunk(request, _READ_CHUNK):
                body += chunk
                if len(body) > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
            return bytes(body)
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
                chunk = await read_chunk(request, _READ_CHUNK)
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
