"""The REST API for national systems and operators. Handlers stay thin: parse, call one service, map."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.documents import PermitDocumentRejected
from gateway.errors import GatewayError
from gateway.interfaces.keys import NODE
from gateway.metrics import QUEUE_DEPTH, REGISTRY
from gateway.store import Direction, EventRecord, MessageRecord

API = "/api/v1"


def message_json(record: MessageRecord) -> dict[str, Any]:
    return {
        "message_id": record.message_id,
        "direction": "outbound" if record.direction is Direction.OUTBOUND else "inbound",
        "state": record.state.value,
        "partner": record.partner_id,
        "from_party": record.from_party,
        "to_party": record.to_party,
        "conversation_id": record.conversation_id,
        "service": record.service,
        "action": record.action,
        "document_type": record.document_type,
        "document_number": record.document_number,
        "attempts": record.attempts,
        "next_attempt_at": record.next_attempt_at.isoformat() if record.next_attempt_at else None,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "last_error": record.last_error,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "state": event.state.value if event.state else None,
        "detail": event.detail,
    }


async def submit_document(request: web.Request) -> web.Response:
    node = request.app[NODE]
    data = await request.read()
    try:
        submitted = await node.submitter.submit(data, partner_id=request.query.get("partner"))
    except PermitDocumentRejected as exc:
        findings = [f.to_json() for f in exc.findings]
        return web.json_response({"error": "document rejected", "findings": findings}, status=422)
    except GatewayError as exc:
        return web.json_response({"error": "document cannot be sent", "detail": str(exc)}, status=409)
    node.dispatch_pump.wake()
    noted = submitted.document.findings
    body = message_json(submitted.record) | {
        "warnings": [f.to_json() for f in noted if f.severity == "warning"],
        "notes": [f.to_json() for f in noted if f.severity == "info"],
    }
    return web.json_response(body, status=202 if submitted.created else 200)


async def list_messages(request: web.Request) -> web.Response:
    node = request.app[NODE]
    direction = {"outbound": Direction.OUTBOUND, "inbound": Direction.INBOUND}.get(
        request.query.get("direction", "")
    )
    limit = min(int(request.query.get("limit", "50")), 500)
    records = await node.store.recent(limit=limit, direction=direction)
    return web.json_response({"messages": [message_json(r) for r in records]})


async def get_message(request: web.Request) -> web.Response:
    node = request.app[NODE]
    message_id = request.match_info["message_id"]
    for direction in (Direction.OUTBOUND, Direction.INBOUND):
        record = await node.store.find(direction, message_id)
        if record is not None:
            events = [event_json(e) for e in await node.store.events(record.id)]
            return web.json_response(message_json(record) | {"events": events})
    return web.json_response({"error": f"no message with MessageId {message_id!r}"}, status=404)


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response({"status": "ok", "party_id": node.settings.identity.party_id, "node": node.node_id})


async def metrics(request: web.Request) -> web.Response:
    depth = await request.app[NODE].store.count_by_state()
    QUEUE_DEPTH.clear()
    for (direction, partner, state), count in depth.items():
        QUEUE_DEPTH.labels(direction=direction, partner=partner, state=state).set(count)
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


routes: list[web.RouteDef] = [
    web.post(f"{API}/documents", submit_document),
    web.get(f"{API}/messages", list_messages),
    web.get(f"{API}/messages/{{message_id}}", get_message),
    web.get("/health", health),
    web.get("/metrics", metrics),
]
