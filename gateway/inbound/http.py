"""The AS4 endpoint: read the request, hand the bytes to the receive path, write its answer."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.inbound.receive import Receiver

RECEIVER = web.AppKey("receiver", Receiver)
ON_ACCEPTED: web.AppKey[Callable[[], None]] = web.AppKey("on_accepted")
MAX_REQUEST_BYTES = 64 * 1024 * 1024


async def as4_endpoint(request: web.Request) -> web.Response:
    body = await request.read()
    reception = await request.app[RECEIVER].receive(request.headers.get("Content-Type", ""), body)
    if reception.record is not None and not reception.duplicate:
        request.app[ON_ACCEPTED]()
    answer = reception.response
    return web.Response(status=answer.http_status, body=answer.body, headers={"Content-Type": answer.content_type})


routes: list[web.RouteDef] = [web.post("/as4", as4_endpoint)]
