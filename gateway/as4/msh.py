"""User messages: build (compress, sign, encrypt, package) and parse (unpackage, decrypt, verify, decompress).

Sans-IO: bytes and values in, bytes and events out. The clock, the ids and the keys are arguments.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import mime, wss
from gateway.as4.envelope import Incoming, new_draft, parse_envelope
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import UserMessageReceived
from gateway.as4.header import add_user_message, parse_user_message
from gateway.as4.mime import MimePart
from gateway.as4.model import PartInfo, Payload, Property, UserMessage
from gateway.as4.policy import KeyPair, SecurityPolicy
from gateway.as4.signals import Outgoing

GZIP_LEVEL = 6
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024


def build_user_message(
    user_message: UserMessage,
    payloads: Sequence[Payload],
    *,
    sender: KeyPair,
    recipient_certificate: x509.Certificate,
    compress: bool = True,
) -> Outgoing:
    """Pack a user message as eDelivery AS4 1.15 requires: gzip, then sign, then encrypt every attachment."""
    parts = [_attachment(p, compress) for p in payloads]
    user_message = dataclasses.replace(user_message, parts=tuple(_part_info(p, compress) for p in payloads))
    draft = new_draft()
    add_user_message(draft.messaging, user_message)
    security = wss.security_header(draft.header)
    targets = [wss.element_target(draft.body), wss.element_target(draft.messaging)]
    references = wss.sign(security, targets + [wss.attachment_target(p) for p in parts], sender)
    encrypted = wss.encrypt_attachments(security, parts, recipient_certificate) if parts else []
    content_type, body = mime.build(draft.serialize(), encrypted)
    return Outgoing(
        message_id=user_message.message_id, content_type=content_type, body=body, references=references
    )


def _attachment(payload: Payload, compress: bool) -> MimePart:
    if compress:
        data = gzip.compress(payload.data, compresslevel=GZIP_LEVEL, mtime=0)
        return MimePart(content_id=payload.content_id, content_type=ns.COMPRESSION_GZIP, data=data)
    return MimePart(content_id=payload.content_id, content_type=payload.mime_type, data=payload.data)


def _part_info(payload: Payload, compress: bool) -> PartInfo:
    props = [Property(name="MimeType", value=payload.mime_type)]
    if payload.character_set:
        props.append(Property(name="CharacterSet", value=payload.character_set))
    if compress:
        props.append(Property(name="CompressionType", value=ns.COMPRESSION_GZIP))
    return PartInfo(href=f"cid:{payload.content_id}", properties=tuple(props))


PolicyLookup = Callable[[UserMessage], SecurityPolicy]


def parse_incoming(
    content_type: str,
    body: bytes,
    *,
    policy_for: PolicyLookup,
    keys: Sequence[KeyPair],
    now: datetime,
) -> UserMessageReceived:
    """Unpack, decrypt and verify an incoming user message, or raise ``EbmsError`` saying exactly why not.

    ``policy_for`` picks the partner's policy from the (not yet trusted) header; it raises ``EbmsError``
    (EBMS:0010 or EBMS:0003) when no partner profile matches.
    """
    package = mime.parse(content_type, body)
    incoming = parse_envelope(package.envelope)
    if incoming.kind != "UserMessage":
        raise EbmsError(EbmsCode.VALUE_NOT_RECOGNIZED, f"expected a UserMessage, got a {incoming.kind}")
    user_message = parse_user_message(incoming.unit)
    try:
        return _open(incoming, package, user_message, policy_for(user_message), keys, now)
    except EbmsError as exc:
        raise exc.with_ref(user_message.message_id) from None


def _open(
    incoming: Incoming,
    package: mime.Package,
    user_message: UserMessage,
    policy: SecurityPolicy,
    keys: Sequence[KeyPair],
    now: datetime,
) -> UserMessageReceived:
    if user_message.timestamp > now + policy.clock_skew:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"eb:Timestamp {user_message.timestamp.isoformat()} lies in the future beyond the allowed clock skew "
            f"of {policy.clock_skew}",
        )
    ids = wss.index_ids(incoming.root)
    security = wss.find_security(incoming.header)
    plain = wss.decrypt_attachments(security, package.attachments, keys, policy, ids)
    expected = {"eb:Messaging": incoming.messaging, "the SOAP Body": incoming.body}
    verified = wss.verify(security, ids, expected, plain, policy, now)
    payloads = _payloads(user_message, plain, incoming.body)
    return UserMessageReceived(
        user_message=user_message,
        payloads=payloads,
        references=verified.references,
        signer_certificate_sha256=wss.fingerprint(verified.certificate),
    )


def _payloads(user_message: UserMessage, parts: dict[str, MimePart], body: etree._Element) -> tuple[Payload, ...]:
    named = {p.content_id for p in user_message.parts if p.content_id}
    unnamed = sorted(set(parts) - named)
    if unnamed:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"MIME part <{unnamed[0]}> has no eb:PartInfo")
    return tuple(_payload(info, parts, body) for info in user_message.parts)


def _payload(info: PartInfo, parts: dict[str, MimePart], body: etree._Element) -> Payload:
    mime_type = info.get_property("MimeType")
    if info.href is None:
        children = list(body.iterchildren(etree.Element))
        if len(children) != 1:
            raise EbmsError(EbmsCode.VALUE_INCONSISTENT, "a PartInfo without href needs exactly one Body child")
        data = etree.tostring(children[0], encoding="UTF-8")
        return Payload(content_id="soap-body", mime_type=mime_type or "application/xml", data=data)
    cid = info.content_id
    if cid is None or cid not in parts:
        raise EbmsError(EbmsCode.EXTERNAL_PAYLOAD_ERROR, f"eb:PartInfo href {info.href!r} names no MIME part")
    part = parts[cid]
    data = part.data
    if info.get_property("CompressionType") is not None:
        data = _gunzip(data, cid, info.get_property("CompressionType"))
    return Payload(
        content_id=cid,
        mime_type=mime_type or part.content_type,
        data=data,
        character_set=info.get_property("CharacterSet"),
    )


def _gunzip(data: bytes, cid: str, compression: str | None) -> bytes:
    if compression != ns.COMPRESSION_GZIP:
        raise EbmsError(
            EbmsCode.DECOMPRESSION_FAILURE,
            f"part <{cid}> has CompressionType {compression!r}; only application/gzip is supported",
        )
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    except zlib.error as exc:
        raise EbmsError(EbmsCode.DECOMPRESSION_FAILURE, f"part <{cid}> is not valid gzip: {exc}") from None
    if inflater.unconsumed_tail:
        raise EbmsError(
            EbmsCode.DECOMPRESSION_FAILURE,
            f"part <{cid}> inflates beyond the limit of {MAX_DECOMPRESSED_BYTES} bytes",
        )
    if not inflater.eof:
        raise EbmsError(EbmsCode.DECOMPRESSION_FAILURE, f"part <{cid}> is a truncated gzip stream")
    return out
