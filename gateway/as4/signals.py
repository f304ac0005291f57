"""Signal messages: non-repudiation receipts, ebMS error signals and pull requests, built, signed and checked."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import mime, wss
from gateway.as4._ns import SoapVersion, q
from gateway.as4.algorithms import Suite
from gateway.as4.envelope import Incoming, new_draft, parse_envelope, read_envelope
from gateway.as4.errors import EbmsCode, EbmsError, Fault
from gateway.as4.events import ErrorReceived, ReceiptReceived
from gateway.as4.header import (
    add_message_info,
    add_pull_request,
    format_timestamp,
    parse_message_info,
    signal_kind,
)
from gateway.as4.mime import PartBody, chunks_of
from gateway.as4.model import ErrorDetail, PullRequest, SignedReference, check_message_id, is_message_id
from gateway.as4.policy import SUITES, KeyPair, SecurityPolicy
from gateway.xmlsafe import parse_xml

FaultCode = Literal["Sender", "Receiver", "MustUnderstand"]
"""The SOAP 1.2 Fault Code of an answer (SOAP 1.1: Client, Server, MustUnderstand)."""


class Sent(Protocol):
    """What a receipt is checked against: the MessageId sent and the references signed (an ``Outgoing``, a
    ``StreamedOutgoing``, or what a store kept of either)."""

    @property
    def message_id(self) -> str: ...

    @property
    def references(self) -> tuple[SignedReference, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes ready for HTTP: the Content-Type, the body, and what we signed (to check the receipt against)."""

    message_id: str
    content_type: str
    body: bytes = field(repr=False)
    references: tuple[SignedReference, ...] = ()
    http_status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamedOutgoing:
    """An ``Outgoing`` whose body stays in pieces (bytes and spooled part bodies) until it is written out."""

    message_id: str
    content_type: str
    pieces: tuple[bytes | PartBody, ...] = field(repr=False)
    references: tuple[SignedReference, ...] = ()

    @property
    def size(self) -> int:
        return sum(p.size if isinstance(p, PartBody) else len(p) for p in self.pieces)

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The body in wire order; spooled parts are read back in ``CHUNK_SIZE`` pieces."""
        return chunks_of(self.pieces)


def build_receipt(
    ref_to_message_id: str,
    references: Sequence[SignedReference],
    *,
    key: KeyPair,
    message_id: str,
    now: datetime,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> Outgoing:
    """A signed receipt whose NRI holds a copy of every ds:Reference of the received message's signature."""
    check_message_id(message_id)
    check_message_id(ref_to_message_id, "RefToMessageId")
    if not references:
        raise ValueError("a non-repudiation receipt needs the signed references of the received message")
    draft = new_draft(soap_version)
    signal = copy.copy(_receipt_template())  # lxml copies the whole subtree: one C call
    draft.messaging.append(signal)
    info, receipt = signal
    info[0].text = format_timestamp(now)
    info[1].text = message_id
    info[2].text = ref_to_message_id
    nri = receipt[0]
    for reference in references:
        part = etree.SubElement(nri, q(ns.EBBP, "MessagePartNRInformation"))
        part.append(parse_xml(reference.xml, what="stored ds:Reference"))
    _sign_signal(draft.header, draft.messaging, draft.body, key, soap_version, suite)
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type=soap_version.content_type)
    return Outgoing(message_id=message_id, content_type=content_type, body=body)


@functools.cache
def _receipt_template() -> etree._Element:
    """eb:SignalMessage with MessageInfo (Timestamp, MessageId, RefToMessageId) and an empty NRI receipt;
    the values are left to fill in."""
    signal = etree.Element(q(ns.EB, "SignalMessage"), nsmap={"eb": ns.EB})
    add_message_info(signal, message_id="", timestamp=datetime(1970, 1, 1, tzinfo=UTC), ref_to="")
    receipt = etree.SubElement(signal, q(ns.EB, "Receipt"))
    etree.SubElement(receipt, q(ns.EBBP, "NonRepudiationInformation"), nsmap={"ebbp": ns.EBBP})
    return signal


def build_pull_request(
    pull: PullRequest,
    *,
    key: KeyPair,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> Outgoing:
    """A signed ``eb:PullRequest`` for ``pull.mpc`` (the pull MEP itself comes with the pull work)."""
    draft = new_draft(soap_version)
    add_pull_request(draft.messaging, pull)
    references = _sign_signal(draft.header, draft.messaging, draft.body, key, soap_version, suite)
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type=soap_version.content_type)
    return Outgoing(message_id=pull.message_id, content_type=content_type, body=body, references=references)


def build_error_signal(
    error: EbmsError,
    *,
    key: KeyPair | None,
    message_id: str,
    now: datetime,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> Outgoing:
    """The answer to a refused message.

    Normally an ebMS error signal with a SOAP Fault in the Body (as Domibus expects), signed when we have a
    key. When the envelope could not be read at all (``error.envelope_unreadable``) there is no ebMS header
    to answer, so the answer is a SOAP Fault only, carrying the eb:Error in its Detail.
    """
    check_message_id(message_id)
    fault_code = _fault_code(error)
    # SOAP 1.2 Part 2 section 7.5.1.2: a Sender fault is HTTP 400, every other fault (Receiver, MustUnderstand)
    # 500; SOAP 1.1 answers every fault with 500
    status = 400 if fault_code == "Sender" and soap_version is SoapVersion.SOAP12 else 500
    if error.envelope_unreadable:
        return _fault_only(error, message_id, fault_code, status, soap_version)
    draft = new_draft(soap_version)
    signal = etree.SubElement(draft.messaging, q(ns.EB, "SignalMessage"))
    ref = error.ref_to_message_id if error.ref_to_message_id and is_message_id(error.ref_to_message_id) else None
    add_message_info(signal, message_id=message_id, timestamp=now, ref_to=ref)
    signal.append(error_element(error))
    _add_not_understood(draft.header, error, soap_version)
    _add_fault(draft.body, error, fault_code, soap_version)
    if key is not None:
        _sign_signal(draft.header, draft.messaging, draft.body, key, soap_version, suite)
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type=soap_version.content_type)
    return Outgoing(message_id=message_id, content_type=content_type, body=body, http_status=status)


def fault_of(error: EbmsError) -> Fault:
    """Whose problem ``error`` is: what its raise site said, else the receiver's for Other and DeliveryFailure
    (our own failures) and the sender's for every other code."""
    if error.fault is not None:
        return error.fault
    return "Receiver" if error.code in (EbmsCode.OTHER, EbmsCode.DELIVERY_FAILURE) else "Sender"


def _fault_code(error: EbmsError) -> FaultCode:
    """The SOAP 1.2 Fault Code: MustUnderstand for header blocks we must but do not process (SOAP 1.2 Part 1
    section 2.6), else whose problem the error is (Sender or Receiver)."""
    return "MustUnderstand" if error.not_understood else fault_of(error)


_SOAP11_FAULT_CODES: dict[FaultCode, str] = {
    "Sender": "env:Client",
    "Receiver": "env:Server",
    "MustUnderstand": "env:MustUnderstand",
}


def _add_not_understood(header: etree._Element, error: EbmsError, soap_version: SoapVersion) -> None:
    """One env:NotUnderstood header block per header block not understood (SOAP 1.2 Part 1 section 5.4.8), its
    qname attribute a prefixed name whose namespace the block declares. SOAP 1.1 has no such block."""
    if soap_version is not SoapVersion.SOAP12:
        return
    for n, name in enumerate(error.not_understood, start=1):
        qname = etree.QName(name)
        if qname.namespace is None:
            etree.SubElement(header, q(ns.S12, "NotUnderstood"), {"qname": qname.localname})
            continue
        prefix = f"nu{n}"
        etree.SubElement(
            header,
            q(ns.S12, "NotUnderstood"),
            {"qname": f"{prefix}:{qname.localname}"},
            nsmap={prefix: qname.namespace},
        )


def error_element(error: EbmsError) -> etree._Element:
    """The ``eb:Error`` for an ``EbmsError``: code, severity, category, origin from the code; the detail."""
    attrs = {
        "category": error.code.category,
        "errorCode": error.code.code,
        "origin": error.code.origin,
        "severity": error.code.severity,
        "shortDescription": error.code.short_description,
    }
    if error.ref_to_message_id:
        attrs["refToMessageInError"] = error.ref_to_message_id
    error_el = etree.Element(q(ns.EB, "Error"), attrs, nsmap={"eb": ns.EB})
    description = etree.SubElement(error_el, q(ns.EB, "Description"), {q(ns.XML, "lang"): "en"})
    description.text = error.code.description
    etree.SubElement(error_el, q(ns.EB, "ErrorDetail")).text = error.detail
    return error_el


def _fault_only(
    error: EbmsError, message_id: str, fault_code: FaultCode, status: int, soap_version: SoapVersion
) -> Outgoing:
    soap_ns = soap_version.value
    root = etree.Element(q(soap_ns, "Envelope"), nsmap={"env": soap_ns})
    header = etree.SubElement(root, q(soap_ns, "Header"))
    _add_not_understood(header, error, soap_version)
    body = etree.SubElement(root, q(soap_ns, "Body"))
    fault = _add_fault(body, error, fault_code, soap_version)
    detail_tag = q(soap_ns, "Detail") if soap_version is SoapVersion.SOAP12 else "detail"
    etree.SubElement(fault, detail_tag).append(error_element(error))
    envelope = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    content_type, data = mime.build(envelope, [], envelope_content_type=soap_version.content_type)
    return Outgoing(message_id=message_id, content_type=content_type, body=data, http_status=status)


def _add_fault(
    body: etree._Element, error: EbmsError, fault_code: FaultCode, soap_version: SoapVersion
) -> etree._Element:
    reason_text = f"{error.code.code} {error.code.short_description}: {error.detail}"
    if soap_version is SoapVersion.SOAP11:
        fault = etree.SubElement(body, q(ns.S11, "Fault"))
        etree.SubElement(fault, "faultcode").text = _SOAP11_FAULT_CODES[fault_code]
        etree.SubElement(fault, "faultstring").text = reason_text
        return fault
    fault = etree.SubElement(body, q(ns.S12, "Fault"))
    code = etree.SubElement(fault, q(ns.S12, "Code"))
    etree.SubElement(code, q(ns.S12, "Value")).text = f"env:{fault_code}"
    reason = etree.SubElement(fault, q(ns.S12, "Reason"))
    text = etree.SubElement(reason, q(ns.S12, "Text"), {q(ns.XML, "lang"): "en"})
    text.text = reason_text
    return fault


def _sign_signal(
    header: etree._Element,
    messaging: etree._Element,
    body: etree._Element,
    key: KeyPair,
    soap_version: SoapVersion = SoapVersion.SOAP12,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> tuple[SignedReference, ...]:
    security = wss.security_header(header, soap_version)
    targets = [wss.element_target(body), wss.element_target(messaging)]
    return wss.sign(security, targets, key, method=SUITES[suite].signature)


# --- parsing the answer to a message we sent ----------------------------------------------------------


def parse_response(
    content_type: str,
    body: bytes,
    *,
    sent: Sent,
    policy: SecurityPolicy,
    now: datetime,
) -> ReceiptReceived | ErrorReceived:
    """Check the partner's synchronous answer: a valid receipt for ``sent``, or an error signal.

    Anything wrong with a receipt is EBMS:0302 InvalidReceipt naming the cause; the message stays
    unacknowledged. A SOAP Fault that carries an eb:Error (our own answer to an unreadable envelope has this
    form) is an ``ErrorReceived`` too.
    """
    try:
        envelope = mime.parse(content_type, body).envelope
        fault = _fault_error(envelope, body)
        if fault is not None:
            return _about_sent(fault, sent)
        incoming = parse_envelope(envelope)
    except EbmsError as exc:
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT, f"the response is not an ebMS signal: {exc.code.code} {exc.detail}"
        ) from None
    if incoming.soap_version is SoapVersion.SOAP11 and not policy.accept_soap11:
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            "the response is SOAP 1.1; the partner profile expects SOAP 1.2 (PMode[1].Protocol.SOAPVersion)",
        )
    if incoming.kind != "SignalMessage":
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the response carries a {incoming.kind}, not a SignalMessage")
    try:
        message_id, timestamp, ref_to = parse_message_info(incoming.unit)
        kind = signal_kind(incoming.unit)
    except EbmsError as exc:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"{exc.code.code}: {exc.detail}") from None
    if kind == "Error":
        return _about_sent(_error_received(incoming, message_id, ref_to, body, policy, now), sent)
    if kind != "Receipt":
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            f"the SignalMessage holds {'a ' + kind if kind else 'neither a Receipt nor an Error'}, not a Receipt",
        )
    try:
        _check_receipt(incoming, ref_to, sent, policy, now)
    except EbmsError as exc:
        if exc.code is EbmsCode.INVALID_RECEIPT:
            raise
        raise EbmsError(EbmsCode.INVALID_RECEIPT, f"{exc.code.code}: {exc.detail}") from None
    assert ref_to is not None
    return ReceiptReceived(message_id=message_id, ref_to_message_id=ref_to, timestamp=timestamp, evidence=body)


def _about_sent(error: ErrorReceived, sent: Sent) -> ErrorReceived:
    """``error``, unless it is about another message: its RefToMessageId names another, or (without one) its
    errors name messages by refToMessageInError and none is the one sent. Such an answer says nothing about
    ours, which stays unacknowledged. An error that names no message is about ours."""
    if error.ref_to_message_id is not None:
        named = [error.ref_to_message_id]
    else:
        named = sorted(e.ref_to_message_in_error for e in error.errors if e.ref_to_message_in_error is not None)
    if named and sent.message_id not in named:
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            f"the error signal refers to message {named[0]!r}, not to the message sent ({sent.message_id!r}); "
            "it is not taken as the answer",
        )
    return error


def _fault_error(envelope: bytes, evidence: bytes) -> ErrorReceived | None:
    """A SOAP Fault without eb:Messaging whose Detail carries eb:Error elements, as an ``ErrorReceived``."""
    root, soap_version = read_envelope(envelope)
    if root.find(f".//{q(ns.EB, 'Messaging')}") is not None:
        return None
    soap_body = root.find(q(soap_version.value, "Body"))
    fault = soap_body.find(q(soap_version.value, "Fault")) if soap_body is not None else None
    if fault is None:
        return None
    errors = tuple(error_detail(el) for el in fault.iter(q(ns.EB, "Error")))
    if not errors:
        return None
    return ErrorReceived(
        message_id="",
        ref_to_message_id=errors[0].ref_to_message_in_error,
        errors=errors,
        signed=False,
        evidence=evidence,
        fault=fault_code_of(soap_body, soap_version),
    )


_SOAP11_FAULTS = {"Client": "Sender", "Server": "Receiver"}


def fault_code_of(body: etree._Element | None, soap_version: SoapVersion) -> str | None:
    """The Code of the SOAP Fault in ``body`` by its SOAP 1.2 name (SOAP 1.1's Client and Server as Sender and
    Receiver), or None: no Fault, or a Code that is not a SOAP envelope one."""
    fault = body.find(q(soap_version.value, "Fault")) if body is not None else None
    if fault is None:
        return None
    if soap_version is SoapVersion.SOAP12:
        value = fault.find(f"{q(ns.S12, 'Code')}/{q(ns.S12, 'Value')}")
    else:
        value = fault.find("faultcode")
    text = (value.text or "").strip() if value is not None else ""
    prefix, _, local = text.rpartition(":")
    if value is None or value.nsmap.get(prefix or None) != soap_version.value:
        return None
    return _SOAP11_FAULTS.get(local, local) if soap_version is SoapVersion.SOAP11 else local


def verify_signal(incoming: Incoming, policy: SecurityPolicy, now: datetime) -> wss.Verified:
    """Verify a signal's signature over eb:Messaging and the Body (signals carry no attachments)."""
    ids = wss.index_ids(incoming.root)
    security = wss.find_security(incoming.header, incoming.soap_version)
    expected = {"eb:Messaging": incoming.messaging, "the SOAP Body": incoming.body}
    signal_policy = dataclasses.replace(policy, require_encryption=False)
    return wss.verify(security, ids, expected, {}, signal_policy, now)


def _check_receipt(
    incoming: Incoming, ref_to: str | None, sent: Sent, policy: SecurityPolicy, now: datetime
) -> None:
    if ref_to != sent.message_id:
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            f"receipt RefToMessageId {ref_to!r} is not the message sent ({sent.message_id!r})",
        )
    received = _nri_digests(incoming.unit)
    verify_signal(incoming, policy, now)
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
    receipt = unit.find(q(ns.EB, "Receipt"))
    assert receipt is not None
    nri = receipt.find(q(ns.EBBP, "NonRepudiationInformation"))
    if nri is None:
        found = ", ".join(etree.QName(c).text for c in receipt.iterchildren(etree.Element)) or "nothing"
        raise EbmsError(
            EbmsCode.INVALID_RECEIPT,
            f"eb:Receipt holds {found}, not ebbp:NonRepudiationInformation ({ns.EBBP}); eDelivery AS4 requires "
            "non-repudiation receipts",
        )
    digests: dict[str, str] = {}
    for part in nri.iterchildren(etree.Element):
        if part.tag != q(ns.EBBP, "MessagePartNRInformation"):
            raise EbmsError(
                EbmsCode.INVALID_RECEIPT, f"ebbp:NonRepudiationInformation holds {etree.QName(part).text}"
            )
        refs = list(part.iterchildren(etree.Element))
        if len(refs) != 1 or refs[0].tag != q(ns.DS, "Reference"):
            found = ", ".join(etree.QName(r).text for r in refs) or "nothing"
            raise EbmsError(
                EbmsCode.INVALID_RECEIPT,
                f"ebbp:MessagePartNRInformation must hold one ds:Reference ({ns.DS}); it holds {found}",
            )
        uri = refs[0].get("URI") or ""
        if uri in digests:
            raise EbmsError(EbmsCode.INVALID_RECEIPT, f"the receipt's NRI names {uri!r} twice")
        digests[uri] = (refs[0].findtext(q(ns.DS, "DigestValue")) or "").strip()
    if not digests:
        raise EbmsError(EbmsCode.INVALID_RECEIPT, "the receipt's ebbp:NonRepudiationInformation is empty")
    return digests


def _error_received(
    incoming: Incoming, message_id: str, ref_to: str | None, evidence: bytes, policy: SecurityPolicy, now: datetime
) -> ErrorReceived:
    signed = wss.find_security(incoming.header, incoming.soap_version) is not None
    if signed:
        verify_signal(incoming, policy, now)
    errors = tuple(error_detail(el) for el in incoming.unit.findall(q(ns.EB, "Error")))
    return ErrorReceived(
        message_id=message_id,
        ref_to_message_id=ref_to,
        errors=errors,
        signed=signed,
        evidence=evidence,
        fault=fault_code_of(incoming.body, incoming.soap_version),
    )


def error_detail(el: etree._Element) -> ErrorDetail:
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
