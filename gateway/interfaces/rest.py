"""The REST API for national systems and operators. Handlers stay thin: parse, call one service, map."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
import re
import shutil
import weakref
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import structlog
from aiohttp import BodyPartReader, HttpVersion11, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from ruamel.yaml import YAML

from gateway.as4 import mime
from gateway.as4.model import MAX_MIME_TYPE_LENGTH
from gateway.documents import DocumentKey, DocumentType, Party, PermitDocumentRejected
from gateway.documents.types import RULE_PREFIX
from gateway.errors import GatewayError, StoreError
from gateway.inbound.deliver import attachment_url, metadata, webhook_headers
from gateway.inbound.http import UnreadableBody, check_content_encoding, read_chunk, unreadable_body
from gateway.inbound.pull import AmbiguousMessageId, NotPullable, PullInbox
from gateway.interfaces import access, folder
from gateway.interfaces.keys import NODE
from gateway.metrics import DATA_FREE_BYTES, QUEUE_DEPTH, REGISTRY, STORE_UP
from gateway.outbound.retry import PartnerGone, UnknownMessage, retry_failed
from gateway.outbound.submit import MAX_ATTACHMENTS, TooManyAttachments
from gateway.profiles import KeyStatus
from gateway.store import (
    Direction,
    EventRecord,
    MessageRecord,
    NewAttachment,
    PermitLineRecord,
    PermitRecord,
    PermitState,
    State,
    attachments_of,
    direction_named,
    is_unavailable,
    state_named,
)
from gateway.xmlsafe import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from gateway.interfaces.node import Node

log = structlog.get_logger("gateway.api")

API = "/api/v1"
_UPLOAD_CHUNK = 256 * 1024
MAX_DOCUMENT_BYTES = DEFAULT_MAX_BYTES
"""The largest permit document taken (the XML parser's limit): the body of POST /documents, or its 'document'
part."""
MAX_RETRY_BODY_BYTES = 64 * 1024
"""The largest body of POST /messages/{id}/retry, a JSON reason."""
REASON_PATTERN = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
"""A retry's reason holds a character that is neither a control character nor white space: a regular
expression that means the same in Python and in JSON Schema (ECMA-262), whose white space classes differ; openapi.yaml
gives it as the reason's ``pattern``."""
_REASON = re.compile(REASON_PATTERN)


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
        "attachments": attachments_json(record),
    }


def attachments_json(record: MessageRecord) -> list[dict[str, Any]]:
    """Each supporting document with the URL that serves it, which names this message alone."""
    return [a.to_json() | {"url": attachment_url(record, a.position)} for a in attachments_of(record.attachments)]


def event_json(event: EventRecord) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "state": event.state.value if event.state else None,
        "detail": event.detail,
    }


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The router's own 404 and 405, and aiohttp's 413 past ``client_max_size``, under /api/ as JSON naming the
    fix, like every other answer there; and 400 for a NUL character in a path or query value of the national
    API, which no stored value holds and PostgreSQL cannot even compare with one."""
    refused = _nul_refusal(request)
    if refused is not None:
        return refused
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed, web.HTTPRequestEntityTooLarge) as exc:
        if not request.path.startswith("/api/") or exc.content_type == "application/json":
            raise
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            fix = f"send a smaller body; see {API}/openapi.json for what each route takes"
            return web.json_response(
                {"error": "request body too large", "detail": exc.text, "fix": fix}, status=413
            )
        fix = f"see {API}/openapi.json for the routes and their methods"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        error = f"no route {request.method} {request.path}"
        return web.json_response({"error": error, "fix": fix}, status=exc.status, headers=headers)


def _nul_refusal(request: web.Request) -> web.Response | None:
    """400 naming the first path or query value with a NUL character, on the national API (the admin API checks
    its own parameters, after its credential)."""
    if not request.path.startswith(f"{API}/") or request.path.startswith(f"{API}/admin/"):
        return None
    named = [
        *(("path parameter", k, v) for k, v in request.match_info.items()),
        *(("query parameter", k, v) for k, v in request.query.items()),
    ]
    for kind, name, value in named:
        if "\x00" in value:
            detail = f"{kind} {name!r} contains a NUL character (U+0000, %00 in the URL)"
            fix = (
                "send the value without it: no MessageId, PartyId, partner id, country or permit number holds one; "
                f"see {API}/openapi.json for what each parameter takes"
            )
            return web.json_response({"error": "bad request", "detail": detail, "fix": fix}, status=400)
    return None


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The largest request body a route takes, the rule that sets it, and how to stay within it."""

    size: int
    rule: str
    fix: str

    def refusal(self, given: int | None) -> web.Response | None:
        """413 for a Content-Length of ``given`` (None: not sent) over the limit, before the body is read."""
        if given is None or given <= self.size:
            return None
        return self.too_large(f"the request body is {given} bytes")

    def too_large(self, what: str) -> web.Response:
        detail = f"the limit is {self.size} bytes ({self.rule}), and {what}"
        body = {"error": "request body too large", "detail": detail, "fix": self.fix}
        response = web.json_response(body, status=413)
        response.force_close()  # Connection: close, as the rest of the body will not be read
        return response


class BodyTooLarge(GatewayError):
    """A body without a Content-Length, or a form's part, went past its limit while it was read."""

    def __init__(self, what: str, limit: BodyLimit) -> None:
        super().__init__(what)
        self.limit = limit


_DOCUMENT_LIMIT = BodyLimit(
    MAX_DOCUMENT_BYTES,
    "the largest permit document, the XML parser's limit",
    "send the permit XML alone; supporting documents go as 'attachment' parts of a multipart/form-data body",
)


def _documents_limit(request: web.Request) -> BodyLimit:
    if request.content_type != "multipart/form-data":
        return _DOCUMENT_LIMIT
    return BodyLimit(
        request.app[NODE].settings.inbound.max_message_bytes,
        "[inbound] max_message_bytes, for the permit and its supporting documents together",
        "send fewer or smaller supporting documents, or raise [inbound] max_message_bytes (keep it near the "
        "largest max_payload_bytes of the partners)",
    )


def _retry_limit(request: web.Request) -> BodyLimit:
    return BodyLimit(MAX_RETRY_BODY_BYTES, "a retry's JSON body", 'send {"reason": "why it is sent again"}')


def _no_body(request: web.Request) -> None:
    return None


_ALLOWED = web.Response()


async def _allowed(request: web.Request) -> web.StreamResponse:
    """The handler the access check calls when it lets a request through: it answers only that."""
    return _ALLOWED


ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def expect_continue(limit: Callable[[web.Request], BodyLimit | None]) -> ExpectHandler:
    """The route's answer to ``Expect: 100-continue``, before the client sends its body: 401 or 403 as the API
    would answer the request, 413 for a Content-Length over the route's limit, else 100 Continue. (aiohttp's
    own handler lets every body come, to be refused once it has arrived.) Another expectation is ignored, as
    RFC 9110 10.1.1 allows."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        refused = await access.national_api_access(request, _allowed)
        if refused is not _ALLOWED:
            refused.force_close()  # the client sends no body: the connection cannot carry another request
            return refused
        found = limit(request)
        too_large = found.refusal(request.content_length) if found is not None else None
        if too_large is not None:
            return too_large
        if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and request.version >= HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is no part of the response's size
        return None

    return expect


DOCUMENT_TYPES = ("application/xml", "text/xml", "application/*+xml", "application/octet-stream")
"""The media types of a permit sent as the whole body (application/octet-stream: what HTTP clients send for raw
bytes, and a body without a Content-Type); multipart/form-data carries it with supporting documents."""
# what clients send raw bytes or a string as by default (curl --data-binary; .NET StringContent, aiohttp's
# data=str): the bytes as sent, taken as XML
_CLIENT_DEFAULTS = ("application/x-www-form-urlencoded", "text/plain")


def _unsupported_type(request: web.Request) -> web.Response | None:
    """415 for a body that says it is something other than a permit document (JSON, text, ...)."""
    found = request.content_type
    if found in (*DOCUMENT_TYPES, "multipart/form-data", *_CLIENT_DEFAULTS) or found.endswith("+xml"):
        return None
    body = {
        "error": "unsupported media type",
        "detail": f"POST {API}/documents takes a permit document, and the body is {found}",
        "fix": f"send the permit XML as the body with Content-Type {', '.join(DOCUMENT_TYPES)}, or "
        "multipart/form-data with a 'document' part and 'attachment' parts",
    }
    return web.json_response(body, status=415)


async def submit_document(request: web.Request) -> web.Response:
    """The permit XML as the body, or multipart/form-data: a ``document`` part and ``attachment`` file parts
    (supporting documents, streamed to disk as they arrive)."""
    node = request.app[NODE]
    unsupported = _unsupported_type(request)
    if unsupported is not None:
        return unsupported
    limit = _documents_limit(request)
    refused = limit.refusal(request.content_length)
    if refused is not None:
        return refused
    with ExitStack() as files:
        try:
            check_content_encoding(request)
            if request.content_type == "multipart/form-data":
                data, attachments = await _form(request, files, limit)
            else:
                data, attachments = await _body(request, limit), []
            submitted = await node.submitter.submit(
                data, partner_id=request.query.get("partner"), attachments=attachments
            )
        except BodyTooLarge as exc:
            return exc.limit.too_large(str(exc))
        except UnreadableBody as exc:
            return exc.json_response()
        except (BadSubmission, TooManyAttachments) as exc:
            body = {"error": "bad submission", "detail": str(exc), "fix": SUBMISSION_FIX}
            return web.json_response(body, status=400)
        except PermitDocumentRejected as exc:
            findings = [f.to_json() for f in exc.findings]
            return web.json_response({"error": "document rejected", "findings": findings}, status=422)
        except GatewayError as exc:
            return web.json_response({"error": "document cannot be sent", "detail": str(exc)}, status=409)
    node.dispatch_pump.wake()
    noted = submitted.findings
    body = message_json(submitted.record) | {
        "warnings": [f.to_json() for f in noted if f.severity == "warning"],
        "notes": [f.to_json() for f in noted if f.severity == "info"],
        "submitted_before": not submitted.created or submitted.supersedes is not None,
    }
    if submitted.supersedes is not None:
        body["supersedes"] = submitted.supersedes
    return web.json_response(body, status=202 if submitted.created else 200)


SUBMISSION_FIX = (
    f"send the permit XML as the body, or multipart/form-data with exactly one 'document' part (the permit XML) "
    f"and at most {MAX_ATTACHMENTS} 'attachment' file parts (its supporting documents); no other fields"
)


class BadSubmission(GatewayError):
    """A multipart submission without its document part, with an unknown or a second document part."""


async def _body(request: web.Request, limit: BodyLimit) -> bytes:
    """The whole body, refused as soon as it is past ``limit`` (one sent without a Content-Length)."""
    body = bytearray()
    while chunk := await read_chunk(request, _UPLOAD_CHUNK):
        body += chunk
        if len(body) > limit.size:
            raise BodyTooLarge("the request body is larger", limit)
    return bytes(body)


async def _form(request: web.Request, files: ExitStack, limit: BodyLimit) -> tuple[bytes, list[NewAttachment]]:
    try:
        return await _read_form(request, files, limit)
    except (ValueError, HttpProcessingError) as exc:  # aiohttp's multipart reader on a malformed body
        raise BadSubmission(f"the multipart/form-data body cannot be read: {exc}") from None
    except web.RequestPayloadError as exc:  # a Content-Encoding that does not decode
        raise unreadable_body(request, exc) from None


async def _read_form(
    request: web.Request, files: ExitStack, limit: BodyLimit
) -> tuple[bytes, list[NewAttachment]]:
    data: bytes | None = None
    attachments: list[NewAttachment] = []
    total = 0
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            raise BadSubmission("nested multipart parts are not accepted; send one part per file")
        if part.name == "document":
            if data is not None:
                raise BadSubmission(
                    "the form has a second 'document' part; send one 'document' part per submission (the permit "
                    "XML), each supporting document as an 'attachment' part, and another permit in a request of "
                    "its own"
                )
            data = await _document_part(part)
            total += len(data)
        elif part.name == "attachment":
            if len(attachments) == MAX_ATTACHMENTS:  # refused before its spool file is opened
                raise TooManyAttachments(f"the form has more than {MAX_ATTACHMENTS} 'attachment' parts")
            spool = files.enter_context(request.app[NODE].payloads.spool())
            while chunk := await part.read_chunk(_UPLOAD_CHUNK):
                total += len(chunk)
                if total > limit.size:
                    raise BodyTooLarge("the form's parts are larger", limit)
                spool.write(chunk)
            name = unquote(part.filename or "")  # some clients (aiohttp among them) percent-encode it
            mime_type = _attachment_type(part.headers.get("Content-Type"), name or f"{len(attachments) + 1}")
            attachments.append(NewAttachment(filename=name, mime_type=mime_type, file=spool))
        else:
            raise BadSubmission(
                f"unknown form field {part.name!r}; the accepted fields are 'document' (the permit XML, once) and "
                "'attachment' (a supporting document, one file part each)"
            )
    if data is None:
        raise BadSubmission("the form has no 'document' part: the permit XML goes in a part named 'document'")
    return data, attachments


async def _document_part(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(_UPLOAD_CHUNK):
        data += chunk
        if len(data) > MAX_DOCUMENT_BYTES:
            raise BodyTooLarge("the 'document' part is larger", _DOCUMENT_LIMIT)
    return bytes(data)


def _attachment_type(header: str | None, name: str) -> str:
    """The part's media type (and charset): its other parameters, a file name among them, stay out of the AS4
    MimeType, which partners and our store cap at 100 characters."""
    if header is not None and not header.isascii():
        shown = header.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:200]
        raise BadSubmission(
            f"attachment {name!r} has a Content-Type with characters that are not ASCII ({shown}); a part's "
            "Content-Type must be ASCII (RFC 2045): send the media type alone, application/pdf say"
        )
    found = mime.type_and_charset(header or "application/octet-stream")
    if not found:
        raise BadSubmission(f"attachment {name!r} has the Content-Type {header!r}, which is not type/subtype")
    if len(found) > MAX_MIME_TYPE_LENGTH:
        raise BadSubmission(
            f"attachment {name!r} has a media type of {len(found)} characters; at most {MAX_MIME_TYPE_LENGTH} "
            "are accepted: send it as application/octet-stream"
        )
    return found


async def retry_message(request: web.Request) -> web.Response:
    """An operator sends a FAILED message again, under its MessageId; the body may give a ``reason``. When its
    signed bytes can no longer be delivered, a message built anew in its place (202, ``supersedes``)."""
    node = request.app[NODE]
    message_id = request.match_info["message_id"]
    refused = _retry_limit(request).refusal(request.content_length)
    if refused is not None:
        return refused
    try:
        reason = await _retry_reason(request)
    except BodyTooLarge as exc:
        return exc.limit.too_large(str(exc))
    except UnreadableBody as exc:
        return exc.json_response()
    try:
        record = await retry_failed(
            node.store, node.partners, node.clock, message_id, reason=reason, rebuilder=node.submitter
        )
    except UnknownMessage as exc:
        fix = (
            f"retry a message this gateway sent: GET {API}/messages?direction=outbound&state=FAILED lists those "
            "that can be; a received message is the partner's to send again"
        )
        return web.json_response({"error": str(exc), "fix": fix}, status=404)
    except PartnerGone as exc:
        fix = "restore the partner's profile and retry, or submit the document again (the detail says how)"
        return web.json_response({"error": "cannot retry", "detail": str(exc), "fix": fix}, status=409)
    except GatewayError as exc:
        fix = (
            f"only a FAILED message is retried: GET {API}/messages/{quote(message_id, safe='@')}?direction=outbound "
            "shows its state and timeline (one on its way is retried by the gateway itself, an ACKNOWLEDGED one "
            "was delivered); a superseded one goes on as the message that superseded it"
        )
        return web.json_response({"error": "cannot retry", "detail": str(exc), "fix": fix}, status=409)
    node.dispatch_pump.wake()
    if record.message_id == message_id:
        return web.json_response(message_json(record))
    return web.json_response(message_json(record) | {"supersedes": message_id}, status=202)


async def _retry_reason(request: web.Request) -> str:
    if not request.can_read_body:
        return "retried by an operator"
    check_content_encoding(request)
    text = await _body(request, _retry_limit(request))
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad_request('the body must be JSON: {"reason": "why it is sent again"}') from None
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not _REASON.search(reason):
        raise _bad_request(
            'the body must be JSON with a "reason" string that holds more than white space and control '
            "characters, or be left out",
            'send {"reason": "why it is sent again"}, or no body for "retried by an operator"',
        )
    return reason.strip()[:500]


async def list_messages(request: web.Request) -> web.Response:
    """Newest first, ``?limit=`` at a time; ``next`` is the cursor of the page after."""
    node = request.app[NODE]
    direction = _direction(request.query.get("direction"))
    state = _message_state(request.query.get("state"))
    limit = _whole_number(request.query, "limit", 50, 500)
    given = {"direction": _direction_text(direction), "state": state.value if state else None}
    page = _page(request, "messages", given)
    before = _row_id(page)
    direction = _direction(page.filters["direction"])
    state = _message_state(page.filters["state"])
    records = await node.store.recent(limit=limit + 1, direction=direction, state=state, before=before)
    shown, more = records[:limit], len(records) > limit
    next_cursor = _next(page, more, [shown[-1].id] if shown else None)
    return web.json_response({"messages": [message_json(r) for r in shown], "next": next_cursor})


async def named_message(request: web.Request) -> MessageRecord | web.Response:
    """The one message the path's MessageId names, among those of ``?direction=`` and sent by ``?from=`` (a
    PartyId) when given; else 404, or 409 when the MessageId names several (a partner reused it)."""
    message_id = request.match_info["message_id"]
    direction = _direction(request.query.get("direction"))
    from_party = request.query.get("from")
    found = await request.app[NODE].store.find_named(message_id, direction=direction, from_party=from_party)
    if len(found) == 1:
        return found[0]
    if not found:
        among = "".join(
            f" {name} {request.query[name][:100]!r}" for name in ("direction", "from") if name in request.query
        )
        fix = (
            f"GET {API}/messages (?direction=, ?state=) lists the messages with their message_id; a received "
            "message has the MessageId its sender gave it"
        )
        if among:
            fix += "; leave out ?direction= and ?from= to look among all of them"
        body = {"error": f"no message with MessageId {message_id!r}{among}", "fix": fix}
        return web.json_response(body, status=404)
    choices = [f"?direction={_direction_name(r)}&from={quote(r.from_party, safe='')}" for r in found]
    senders = "; ".join(f"{_direction_name(r)} from {r.from_party} (partner {r.partner_id})" for r in found)
    body = {
        "error": f"MessageId {message_id!r} names {len(found)} messages",
        "detail": f"{senders}: a MessageId is the sender's, and a partner used one that names another message",
        "fix": f"name the one meant with {' or '.join(choices)} (the sender's PartyId: X-Permit-From-Party of a "
        "webhook delivery, FromParty of a SOAP one); the URLs this API and its deliveries give carry it",
    }
    return web.json_response(body, status=409)


def _direction_name(record: MessageRecord) -> str:
    return "outbound" if record.direction is Direction.OUTBOUND else "inbound"


def _direction_text(direction: Direction | None) -> str | None:
    if direction is None:
        return None
    return "outbound" if direction is Direction.OUTBOUND else "inbound"


async def get_message(request: web.Request) -> web.Response:
    node = request.app[NODE]
    record = await named_message(request)
    if isinstance(record, web.Response):
        return record
    events = [event_json(e) for e in await node.store.events(record.id)]
    return web.json_response(message_json(record) | {"events": events})


async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A supporting document of a sent or received message, streamed from the payload store."""
    node = request.app[NODE]
    record = await named_message(request)
    if isinstance(record, web.Response):
        return record
    position = request.match_info["position"]
    found = [a for a in attachments_of(record.attachments) if str(a.position) == position]
    if not found:
        error = f"{_direction_name(record)} message {record.message_id!r} has no attachment {position}"
        count = len(attachments_of(record.attachments))
        detail = f"it has {count} supporting document{'' if count == 1 else 's'}" + (
            f", at positions 1 to {count}" if count else ""
        )
        fix = (
            "use the url of one of the message's attachments (its attachments list)" if count else "none to fetch"
        )
        return web.json_response({"error": error, "detail": detail, "fix": fix}, status=404)
    headers = {
        "Content-Type": found[0].mime_type,
        "Content-Disposition": f'attachment; filename="{found[0].filename}"',
        "X-Permit-Attachment-Sha256": found[0].sha256,
    }
    lost = await _lost_file(request, record, found[0].sha256, f"supporting document {position}")
    return lost or web.FileResponse(node.payloads.path(found[0].sha256), headers=headers)


async def get_receipt(request: web.Request) -> web.Response:
    """The signed receipt kept as non-repudiation evidence: the partner's for a message we sent, ours for one we
    received; byte for byte as it crossed the wire, so anyone can verify it with the signer's certificate."""
    node = request.app[NODE]
    record = await named_message(request)
    if isinstance(record, web.Response):
        return record
    kept = await node.store.get_evidence(record.id, "receipt")
    if kept is None:
        reason = f"message {record.message_id!r} is {record.state.value} and has no signed receipt"
        return web.json_response({"error": reason}, status=404)
    content_type, body = kept
    digest = hashlib.sha256(body).hexdigest()
    return web.Response(body=body, headers={"Content-Type": content_type, "X-Permit-Evidence-Sha256": digest})


async def get_wire(request: web.Request) -> web.StreamResponse:
    """The AS4 message as it crossed the wire (signed, encrypted for the receiver), streamed from its file: what
    the receipt's digests refer to."""
    node = request.app[NODE]
    record = await named_message(request)
    if isinstance(record, web.Response):
        return record
    if not (record.wire_sha256 and record.wire_content_type):
        error = f"{_direction_name(record)} message {record.message_id!r} has no wire bytes kept"
        return web.json_response({"error": error}, status=404)
    headers = {"Content-Type": record.wire_content_type, "X-Permit-Wire-Sha256": record.wire_sha256}
    lost = await _lost_file(request, record, record.wire_sha256, "AS4 message as it crossed the wire")
    return lost or web.FileResponse(node.payloads.path(record.wire_sha256), headers=headers)


async def _lost_file(request: web.Request, record: MessageRecord, sha256: str, what: str) -> web.Response | None:
    """500 naming the file when the payload store no longer has it (or cannot read it), instead of
    FileResponse's bare text/plain 404, which would say the message has no such file. Checked by opening it,
    off the event loop: the data folder may be on a network share."""
    path = request.app[NODE].payloads.path(sha256)
    try:
        await asyncio.to_thread(lambda: path.open("rb").close())
    except OSError as exc:
        log.error("payload file lost", message_id=record.message_id, sha256=sha256, path=str(path), error=str(exc))
        reason = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
        detail = (
            f"the {what} of {_direction_name(record)} message {record.message_id!r}, the file with SHA-256 "
            f"{sha256} in the payload store ([store] data_dir, payloads/{sha256[:2]}/{sha256[2:]}), {reason}"
        )
        again = (
            "ask the partner to send the message again"
            if record.direction is Direction.INBOUND
            else "submit the document again"
        )
        fix = f"restore the data folder from a backup (the file's SHA-256 tells the right one), or {again}"
        body = {"error": "the file cannot be read", "detail": detail, "fix": fix}
        return web.json_response(body, status=500)
    return None


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 description, shipped beside this module."""
    text = resources.files("gateway.interfaces").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(text)
    return document


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE]
    return web.json_response({"status": "ok", "party_id": node.settings.identity.party_id, "node": node.node_id})


READY_SECONDS = 2.0
"""How long /ready waits for the store and for the profiles folder: a probe's own time-out is often 1-3 s."""


@dataclass(frozen=True, slots=True)
class NotReady:
    """A readiness check that failed: what /ready answers, and what goes to the log only (where the database or
    the folder is, which the network must not learn)."""

    check: str
    error: str
    fix: str
    private: dict[str, str] = field(default_factory=dict)

    def answer(self) -> dict[str, str]:
        return {"check": self.check, "error": self.error, "fix": self.fix}


@dataclass
class Readiness:
    """The checks /ready last found failing, and how many probes in a row found each: a load balancer probes
    every few seconds, so an outage is logged when a check starts failing (or fails for another reason) and
    when it passes again, not at every probe."""

    failing: dict[str, NotReady] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)

    def show(self, problems: list[NotReady]) -> None:
        found = {p.check: p for p in problems}
        for check, problem in found.items():
            before = self.failing.get(check)
            self.probes[check] = (0 if before is None else self.probes.get(check, 0)) + 1
            # the public error, not the private reason: it names the cause, the reason may hold what varies
            if before is None or before.error != problem.error:
                log.warning("node not ready", **problem.answer(), **problem.private)
        for check in sorted(self.failing.keys() - found.keys()):
            log.info("node ready again", check=check, failed_probes=self.probes.pop(check, 0))
        self.failing = found


READINESS = web.AppKey("readiness", Readiness)


async def ready(request: web.Request) -> web.Response:
    """Readiness, where /health is liveness: 503 naming each check that failed and its fix while this node
    cannot do its work (the store does not answer, our certificate expired, the profiles folder cannot be
    listed), so a load balancer sends partners and the national system to another node meanwhile."""
    node = request.app[NODE]
    found = (
        await _store_problem(node),
        _certificate_problem(node),
        await _profiles_problem(node),
        await _folders_problem(request.app),
    )
    problems = [p for p in found if p is not None]
    request.app[READINESS].show(problems)
    body = {"status": "not ready" if problems else "ready", "party_id": node.settings.identity.party_id}
    answers = [p.answer() for p in problems]
    return web.json_response(body | {"node": node.node_id, "problems": answers}, status=503 if problems else 200)


async def _store_problem(node: Node) -> NotReady | None:
    private: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_SECONDS):
            await node.store.ping()
    except TimeoutError:
        error = f"the message store did not answer a trivial query within {READY_SECONDS:g} s"
    except Exception as exc:  # the reason may name the database's host: it goes to the log, not to the network
        private["reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        error = f"the message store cannot be reached ({type(exc).__name__}; the log has the reason)"
    else:
        return None
    fix = "check that the database [store].url names is running and reachable from this node"
    return NotReady("store", error, fix, private)


def _certificate_problem(node: Node) -> NotReady | None:
    now = node.clock.now()
    expired = [
        f"{purpose} (expired {cert.not_valid_after_utc:%Y-%m-%d})"
        for purpose, cert in node.keys.own_certificates()
        if purpose.startswith(KeyStatus.CURRENT.value) and cert.not_valid_after_utc < now
    ]
    if not expired:
        return None
    return NotReady(
        "certificate",
        f"our certificate has expired: {', '.join(expired)}; partners refuse what it signs",
        "put a renewed certificate in place ([keys] certificate, or `permit-gateway keys generate` and "
        "`keys rollover` with a keystore), give it to the partners, and restart the gateway",
    )


async def _profiles_problem(node: Node) -> NotReady | None:
    folder = node.settings.profiles.folder
    try:
        async with asyncio.timeout(READY_SECONDS):
            await asyncio.to_thread(os.listdir, folder)
    except TimeoutError:
        error = f"the profiles folder could not be listed within {READY_SECONDS:g} s"
    except OSError as exc:
        error = f"the profiles folder cannot be listed: {exc.strerror or type(exc).__name__}"
    else:
        return None
    fix = (
        "check that [profiles].folder exists and that the gateway's account may read it (a network share: mounted)"
    )
    return NotReady("profiles", error, fix, {"folder": str(folder)})  # the path: to the log only


async def _folders_problem(app: web.Application) -> NotReady | None:
    """The folders the outbox writes to, on a node that watches it: a rejected permit that cannot be moved to
    the rejected folder stays unseen, its reason nowhere the national system looks."""
    if not app.get(folder.WATCHED, False):
        return None
    named = folder.outbox_folders(app[NODE].settings.folders)
    try:
        async with asyncio.timeout(READY_SECONDS):
            found = await asyncio.to_thread(
                lambda: [p for p in map(folder.unusable_folder, named) if p is not None]
            )
    except TimeoutError:
        error = f"the outbox's folders could not be looked at within {READY_SECONDS:g} s"
        return NotReady("folders", error, "check that the outbox's file system (a network share: mounted) answers")
    if not found:
        return None
    first = found[0]
    return NotReady("folders", f"{first.key} {first.what}", first.fix, {"folder": str(first.path)})


METRICS_STORE_SECONDS = 5.0
"""How long /metrics waits for the queue depth: half Prometheus's default scrape timeout, so a store that does
not answer (or a pool whose waiters it does not wake) shows as ``permit_gateway_store_up`` 0, not as a failed
scrape."""


async def metrics(request: web.Request) -> web.Response:
    """The registry, with the queue depth read from the store. While the store is out of reach the scrape still
    succeeds, with ``permit_gateway_store_up`` 0 and the queue depth last read: a 503 here would look to
    Prometheus like the node is down, and no alert on the store could fire."""
    try:
        async with asyncio.timeout(METRICS_STORE_SECONDS):
            depth = await request.app[NODE].store.count_by_state()
    except TimeoutError:
        _store_down(f"no answer within {METRICS_STORE_SECONDS:g} s")
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        _store_down(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    else:
        STORE_UP.set(1)
        QUEUE_DEPTH.clear()
        for (direction, partner, state), count in depth.items():
            QUEUE_DEPTH.labels(direction=direction, partner=partner, state=state).set(count)
    await _read_free_space(request.app)
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


_FREE_SPACE_READS: weakref.WeakKeyDictionary[web.Application, asyncio.Future[Any]] = weakref.WeakKeyDictionary()
"""Each application's read of its data folder's free space, while it runs."""


async def _read_free_space(app: web.Application) -> None:
    """The data folder's free space, read off the loop and bounded: the data folder of several nodes is a network
    share, which can hang. A read still hanging from an earlier scrape is not started again (each would hold a
    worker thread for good); meanwhile, and for a folder gone, the series is left out: /ready reports those."""
    pending = _FREE_SPACE_READS.get(app)
    if pending is not None and not pending.done():
        DATA_FREE_BYTES.clear()
        return
    reading = asyncio.ensure_future(asyncio.to_thread(shutil.disk_usage, app[NODE].settings.data_dir))
    reading.add_done_callback(lambda done: done.cancelled() or done.exception())
    _FREE_SPACE_READS[app] = reading
    try:
        async with asyncio.timeout(METRICS_STORE_SECONDS):
            usage = await asyncio.shield(reading)
    except (OSError, TimeoutError):
        DATA_FREE_BYTES.clear()
        return
    DATA_FREE_BYTES.labels(folder="data").set(usage.free)


def _store_down(reason: str) -> None:
    STORE_UP.set(0)
    log.warning("message store unavailable; /metrics serves the queue depth last read", reason=reason)


# --- REST pull: the national system fetches received permits and acknowledges them ------------------------


def _pull_inbox(request: web.Request) -> PullInbox:
    node = request.app[NODE]
    return PullInbox(store=node.store, payloads=node.payloads, profiles=node.partners.registry)


def _not_found(exc: NotPullable, message_id: str) -> web.Response:
    if isinstance(exc, AmbiguousMessageId):
        return web.json_response({"error": str(exc)}, status=409)
    fix = (
        f"GET {API}/inbox lists what awaits pull; only the permits of partners whose profile says "
        "'delivery.method: rest-pull' wait there (others are pushed), and one acknowledged already has left: "
        f"GET {API}/messages/{quote(message_id, safe='@')}?direction=inbound shows its state"
    )
    return web.json_response({"error": str(exc), "fix": fix}, status=404)


async def list_inbox(request: web.Request) -> web.Response:
    """Oldest first, ``?limit=`` at a time; ``next`` is the cursor of the page after (acknowledged permits leave
    the inbox, new ones come at its end)."""
    limit = _whole_number(request.query, "limit", 50, 500)
    page = _page(request, "inbox", {"partner": request.query.get("partner")})
    inbox = _pull_inbox(request)
    records = await inbox.waiting(partner=page.filters["partner"], limit=limit + 1, after=_row_id(page))
    shown, more = records[:limit], len(records) > limit
    listed = [
        metadata(r)
        | {
            "state": r.state.value,
            "url": f"{API}/inbox/{quote(r.message_id, safe='@')}",
            "attachments": attachments_json(r),
        }
        for r in shown
    ]
    return web.json_response({"messages": listed, "next": _next(page, more, [shown[-1].id] if shown else None)})


async def fetch_inbox_message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    try:
        record, data = await _pull_inbox(request).fetch(message_id)
    except NotPullable as exc:
        return _not_found(exc, message_id)
    except StoreError as exc:  # its permit file is gone or changed on disk; the store itself answered
        detail = f"{exc}; restore the data folder from a backup, or ask the partner to send the permit again"
        return web.json_response({"error": "the permit cannot be read", "detail": detail}, status=500)
    return web.Response(body=data, headers=webhook_headers(record))


async def ack_inbox_message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    try:
        acked = await _pull_inbox(request).ack(message_id)
    except NotPullable as exc:
        return _not_found(exc, message_id)
    body = {"message_id": acked.record.message_id, "state": acked.record.state.value, "acknowledged": acked.moved}
    return web.json_response(body)


# --- the permit registry ---------------------------------------------------------------------------------

_DOCUMENT_TYPES = {t.value: t for t in DocumentType} | {prefix: t for t, prefix in RULE_PREFIX.items()}
OVERDUE_DAYS = 10


def permit_json(record: PermitRecord) -> dict[str, Any]:
    refers_to = record.refers_to
    return {
        "document_type": record.document_type.value,
        "issuing_country": record.key.issuing_country,
        "number": record.key.number,
        "version": record.version,
        "status": record.status.value,
        "direction": "outbound" if record.direction is Direction.OUTBOUND else "inbound",
        "message_id": record.message_id,
        "issue_date": record.issue_date.isoformat(),
        "valid_from": _iso(record.valid_from),
        "valid_until": _iso(record.valid_until),
        "importing_country": record.importing_country,
        "exporting_country": record.exporting_country,
        "importer": _party_json(record.importer),
        "exporter": _party_json(record.exporter),
        "refers_to": _key_json(refers_to) if refers_to else None,
        "cancelled_on": _iso(record.cancelled_on),
        "cancellation_held": _iso(record.cancellation_held),
        "content_sha256": record.content_sha256,
        "lines": [permit_line_json(line) for line in record.lines],
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def permit_line_json(line: PermitLineRecord) -> dict[str, Any]:
    """Quantities are base grams as decimal strings, exact."""
    return {
        "line_number": line.line_number,
        "substance_id": line.substance_id,
        "base_grams": _grams(line.base_grams),
        "reference_line_number": line.reference_line_number,
        "remaining_base_grams": _grams(line.remaining_grams),
        "drawn_base_grams": _grams(line.drawn_grams),
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _grams(grams: Decimal | None) -> str | None:
    return None if grams is None else f"{grams:f}"


def _permit_key(at: list[Any]) -> DocumentKey:
    document_type, country, number = at
    if not (isinstance(country, str) and isinstance(number, str)):
        raise TypeError(at)
    return DocumentKey(DocumentType(document_type), country, number)


def _key_json(key: DocumentKey) -> dict[str, str]:
    return {"document_type": key.document_type.value, "issuing_country": key.issuing_country, "number": key.number}


def _party_json(party: Party | None) -> dict[str, Any] | None:
    if party is None:
        return None
    return {"name": party.name, "country": party.country, "licence": party.licence, "category": party.category}


def _bad_request(
    detail: str, fix: str = f"see {API}/openapi.json for what each parameter takes"
) -> web.HTTPBadRequest:
    body = json.dumps({"error": "bad request", "detail": detail, "fix": fix})
    return web.HTTPBadRequest(text=body, content_type="application/json")


def _document_type(text: str) -> DocumentType:
    found = _DOCUMENT_TYPES.get(text)
    if found is None:
        raise _bad_request(f"unknown document type {text!r}; use one of {', '.join(_DOCUMENT_TYPES)}")
    return found


def _permit_state(text: str) -> PermitState:
    try:
        return PermitState(text)
    except ValueError:
        raise _bad_request(f"unknown status {text!r}; use one of {', '.join(PermitState)}") from None


def _whole_number(query: Any, name: str, default: int, maximum: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    digits = text.lstrip("0") or "0"  # 0500 is 500; the length check keeps int() off thousands of digits
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(maximum)) or int(digits) > maximum:
        raise _bad_request(
            f"{name} must be a whole number from 0 to {maximum}, not {text[:40]!r}",
            f"send ?{name}=N with N from 0 to {maximum}, or leave {name} out for {default}",
        )
    return int(digits)


def _direction(text: str | None) -> Direction | None:
    """None when ``?direction=`` is left out; an empty one is refused, as an empty ``?type=`` or ``?limit=`` is."""
    try:
        return None if text is None else direction_named(text)
    except ValueError as exc:
        raise _bad_request(f"direction {exc}") from None


def _message_state(text: str | None) -> State | None:
    try:
        return None if text is None else state_named(text)
    except ValueError as exc:
        raise _bad_request(f"state {exc}") from None


# --- listings in pages: a keyset cursor ------------------------------------------------------------------

MAX_CURSOR_LENGTH = 2000
# The check sum catches a cursor cut short or edited by mistake; it is no secret and proves nothing (anyone can
# make one), as a cursor opens nothing a client could not ask for with filters of its own: what a cursor carries
# is checked like a query's, and every node of a store must read the cursors of the others.
_CURSOR_SALT = b"permit-gateway listing cursor 1\x00"
_CURSOR_CHECK_BYTES = 12


@dataclass(frozen=True, slots=True)
class Page:
    """Where a listing's request starts: its listing, its filters (the cursor's, when it came with one) and
    the position of the last row of the page before (None: the first page)."""

    listing: str
    filters: dict[str, str | None]
    after: list[Any] | None


class BadCursor(GatewayError):
    """A ``?cursor=`` this gateway did not make, or one cut short or edited."""


def _page(request: web.Request, listing: str, given: dict[str, str | None]) -> Page:
    """The page a listing's request asks for. With a cursor, the filters are the cursor's: a filter sent with
    it must be the one it was made with, else the walk would go on through another listing."""
    text = request.query.get("cursor")
    if text is None:
        return Page(listing, given, None)
    try:
        cursor = _read_cursor(text)
    except BadCursor as exc:
        raise _bad_request(f"cursor {exc}", _CURSOR_FIX) from None
    if cursor.listing != listing:
        raise _bad_request(f"the cursor is one of GET {API}/{cursor.listing}, not of {request.path}", _CURSOR_FIX)
    if set(cursor.filters) != set(given):
        raise _bad_request("the cursor has filters this listing does not take", _CURSOR_FIX)
    changed = [name for name, value in given.items() if value is not None and value != cursor.filters[name]]
    if changed:
        asked = "&".join(f"{name}={str(given[name])[:100]}" for name in changed)
        made = "&".join(f"{n}={v}" for n, v in cursor.filters.items() if v is not None) or "no filter"
        raise _bad_request(
            f"the cursor was made for ?{made}, and this request asks for ?{asked}",
            "send the cursor with the filters of the page it came from (or none: the cursor keeps them), or start "
            "again without cursor for the first page of the new filters",
        )
    return Page(listing, cursor.filters, cursor.after)


_CURSOR_FIX = (
    "send the 'next' of the page before unchanged as ?cursor=, or start again without cursor for the first page"
)


def _read_cursor(text: str) -> Page:
    if not text or len(text) > MAX_CURSOR_LENGTH or not text.isascii():
        raise BadCursor(f"must be 1 to {MAX_CURSOR_LENGTH} ASCII characters, as the 'next' of a listing is")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise BadCursor(f"{text[:40]!r} is not base64url, as the 'next' of a listing is") from None
    check, content = raw[:_CURSOR_CHECK_BYTES], raw[_CURSOR_CHECK_BYTES:]
    if check != _cursor_check(content):
        raise BadCursor("does not match its check sum: it was cut short, edited or made by another program")
    try:
        version, listing, filters, after = json.loads(content)
    except (ValueError, TypeError):
        raise BadCursor("has a layout this gateway does not know") from None
    well_formed = (
        version == 1
        and isinstance(listing, str)
        and isinstance(filters, dict)
        and all(v is None or isinstance(v, str) for v in filters.values())
        and (after is None or isinstance(after, list))
    )
    if not well_formed:
        raise BadCursor("has a layout this gateway does not know (one of another version?)")
    return Page(listing, filters, after)


def _cursor_check(content: bytes) -> bytes:
    return hashlib.sha256(_CURSOR_SALT + content).digest()[:_CURSOR_CHECK_BYTES]


def _next(page: Page, more: bool, last: list[Any] | None) -> str | None:
    """The cursor of the page after this one (None when this one is the last): it goes on after ``last``, the
    position of this page's last row (or, for an empty page of ``?limit=0``, where this page started)."""
    if not more:
        return None
    content = json.dumps([1, page.listing, page.filters, last if last is not None else page.after])
    raw = _cursor_check(content.encode()) + content.encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _cursor_position(page: Page, read: Callable[[list[Any]], Any]) -> Any:
    """The cursor's position as ``read`` makes it, or 400 when it is not one this listing makes."""
    if page.after is None:
        return None
    try:
        return read(page.after)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        raise _bad_request("the cursor has a position this listing does not make", _CURSOR_FIX) from None


def _row_id(page: Page) -> int | None:
    """The id of the last row of the page before."""
    found: int | None = _cursor_position(page, _one_row_id)
    return found


def _one_row_id(at: list[Any]) -> int:
    (row,) = at
    if type(row) is not int or not 0 < row < 2**63:  # what a database column holds
        raise ValueError(row)
    return row


def _key_position(key: DocumentKey) -> list[str]:
    return [key.document_type.value, key.issuing_country, key.number]


async def list_permits(request: web.Request) -> web.Response:
    """``?type=`` (ImportAuthorization or IA...), ``?country=`` (the issuing country), ``?status=``, ``?limit=``;
    newest first, ``next`` the cursor of the page after."""
    query = request.query
    limit = _whole_number(query, "limit", 100, 500)
    given = {
        "type": _document_type(query["type"]).value if "type" in query else None,
        "country": query.get("country"),
        "status": _permit_state(query["status"]).value if "status" in query else None,
    }
    page = _page(request, "permits", given)
    after = _cursor_position(page, _permit_key)
    filters = page.filters
    records = await request.app[NODE].permits.find(
        document_type=_document_type(filters["type"]) if filters["type"] is not None else None,
        issuing_country=filters["country"],
        status=_permit_state(filters["status"]) if filters["status"] is not None else None,
        limit=limit + 1,
        after=after,
    )
    shown, more = records[:limit], len(records) > limit
    next_cursor = _next(page, more, _key_position(shown[-1].key) if shown else None)
    return web.json_response({"permits": [permit_json(r) for r in shown], "next": next_cursor})


async def get_permit(request: web.Request) -> web.Response:
    """A document's state, its lines with what remains on them, and the documents issued against it."""
    info = request.match_info
    key = DocumentKey(_document_type(info["type"]), info["country"], info["number"])
    detail = await request.app[NODE].permits.get(key)
    if detail is None:
        what = f"{key.document_type} {key.number} of {key.issuing_country}"
        fix = (
            f"GET {API}/permits?type={key.document_type.value}&country={quote(key.issuing_country, safe='')} lists "
            "the registry's documents of that type and country; the number is the one the document was issued "
            "under, and the registry holds only documents sent or received by this gateway"
        )
        return web.json_response({"error": f"no {what} in the permit registry", "fix": fix}, status=404)
    return web.json_response(permit_json(detail.permit) | {"against": [permit_json(r) for r in detail.against]})


async def overdue_endorsements(request: web.Request) -> web.Response:
    """Export authorizations whose validity ended more than ``?days=`` (default 10) days ago, not endorsed."""
    node = request.app[NODE]
    days = _whole_number(request.query, "days", OVERDUE_DAYS, 3650)
    limit = _whole_number(request.query, "limit", 500, 500)
    page = _page(request, "permits/overdue-endorsements", {"days": str(days) if "days" in request.query else None})
    after = _cursor_position(page, lambda at: (date.fromisoformat(at[0]), _permit_key(at[1:])))
    days = _whole_number({"days": page.filters["days"]}, "days", OVERDUE_DAYS, 3650)  # a cursor's is checked too
    as_of = node.clock.now().date()
    records = await node.permits.overdue_endorsements(as_of, days=days, limit=limit + 1, after=after)
    shown, more = records[:limit], len(records) > limit
    last = shown[-1] if shown else None
    position = [_iso(last.valid_until), *_key_position(last.key)] if last else None
    overdue = [
        permit_json(r) | {"days_since_validity_ended": (as_of - r.valid_until).days if r.valid_until else None}
        for r in shown
    ]
    body = {"as_of": as_of.isoformat(), "days": days, "permits": overdue, "next": _next(page, more, position)}
    return web.json_response(body)


# GET routes answer no HEAD (openapi.yaml describes none) but /health's, for probes that send HEAD
routes: list[web.RouteDef] = [
    web.post(f"{API}/documents", submit_document, expect_handler=expect_continue(_documents_limit)),
    web.get(f"{API}/messages", list_messages, allow_head=False),
    web.get(f"{API}/messages/{{message_id}}", get_message, allow_head=False),
    web.post(f"{API}/messages/{{message_id}}/retry", retry_message, expect_handler=expect_continue(_retry_limit)),
    web.get(f"{API}/messages/{{message_id}}/attachments/{{position:[0-9]+}}", get_attachment, allow_head=False),
    web.get(f"{API}/messages/{{message_id}}/receipt", get_receipt, allow_head=False),
    web.get(f"{API}/messages/{{message_id}}/wire", get_wire, allow_head=False),
    web.get(f"{API}/inbox", list_inbox, allow_head=False),
    web.get(f"{API}/inbox/{{message_id}}", fetch_inbox_message, allow_head=False),
    web.post(f"{API}/inbox/{{message_id}}/ack", ack_inbox_message, expect_handler=expect_continue(_no_body)),
    web.get(f"{API}/openapi.json", openapi, allow_head=False),
    web.get("/health", health),
    web.get("/ready", ready, allow_head=False),
    web.get("/metrics", metrics, allow_head=False),
    web.get(f"{API}/permits", list_permits, allow_head=False),
    web.get(f"{API}/permits/overdue-endorsements", overdue_endorsements, allow_head=False),
    web.get(f"{API}/permits/{{type}}/{{country}}/{{number:.+}}", get_permit, allow_head=False),
]
