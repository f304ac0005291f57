"""Signal messages: non-repudiation receipts and ebMS error signals, built, signed, parsed and checked."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import mime, wss
from gateway.as4._ns import q
from gateway.as4.envelope import Incoming, new_draft, parse_envelope
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import ErrorReceived, ReceiptReceived
from gateway.as4.header import add_message_info, parse_message_info
from gateway.as4.model import ErrorDetail, SignedReference
from gateway.as4.policy import KeyPair, SecurityPolicy
from gateway.xmlsafe import parse_xml


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes ready for HTTP: the Content-Type, the body, and what we signed (to check the receipt against)."""

    message_id: str
    content_type: str
    body: bytes = field(repr=False)
    references: tuple[SignedReference, ...] = ()
    http_status: int = 200


def build_receipt(
    ref_to_message_id: str,
    references: Sequence[SignedReference],
    *,
    key: KeyPair,
    message_id: str,
    now: datetime,
) -> Outgoing:
    """A signed receipt whose NRI holds a copy of every ds:Reference of the received message's signature."""
    draft = new_draft()
    signal = etree.SubElement(draft.messaging, q(ns.EB, "SignalMessage"))
    add_message_info(signal, message_id=message_id, timestamp=now, ref_to=ref_to_message_id)
    receipt = etree.SubElement(signal, q(ns.EB, "Receipt"))
    nri = etree.SubElement(receipt, q(ns.EBBP, "NonRepudiationInformation"), nsmap={"ebbp": ns.EBBP})
    for reference in references:
        part = etree.SubElement(nri, q(ns.EBBP, "MessagePartNRInformation"))
        part.append(parse_xml(reference.xml, what="stored ds:Reference"))
    _sign_signal(draft.header, draft.messaging, draft.body, key)
    content_type, body = mime.build(draft.serialize(), [])
    return Outgoing(message_id=message_id, content_type=content_type, body=body)


def build_error_signal(error: EbmsError, *, key: KeyPair | None, message_id: str, now: datetime) -> Outgoing:
    """An ebMS error signal (with a SOAP Fault in the Body, as Domibus expects), signed when we have a key."""
    draft = new_draft()
    signal = etree.SubElement(draft.messaging, q(ns.EB, "SignalMessage"))
    add_message_info(signal, message_id=message_id, timestamp=now, ref_to=error.ref_to_message_id)
    attrs = {
        "category": error.code.category,
        "errorCode": error.code.code,
        "origin": "ebMS" if not error.code.code.startswith("EBMS:01") else "security",
        "severity": error.code.severity,
        "shortDescription": error.code.short_description,
    }
    if error.ref_to_message_id:
        attrs["refToMessageInError"] = error.ref_to_message_id
    error_el = etree.SubElement(signal, q(ns.EB, "Error"), attrs)
    description = etree.SubElement(error_el, q(ns.EB, "Description"), {q(ns.XML, "lang"): "en"})
    description.text = error.detail
    etree.SubElement(error_el, q(ns.EB, "ErrorDetail")).text = error.detail
    sender_fault = error.code not in (EbmsCode.OTHER, EbmsCode.DELIVERY_FAILURE)
    _add_fault(draft.body, error, sender_fault)
    if key is not None:
        _sign_signal(draft.header, draft.messaging, draft.body, key)
    content_type, body = mime.build(draft.serialize(), [])
    status = 400 if sender_fault else 500
    return Outgoing(message_id=message_id, content_type=content_type, body=body, http_status=status)


def _add_fault(body: etree._Element, error: EbmsError, sender_fault: bool) -> None:
    fault = etree.SubElement(body, q(ns.S12, "Fault"))
    code = etree.SubElement(fault, q(ns.S12, "Code"))
    etree.SubElement(code, q(ns.S12, "Value")).text = "env:Sender" if sender_fault else "env:Receiver"
    reason = etree.SubElement(fault, q(ns.S12, "Reason"))
    text = etree.SubElement(reason, q(ns.S12, "Text"), {q(ns.XML, "lang"): "en"})
    text.text = f"{error.code.code} {error.code.short_description}: {error.detail}"


def _sign_signal(header: etree._Element, messaging: etree._Element, body: etree._Element, key: KeyPair) -> None:
    security = wss.security_header(header)
    wss.sign(security, [wss.element_target(body), wss.element_target(messaging)], key)


# --- parsing the answer to a message we sent ----------------------------------------------------------


def parse_response(
    content_type: str,
    body: bytes,
    *,
    sent: Outgoing,
    policy: SecurityPolicy,
    now: datetime,
) -> ReceiptReceived | ErrorReceived:
    """Check the partner's synchronous answer: a valid receipt for ``sent``, or an error signal.

    Anything wrong with a receipt is EBMS:0302 InvalidReceipt naming the cause; the message stays unacknowledged.
    """
    try:
        incoming = parse_envelope(mime.parse(content_type, body).envelope)
    except EbmsError as exc:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the response is not an ebMS signal: {exc.detail}") from None
    if incoming.kind != "SignalMessage":
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the response carries a {incoming.kind}, not a SignalMessage")
    message_id, timestamp, ref_to = parse_message_info(incoming.unit)
    if incoming.unit.find(q(ns.EB, "Error")) is not None:
        return _error_received(incoming, message_id, ref_to, body, policy, now)
    if incoming.unit.find(q(ns.EB, "Receipt")) is None:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, "the SignalMessage holds neither a Receipt nor an Error")
    try:
        _check_receipt(incoming, ref_to, sent, policy, now)
    except EbmsError as exc:
        if exc.code is EbmsCode.INVALID_RECEIPT:
            raise
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"{exc.code.code}: {exc.detail}") from None
    assert ref_to is not None
    return ReceiptReceived(message_id=message_id, ref_to_message_id=ref_to, timestamp=timestamp, evidence=body)


def _verify_signal(incoming: Incoming, policy: SecurityPolicy, now: datetime) -> wss.Verified:
    ids = wss.index_ids(incoming.root)
    security = wss.find_security(incoming.header)
    expected = {"eb:Messaging": incoming.messaging, "the SOAP Body": incoming.body}
    signal_policy = dataclasses.replace(policy, require_encryption=False)
    return wss.verify(security, ids, expected, {}, signal_policy, now)


def _check_receipt(
    incoming: Incoming, ref_to: str | None, sent: Outgoing, policy: SecurityPolicy, now: datetime
) -> None:
    if ref_to != sent.message_id:
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            f"receipt RefToMessageId {ref_to!r} is not the message sent ({sent.message_id!r})",
        )
    _verify_signal(incoming, policy, now)
    received = _nri_digests(incoming.unit)
    expected = {r.uri: r.digest_value for r in sent.references}
    for uri, digest in expected.items():
        if uri not in received:
            raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the receipt's NRI has no reference for {uri!r}")
        if received[uri] != digest:
            raise EbmsError(
                EbmsCode.INVALID_RECEIPT,
                f"the receipt's digest for {uri!r} is {received[uri]!r}; we signed {digest!r}",
            )
    extra = sorted(set(received) - set(expected))
    if extra:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the receipt's NRI names {extra[0]!r}, which we did not send")


def _nri_digests(unit: etree._Element) -> dict[str, str]:
    path = "eb:Receipt/ebbp:NonRepudiationInformation/ebbp:MessagePartNRInformation/ds:Reference"
    refs = unit.findall(path, {"eb": ns.EB, "ebbp": ns.EBBP, "ds": ns.DS})
    if not refs:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, "the receipt has no ebbp:NonRepudiationInformation references")
    return {(r.get("URI") or ""): (r.findtext(q(ns.DS, "DigestValue")) or "").strip() for r in refs}


def _error_received(
    incoming: Incoming, message_id: str, ref_to: str | None, evidence: bytes, policy: SecurityPolicy, now: datetime
) -> ErrorReceived:
    signed = wss.find_security(incoming.header) is not None
    if signed:
        _verify_signal(incoming, policy, now)
    errors = tuple(_error_detail(el) for el in incoming.unit.findall(q(ns.EB, "Error")))
    return ErrorReceived(
        message_id=message_id, ref_to_message_id=ref_to, errors=errors, signed=signed, evidence=evidence
    )


def _error_detail(el: etree._Element) -> ErrorDetail:
    return ErrorDetail(
        code=el.get("errorCode", ""),
        severity=el.get("severity", "failure"),
        short_description=el.get("shortDescription"),
        category=el.get("category"),
        ref_to_message_in_error=el.get("refToMessageInError"),
        origin=el.get("origin"),
        description=(el.findtext(q(ns.EB, "Description")) or "").strip() or None,
        detail=(el.findtext(q(ns.EB, "ErrorDetail")) or "").strip() or None,
    )
