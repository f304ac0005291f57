"""User messages: build (compress, sign, encrypt, package) and parse (unpackage, decrypt, verify, decompress).

Sans-IO: bytes and values in, bytes and events out. The clock, the ids, the keys and (for large parts) the
spool factory are arguments.
"""

from __future__ import annotations

import functools
import gzip
import io
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import BinaryIO

from cryptography import x509
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import mime, wss
from gateway.as4._ns import SoapVersion, q
from gateway.as4.algorithms import Suite
from gateway.as4.envelope import Incoming, new_draft, parse_envelope
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import PullRequestReceived, UserMessageReceived
from gateway.as4.header import (
    add_user_message,
    format_timestamp,
    parse_pull_request,
    parse_user_message,
    signal_kind,
)
from gateway.as4.mime import MimePart, Package, PartBody, Spool, cid_url, in_memory_spool
from gateway.as4.model import (
    CHARACTER_SET,
    COMPRESSION_TYPE,
    MIME_TYPE,
    PartInfo,
    Payload,
    Property,
    PullRequest,
    SignedReference,
    UserMessage,
)
from gateway.as4.policy import SUITES, KeyPair, SecurityPolicy
from gateway.as4.signals import Outgoing, StreamedOutgoing, verify_signal

GZIP_LEVEL = 6
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
"""Default cap on the decompressed payloads of one message, all together (gzip bombs); ``max_payload_bytes``
sets another (the 1 GiB target spools with a higher one)."""
MAX_GZIP_MEMBERS = 16
"""gzip members in one compressed part. Senders write one (Domibus, phase4 and Holodeck use one
GZIPOutputStream per payload); empty members inflate to nothing, so only a count stops a part made of them."""
_INFLATE_CHUNK = 1 << 20
BODY_CONTENT_ID = "soap-body"
UNDECLARED_MIME_TYPE = "application/octet-stream"
"""A received payload's type when its eb:PartInfo has no MimeType part property (optional for uncompressed
payloads): nothing signed says more."""
_DS_SIGNATURE, _XENC_ENCRYPTED_KEY = q(ns.DS, "Signature"), q(ns.XENC, "EncryptedKey")

PolicyLookup = Callable[[UserMessage], SecurityPolicy]
PullPolicyLookup = Callable[[PullRequest], SecurityPolicy]
OurKeys = Sequence[KeyPair] | Mapping[Suite, Sequence[KeyPair]]
"""Our decryption keys: one list, or one list per suite (a partner's message is opened only with the keys
of the suite its profile names)."""


def build_user_message(
    user_message: UserMessage,
    payloads: Sequence[Payload],
    *,
    sender: KeyPair,
    recipient_certificate: x509.Certificate,
    compress: bool = True,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> Outgoing:
    """Pack a user message as eDelivery AS4 1.15 requires: gzip, then sign, then encrypt every attachment.

    ``suite`` picks the algorithms: 1.15 (RSA) by default; the eDelivery AS4 2.0 suites (experimental) sign
    with Ed25519 or ECDSA P-256 and encrypt for an X25519 or EC P-256 ``recipient_certificate``.

    ``user_message.parts`` is replaced by one PartInfo per payload (MimeType, CharacterSet, CompressionType
    and the payload's extra properties). Raises ``ValueError`` for caller mistakes (duplicate Content-IDs).
    SOAP 1.1 exists for partners whose profile says so; AS4 and eDelivery use SOAP 1.2.
    """
    packed = _pack(user_message, payloads, sender, recipient_certificate, compress, soap_version, suite, None)
    return Outgoing(
        message_id=packed.message_id,
        content_type=packed.content_type,
        body=b"".join(mime.chunks_of(packed.pieces)),
        references=packed.references,
    )


def build_user_message_streamed(
    user_message: UserMessage,
    payloads: Sequence[Payload],
    *,
    sender: KeyPair,
    recipient_certificate: x509.Certificate,
    spool: Spool,
    compress: bool = True,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> StreamedOutgoing:
    """``build_user_message`` for large payloads: a payload given as ``file`` is compressed, digested and
    encrypted chunk by chunk into ``spool()`` files, and the body is read back piece by piece from them, so
    memory stays flat whatever the payload size. Payloads given as ``data`` are packed in memory as usual."""
    return _pack(user_message, payloads, sender, recipient_certificate, compress, soap_version, suite, spool)


def _pack(
    user_message: UserMessage,
    payloads: Sequence[Payload],
    sender: KeyPair,
    recipient_certificate: x509.Certificate,
    compress: bool,
    soap_version: SoapVersion,
    suite: Suite,
    spool: Spool | None,
) -> StreamedOutgoing:
    content_ids = [p.content_id for p in payloads]
    repeated = sorted({c for c in content_ids if content_ids.count(c) > 1})
    if repeated:
        raise ValueError(f"two payloads share the Content-ID {repeated[0]!r}")
    parts = [_attachment(p, compress, spool) for p in payloads]
    draft = new_draft(soap_version)
    add_user_message(draft.messaging, user_message, [_part_info(p, compress) for p in payloads])
    security = wss.security_header(draft.header, soap_version)
    targets = [wss.element_target(draft.body), wss.element_target(draft.messaging)]
    references = wss.sign(
        security, targets + [wss.attachment_target(p) for p in parts], sender, method=SUITES[suite].signature
    )
    encrypted = (
        wss.encrypt_attachments(security, parts, recipient_certificate, suite=suite, spool=spool) if parts else []
    )
    content_type, pieces = mime.build_pieces(
        draft.serialize(), encrypted, envelope_content_type=soap_version.content_type
    )
    return StreamedOutgoing(
        message_id=user_message.message_id, content_type=content_type, pieces=pieces, references=references
    )


def _attachment(payload: Payload, compress: bool, spool: Spool | None) -> MimePart:
    if payload.file is not None and spool is not None:
        return _streamed_attachment(payload, payload.file, compress, spool)
    data = payload.read()
    if compress:
        data = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        return MimePart.of(payload.content_id, ns.COMPRESSION_GZIP, data)
    return MimePart.of(payload.content_id, payload.mime_type, data)


def _streamed_attachment(payload: Payload, source: BinaryIO, compress: bool, spool: Spool) -> MimePart:
    """The payload file as a part: as it is, or gzipped chunk by chunk into a spool file (mtime 0, as in memory)."""
    source.seek(0, 2)
    size = source.tell()
    if not compress:
        return MimePart(
            content_id=payload.content_id, content_type=payload.mime_type, body=PartBody(file=source, size=size)
        )
    out = spool()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename="") as zipped:
        source.seek(0)
        while block := source.read(mime.CHUNK_SIZE):
            zipped.write(block)
    out.flush()
    return MimePart(
        content_id=payload.content_id, content_type=ns.COMPRESSION_GZIP, body=PartBody(file=out, size=out.tell())
    )


def _part_info(payload: Payload, compress: bool) -> PartInfo:
    return PartInfo(
        href=cid_url(payload.content_id),
        properties=(*_msh_properties(payload.mime_type, payload.character_set, compress), *payload.properties),
        schemas=payload.schemas,
        description=payload.description,
    )


@functools.lru_cache(maxsize=256)
def _msh_properties(mime_type: str, character_set: str | None, compress: bool) -> tuple[Property, ...]:
    """The part properties the MSH writes: MimeType, CharacterSet if given, CompressionType if compressed."""
    props = [Property(name=MIME_TYPE, value=mime_type)]
    if character_set:
        props.append(Property(name=CHARACTER_SET, value=character_set))
    if compress:
        props.append(Property(name=COMPRESSION_TYPE, value=ns.COMPRESSION_GZIP))
    return tuple(props)


# --- receiving -------------------------------------------------------------------------------------------


def parse_incoming(
    content_type: str,
    body: bytes | Package,
    *,
    policy_for: PolicyLookup,
    keys: OurKeys,
    now: datetime,
    spool: Spool = in_memory_spool,
    spool_threshold: int | None = None,
    max_payload_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> UserMessageReceived:
    """Unpack, decrypt and verify an incoming user message, or raise ``EbmsError`` saying exactly why not.

    ``policy_for`` picks the partner's policy from the (not yet trusted) header; it raises ``EbmsError``
    (EBMS:0010 or EBMS:0003) when no partner profile matches. A PullRequest is refused with EBMS:0010 here;
    ``parse_request`` accepts both. With ``spool_threshold`` set, parts (and payloads) larger than it live
    in ``spool()`` files instead of memory, and such payloads must be read with ``Payload.read()``/``file``.
    """
    event = parse_request(
        content_type,
        body,
        policy_for=policy_for,
        keys=keys,
        now=now,
        spool=spool,
        spool_threshold=spool_threshold,
        max_payload_bytes=max_payload_bytes,
    )
    assert isinstance(event, UserMessageReceived)
    return event


def parse_request(
    content_type: str,
    body: bytes | Package,
    *,
    policy_for: PolicyLookup,
    keys: OurKeys,
    now: datetime,
    pull_policy_for: PullPolicyLookup | None = None,
    spool: Spool = in_memory_spool,
    spool_threshold: int | None = None,
    max_payload_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> UserMessageReceived | PullRequestReceived:
    """A request arriving at our endpoint: a pushed user message, or (with ``pull_policy_for``) a PullRequest.

    ``body`` may be the raw HTTP body or a ``Package`` a streaming caller assembled with ``MimeReader`` /
    ``PackageAssembler``. Every refusal is an ``EbmsError``; nothing else escapes for bad input.
    """
    package = (
        body
        if isinstance(body, Package)
        else mime.parse(content_type, body, spool=spool, spool_threshold=spool_threshold)
    )
    incoming = parse_envelope(package.envelope)
    if incoming.kind == "UserMessage":
        user_message = parse_user_message(incoming.unit)
        try:
            policy = policy_for(user_message)
            return _open(
                incoming, package, user_message, policy, keys, now, spool, spool_threshold, max_payload_bytes
            )
        except EbmsError as exc:
            raise exc.with_ref(user_message.message_id) from None
    kind = signal_kind(incoming.unit)
    if kind == "PullRequest":
        pull = parse_pull_request(incoming.unit)
        if pull_policy_for is None:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"PullRequest for MPC {pull.mpc!r}: this endpoint serves no pull P-Mode (push only)",
                ref_to_message_id=pull.message_id,
            )
        try:
            return _open_pull(incoming, package, pull, pull_policy_for(pull), now)
        except EbmsError as exc:
            raise exc.with_ref(pull.message_id) from None
    if kind:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            f"a {kind} signal arrived as a request; this gateway takes receipts and errors only on the HTTP "
            "response (PMode[1].Security.SendReceipt.ReplyPattern = Response)",
        )
    others = [etree.QName(c).text for c in incoming.unit.iterchildren(etree.Element)]
    unknown = [name for name in others if not name.startswith(f"{{{ns.EB}}}")]
    if unknown:
        raise EbmsError(
            EbmsCode.VALUE_NOT_RECOGNIZED, f"the SignalMessage carries {unknown[0]}, an unknown signal"
        )
    raise EbmsError(EbmsCode.INVALID_HEADER, "the SignalMessage holds no Receipt, Error or PullRequest")


def check_clock(timestamp: datetime, policy: SecurityPolicy, now: datetime, what: str = "eb:Timestamp") -> None:
    """EBMS:0003 for a timestamp beyond the clock skew in the future, or older than ``policy.max_age``."""
    if timestamp > now + policy.clock_skew:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"{what} {format_timestamp(timestamp)} lies in the future beyond the allowed clock skew of "
            f"{policy.clock_skew} (receiver time {format_timestamp(now)})",
        )
    if policy.max_age is not None and timestamp < now - policy.max_age:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"{what} {format_timestamp(timestamp)} is older than the maximum message age (duplicate-detection window) of "
            f"{policy.max_age} (receiver time {format_timestamp(now)})",
        )


def _check_soap_version(incoming: Incoming, package: Package, policy: SecurityPolicy) -> None:
    version = incoming.soap_version
    if package.envelope_content_type != version.content_type:  # RFC 3902 for 1.2, text/xml for 1.1
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY,
            f"the envelope is {version.label} but is sent as {package.envelope_content_type}; a {version.label} "
            f"envelope is sent as {version.content_type} (the HTTP Content-Type, or the root MIME part's)",
        )
    if version is SoapVersion.SOAP11 and not policy.accept_soap11:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            "the message is SOAP 1.1; the partner profile expects SOAP 1.2 (PMode[1].Protocol.SOAPVersion)",
        )


def _open(
    incoming: Incoming,
    package: Package,
    user_message: UserMessage,
    policy: SecurityPolicy,
    keys: OurKeys,
    now: datetime,
    spool: Spool,
    spool_threshold: int | None,
    max_payload_bytes: int,
) -> UserMessageReceived:
    _check_soap_version(incoming, package, policy)
    check_clock(user_message.timestamp, policy, now)
    ids = wss.index_ids(incoming.root)
    security = wss.find_security(incoming.header, incoming.soap_version)
    signed = security is not None and next(security.iterchildren(_DS_SIGNATURE), None) is not None
    if policy.require_signature and not signed:
        wss.the_signature(security)  # raises EBMS:0103 "not signed" before anything else is looked at
    ours = keys.get(policy.suite, ()) if isinstance(keys, Mapping) else keys
    if not ours and security is not None and next(security.iterchildren(_XENC_ENCRYPTED_KEY), None) is not None:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"the receiving gateway holds no {policy.suite.value} key, the suite agreed with the sender; "
            "it cannot decrypt until its administrator adds one",
            fault="Receiver",  # ours to fix: the same message goes through once the key is there
        )
    wss.check_encryption(security, package.attachments, policy)
    authenticated = wss.authenticate(security, ids, policy, now) if signed or policy.require_signature else None
    plain = wss.decrypt_attachments(security, package.attachments, ours, policy, ids, spool=spool)
    references: tuple[SignedReference, ...] = ()
    signer = ""
    if authenticated is not None:
        expected = {"eb:Messaging": incoming.messaging, "the SOAP Body": incoming.body}
        verified = wss.check_references(authenticated, ids, expected, plain, policy)
        references, signer = verified.references, wss.fingerprint(verified.certificate)
    payloads = _payloads(user_message, plain, incoming.body, policy, spool, spool_threshold, max_payload_bytes)
    return UserMessageReceived(
        user_message=user_message,
        payloads=payloads,
        references=references,
        signer_certificate_sha256=signer,
        soap_version=incoming.soap_version,
    )


def _open_pull(
    incoming: Incoming, package: Package, pull: PullRequest, policy: SecurityPolicy, now: datetime
) -> PullRequestReceived:
    _check_soap_version(incoming, package, policy)
    check_clock(pull.timestamp, policy, now)
    if package.attachments:
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY, f"a PullRequest carries {len(package.attachments)} MIME attachments"
        )
    if next(incoming.body.iterchildren(etree.Element), None) is not None:
        raise EbmsError(EbmsCode.VALUE_INCONSISTENT, "a PullRequest must have an empty SOAP Body")
    security = wss.find_security(incoming.header, incoming.soap_version)
    signed = security is not None and security.find(q(ns.DS, "Signature")) is not None
    references: tuple[SignedReference, ...] = ()
    signer = ""
    if signed or policy.require_signature:
        verified = verify_signal(incoming, policy, now)
        references, signer = verified.references, wss.fingerprint(verified.certificate)
    return PullRequestReceived(
        mpc=pull.mpc,
        message_id=pull.message_id,
        timestamp=pull.timestamp,
        references=references,
        signer_certificate_sha256=signer,
        soap_version=incoming.soap_version,
    )


def _payloads(
    user_message: UserMessage,
    parts: dict[str, MimePart],
    body: etree._Element,
    policy: SecurityPolicy,
    spool: Spool,
    spool_threshold: int | None,
    max_payload_bytes: int,
) -> tuple[Payload, ...]:
    named: list[str] = []
    body_parts = 0
    for info in user_message.parts:
        if info.href is None:
            body_parts += 1
            continue
        cid = info.content_id
        if cid is None:
            raise EbmsError(
                EbmsCode.EXTERNAL_PAYLOAD_ERROR,
                f"eb:PartInfo href {info.href!r} is not a cid: reference to a MIME part of this message; "
                "external payloads are not supported",
            )
        if cid in named:
            raise EbmsError(EbmsCode.VALUE_INCONSISTENT, f"two eb:PartInfo elements refer to {info.href!r}")
        named.append(cid)
    if body_parts > 1:
        raise EbmsError(EbmsCode.VALUE_INCONSISTENT, f"{body_parts} eb:PartInfo elements refer to the SOAP Body")
    unnamed = sorted(set(parts) - set(named))
    if unnamed:
        raise EbmsError(EbmsCode.MIME_INCONSISTENCY, f"MIME part <{unnamed[0]}> has no eb:PartInfo")
    body_children = list(body.iterchildren(etree.Element))
    if body_children and not body_parts:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the SOAP Body carries {etree.QName(body_children[0]).text}, but no eb:PartInfo refers to the Body",
        )
    payloads: list[Payload] = []
    agreed = policy.max_payload_bytes  # for each payload
    budget = max_payload_bytes  # for all payloads together: a hundred small bombs are one big one
    for info in user_message.parts:
        allowed = budget if agreed is None else min(budget, agreed)
        try:
            payload = _payload(info, parts, body_children, policy, spool, spool_threshold, allowed)
        except _InflateLimit:
            if allowed == agreed:
                raise _over_agreed(info, agreed, "more") from None
            raise
        if agreed is not None and payload.size > agreed:
            raise _over_agreed(info, agreed, f"{payload.size} bytes")
        budget -= payload.size
        payloads.append(payload)
    return tuple(payloads)


def _over_agreed(info: PartInfo, agreed: int, found: str) -> EbmsError:
    return EbmsError(
        EbmsCode.PROCESSING_MODE_MISMATCH,
        f"payload {info.href or 'in the SOAP Body'} carries {found} (decompressed); the partner profile allows "
        f"at most {agreed} bytes per payload (max_payload_bytes)",
    )


def _payload(
    info: PartInfo,
    parts: dict[str, MimePart],
    body_children: list[etree._Element],
    policy: SecurityPolicy,
    spool: Spool,
    spool_threshold: int | None,
    max_payload_bytes: int,
) -> Payload:
    mime_type = info.get_property(MIME_TYPE)
    extra = tuple(p for p in info.properties if p.name not in (MIME_TYPE, CHARACTER_SET, COMPRESSION_TYPE))
    if info.href is None:
        if len(body_children) != 1:
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"an eb:PartInfo without href names the SOAP Body, which has {len(body_children)} child elements "
                "(exactly one expected)",
            )
        if body_children[0].tag == q(ns.XENC, "EncryptedData"):
            raise EbmsError(
                EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
                "an encrypted SOAP Body payload is not supported; eDelivery sends payloads as MIME parts",
            )
        if policy.require_encryption:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                "the payload in the SOAP Body is not encrypted; the partner profile requires encryption of every "
                "payload",
            )
        data = etree.tostring(body_children[0], encoding="UTF-8")
        return _make_payload(info, BODY_CONTENT_ID, mime_type or "application/xml", data, None, extra)
    cid = info.content_id
    assert cid is not None
    part = parts.get(cid)
    if part is None:
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY, f"eb:PartInfo href {info.href!r} names no MIME part of this message"
        )
    compression = info.get_property(COMPRESSION_TYPE)
    content: PartBody = part.body
    if compression is not None:
        if mime_type is None:
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"eb:PartInfo {info.href!r} is compressed but has no MimeType part property (AS4 section 3.1)",
            )
        content = _gunzip(part.body, cid, compression, max_payload_bytes, spool, spool_threshold)
    _check_digest_form(info, part, ns.COMPRESSION_GZIP if compression is not None else mime_type)
    # only the signed eb:PartInfo names the type: the part's Content-Type and xenc:EncryptedData/@MimeType are
    # outside every signature, and an attacker's text/html must not reach the national system or a browser
    declared = mime_type or UNDECLARED_MIME_TYPE
    if content.spooled:
        assert content.file is not None
        content.file.seek(0)
        return _make_payload(info, cid, declared, b"", content.file, extra, size=content.size)
    return _make_payload(info, cid, declared, content.read(), None, extra)


def _check_digest_form(info: PartInfo, part: MimePart, signed_type: str | None) -> None:
    """EBMS:0003 when the part's unsigned type made the signature digest canonicalize its content (as XML, or
    its line ends as text) while the signed MimeType (application/gzip when compressed) does not call for that:
    the bytes delivered could then differ from the bytes signed. Octets as they are always agree."""
    form = wss.digest_form(part.content_type)
    if form == "octets" or signed_type is None or wss.digest_form(signed_type) == form:
        return
    raise EbmsError(
        EbmsCode.VALUE_INCONSISTENT,
        f"eb:PartInfo {info.href!r} declares {signed_type!r} (its MimeType part property, or CompressionType), "
        f"but the part is typed {(mime.type_and_charset(part.content_type) or part.content_type)!r} (its "
        "Content-Type, or xenc:EncryptedData/@MimeType when encrypted), which the Attachment-Content-Signature-"
        f"Transform reads as {form} (SwA profile 1.1 section 5.4.2): send the part with the type of its "
        "MimeType part property (application/gzip when compressed)",
    )


def _make_payload(
    info: PartInfo,
    content_id: str,
    mime_type: str,
    data: bytes,
    file: BinaryIO | None,
    extra: tuple[Property, ...],
    *,
    size: int = -1,
) -> Payload:
    try:
        return Payload(
            content_id=content_id,
            mime_type=mime_type,
            data=data,
            file=file,
            size=size,
            character_set=info.get_property(CHARACTER_SET),
            properties=extra,
            schemas=info.schemas,
            description=info.description,
        )
    except ValueError as exc:
        raise EbmsError(EbmsCode.VALUE_INCONSISTENT, f"eb:PartInfo {info.href!r}: {exc}") from None


def _gunzip(
    body: PartBody, cid: str, compression: str, limit: int, spool: Spool, threshold: int | None
) -> PartBody:
    """Inflate a gzip part (up to ``MAX_GZIP_MEMBERS`` members); EBMS:0303 for bad data, too many members or
    more than ``limit`` bytes. What inflates beyond ``threshold`` goes to a ``spool()`` file, chunk by chunk,
    however small the part: a 64 KiB part may inflate to 64 MiB."""
    if compression != ns.COMPRESSION_GZIP:
        raise EbmsError(
            EbmsCode.DECOMPRESSION_FAILURE,
            f"part <{cid}> has CompressionType {compression!r}; only {ns.COMPRESSION_GZIP} is supported",
        )
    limit = max(limit, 0)  # zlib reads a max_length of 0 as "no limit": never pass it one
    if not body.spooled:
        in_memory = limit if threshold is None else min(limit, max(threshold, 0))
        try:
            return PartBody.of(_gunzip_bytes(body.buffer(), cid, in_memory))
        except _InflateLimit:
            if in_memory == limit:
                raise
        # inflated again into the spool from the start: at most ``threshold`` bytes twice, simpler than
        # handing the inflater and its members over
    out = spool()
    total = _inflate_members(body.chunks(), out, cid, limit)
    out.flush()
    return PartBody(file=out, size=total)


def _gunzip_bytes(data: bytes | memoryview, cid: str, limit: int) -> bytes:
    """Inflate in memory. The first member (senders write one) in one call: the gzip trailer's ISIZE sizes the
    output buffer (one allocation, no regrowth); it is only a hint: a wrong one costs more calls, never a wrong
    or a bigger result (zlib checks ISIZE). Further members go window by window, as a spooled part does."""
    view = memoryview(data)
    hint = int.from_bytes(view[-4:], "little") if len(view) >= 18 else limit
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(view, min(hint, limit) + 1)
        while not inflater.eof and len(out) <= limit:
            more = inflater.decompress(inflater.unconsumed_tail, limit - len(out) + 1)
            if not more:
                break
            out += more
    except zlib.error as exc:
        raise _not_gzip(cid, exc) from None
    if len(out) > limit:
        raise _bomb(cid, limit)
    if not inflater.eof:
        raise _truncated(cid)
    if not inflater.unused_data:
        return out
    # zlib copies all that follows a member into unused_data: windows keep each copy to one window
    start = len(view) - len(inflater.unused_data)
    windows = (view[i : i + _INFLATE_CHUNK] for i in range(start, len(view), _INFLATE_CHUNK))
    sink = io.BytesIO()
    sink.write(out)
    _inflate_members(windows, sink, cid, limit, total=len(out), members=1)
    return sink.getvalue()


def _inflate_members(
    chunks: Iterable[bytes | memoryview], out: BinaryIO, cid: str, limit: int, *, total: int = 0, members: int = 0
) -> int:
    """Inflate the gzip members in ``chunks`` into ``out``, counting on from ``members`` members and ``total``
    bytes already inflated; the bytes inflated in all."""
    inflater = zlib.decompressobj(wbits=31)
    members += 1
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if inflater.eof:
                    members += 1
                    if members > MAX_GZIP_MEMBERS:
                        raise _too_many_members(cid)
                    inflater = zlib.decompressobj(wbits=31)
                total = _write(out, inflater.decompress(data, _INFLATE_CHUNK), total, cid, limit)
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        total = _write(out, inflater.flush(), total, cid, limit)
    except zlib.error as exc:
        raise _not_gzip(cid, exc) from None
    if not inflater.eof:
        raise _truncated(cid)
    return total


def _write(out: BinaryIO, piece: bytes, total: int, cid: str, limit: int) -> int:
    total += len(piece)
    if total > limit:
        raise _bomb(cid, limit)
    out.write(piece)
    return total


class _InflateLimit(EbmsError):
    """A part inflated past the bytes it was allowed (``_payloads`` tells the partner's limit from the cap)."""


def _bomb(cid: str, limit: int) -> EbmsError:
    return _InflateLimit(
        EbmsCode.DECOMPRESSION_FAILURE, f"part <{cid}> inflates beyond the limit of {limit} bytes (gzip bomb?)"
    )


def _not_gzip(cid: str, exc: zlib.error) -> EbmsError:
    return EbmsError(EbmsCode.DECOMPRESSION_FAILURE, f"part <{cid}> is not valid gzip: {exc}")


def _truncated(cid: str) -> EbmsError:
    return EbmsError(EbmsCode.DECOMPRESSION_FAILURE, f"part <{cid}> is a truncated gzip stream")


def _too_many_members(cid: str) -> EbmsError:
    return EbmsError(
        EbmsCode.DECOMPRESSION_FAILURE,
        f"part <{cid}> holds more than {MAX_GZIP_MEMBERS} gzip members (the limit); compress each payload as one "
        "gzip stream",
    )
