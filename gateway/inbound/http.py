"""The AS4 endpoint: read the request, hand the bytes to the receive path, write its answer.

Small requests are read into memory; a large one (over ``IN_MEMORY_BYTES``, or of unknown length) is written
to the data folder as it arrives, hashed on the way, and read back from there in chunks.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.inbound.receive import Receiver
from gateway.store import PayloadStore
from gateway.store.payloads import IncomingFile

RECEIVER = web.AppKey("receiver", Receiver)
PAYLOADS = web.AppKey("payloads", PayloadStore)
MAX_MESSAGE_BYTES: web.AppKey[int] = web.AppKey("max_message_bytes")
ON_ACCEPTED: web.AppKey[Callable[[], None]] = web.AppKey("on_accepted")
IN_MEMORY_BYTES = 1024 * 1024
_READ_CHUNK = 256 * 1024


async def as4_endpoint(request: web.Request) -> web.Response:
    limit = request.app[MAX_MESSAGE_BYTES]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    content_type = request.headers.get("Content-Type", "")
    if request.content_length is not None and request.content_length <= IN_MEMORY_BYTES:
        reception = await request.app[RECEIVER].receive(content_type, await request.read())
    else:
        incoming = await _spooled(request, limit)
        try:
            reception = await request.app[RECEIVER].receive(content_type, incoming)
        finally:
            incoming.close()
    if reception.record is not None and not reception.duplicate:
        request.app[ON_ACCEPTED]()
    answer = reception.response
    return web.Response(status=answer.http_status, body=answer.body, headers={"Content-Type": answer.content_type})


async def _spooled(request: web.Request, limit: int) -> IncomingFile:
    incoming = request.app[PAYLOADS].incoming()
    try:
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            if incoming.size + len(chunk) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=incoming.size + len(chunk))
            incoming.write(chunk)
    except BaseException:
        incoming.close()
        raise
    return incoming


routes: list[web.RouteDef] = [web.post("/as4", as4_endpoint)]
