"""SOAP-with-Attachments packaging: a ``multipart/related`` body with the SOAP envelope as its root part."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser

from gateway.as4.errors import EbmsCode, EbmsError

SOAP12_CONTENT_TYPE = "application/soap+xml"
MAX_PARTS = 100
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class MimePart:
    content_id: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """What went over (or comes from) the wire: the SOAP envelope and its attachments by Content-ID."""

    envelope: bytes = field(repr=False)
    attachments: dict[str, MimePart] = field(default_factory=dict)


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    msg = Message()
    msg["content-type"] = header
    params = {k.lower(): v for k, v in msg.get_params(failobj=[])[1:] if isinstance(v, str)}
    return msg.get_content_type(), params


def build(envelope: bytes, attachments: list[MimePart]) -> tuple[str, bytes]:
    """The HTTP Content-Type and body for an envelope; plain SOAP when there is nothing to attach."""
    if not attachments:
        return f'{SOAP12_CONTENT_TYPE}; charset="UTF-8"', envelope
    boundary = f"MIMEBoundary_{secrets.token_hex(16)}"
    root_id = f"root.{secrets.token_hex(8)}@permit-gateway"
    chunks = [
        _part_head(boundary, f'{SOAP12_CONTENT_TYPE}; charset="UTF-8"', root_id),
        envelope,
    ]
    for part in attachments:
        chunks += [_CRLF, _part_head(boundary, part.content_type, part.content_id), part.data]
    chunks.append(_CRLF + f"--{boundary}--".encode() + _CRLF)
    content_type = f'multipart/related; boundary="{boundary}"; type="{SOAP12_CONTENT_TYPE}"; start="<{root_id}>"'
    return content_type, b"".join(chunks)


def _part_head(boundary: str, content_type: str, content_id: str) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: <{content_id}>\r\n\r\n"
    ).encode()


def parse(content_type: str, body: bytes) -> Package:
    """Split an incoming body into envelope and attachments; EBMS:0007 says what is inconsistent."""
    media_type, params = parse_content_type(content_type)
    if media_type in (SOAP12_CONTENT_TYPE, "text/xml"):
        return Package(envelope=body)
    if media_type != "multipart/related":
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY,
            f"Content-Type {media_type!r} is neither application/soap+xml nor multipart/related",
        )
    boundary = params.get("boundary")
    if not boundary:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "multipart/related Content-Type has no boundary parameter")
    parts = [_parse_part(raw) for raw in _split(body, boundary.encode())]
    return _assemble(parts, params.get("start"))


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    pieces: list[bytes] = []
    last_end: int | None = None
    closed = False
    for match in delimiter.finditer(body):
        if last_end is not None:
            pieces.append(body[last_end : match.start()])
        last_end = match.end()
        if match.group(1):
            closed = True
            break
    if last_end is None:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "body contains no MIME boundary delimiter")
    if not closed:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "multipart body has no closing boundary delimiter")
    if not pieces:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "multipart body has no parts")
    if len(pieces) > MAX_PARTS:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"{len(pieces)} MIME parts exceed the limit of {MAX_PARTS}")
    return pieces


def _parse_part(raw: bytes) -> MimePart:
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "MIME part has no blank line between headers and content")
    headers = BytesHeaderParser().parsebytes(raw[: match.start()] + b"\r\n\r\n")
    data = raw[match.end() :]
    encoding = (headers.get("Content-Transfer-Encoding") or "binary").strip().lower()
    if encoding == "base64":
        try:
            data = base64.b64decode(data, validate=False)
        except binascii.Error:
            raise EbmsError(EbmsCode.MIME_INCONSISTENCY, "MIME part declared base64 is not valid base64") from None
    elif encoding not in ("binary", "8bit", "7bit"):
        raise EbmsError(
            EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING, f"Content-Transfer-Encoding {encoding!r} is not supported"
        )
    content_id = (headers.get("Content-ID") or "").strip().removeprefix("<").removesuffix(">")
    return MimePart(content_id=content_id, content_type=headers.get("Content-Type") or "", data=data)


def _assemble(parts: list[MimePart], start: str | None) -> Package:
    start_id = start.strip().removeprefix("<").removesuffix(">") if start else None
    root_index = 0
    if start_id:
        matches = [i for i, p in enumerate(parts) if p.content_id == start_id]
        if not matches:
            raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"start parameter <{start_id}> names no MIME part")
        root_index = matches[0]
    attachments: dict[str, MimePart] = {}
    for i, part in enumerate(parts):
        if i == root_index:
            continue
        if not part.content_id:
            raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"MIME part {i + 1} has no Content-ID")
        if part.content_id in attachments:
            raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"Content-ID <{part.content_id}> appears twice")
        attachments[part.content_id] = part
    return Package(envelope=parts[root_index].data, attachments=attachments)
