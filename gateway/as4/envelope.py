"""SOAP envelopes: a fresh one to fill, and an incoming one split into the pieces the AS4 layer uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4._ns import q
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.header import new_messaging, validate_messaging
from gateway.xmlsafe import XmlInputError, parse_xml

MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
_UNDERSTOOD = {q(ns.EB, "Messaging"), q(ns.WSSE, "Security")}


@dataclass(slots=True)
class Draft:
    """An envelope being built: header, Messaging block and Body, each with the ids signing needs."""

    root: etree._Element
    header: etree._Element
    messaging: etree._Element
    body: etree._Element

    def serialize(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8")


def new_draft() -> Draft:
    root = etree.Element(q(ns.S12, "Envelope"), nsmap={"env": ns.S12})
    header = etree.SubElement(root, q(ns.S12, "Header"))
    messaging = new_messaging(header, wsu_id=f"_{uuid.uuid4()}")
    body = etree.SubElement(root, q(ns.S12, "Body"), {q(ns.WSU, "Id"): f"_{uuid.uuid4()}"}, nsmap={"wsu": ns.WSU})
    return Draft(root=root, header=header, messaging=messaging, body=body)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed incoming envelope. Nothing here is trusted until ``wss.verify`` says which parts are signed."""

    root: etree._Element
    soap_ns: str
    header: etree._Element
    body: etree._Element
    messaging: etree._Element
    unit: etree._Element

    @property
    def kind(self) -> str:
        return etree.QName(self.unit).localname


def parse_envelope(data: bytes) -> Incoming:
    """Parse and structurally check an envelope: SOAP 1.2 or 1.1, one eb:Messaging, one message unit."""
    try:
        root = parse_xml(data, max_bytes=MAX_ENVELOPE_BYTES, what="SOAP envelope")
    except XmlInputError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line else ""
        raise EbmsError(EbmsCode.INVALID_HEADER, f"{exc}{where}") from None
    soap_ns = etree.QName(root).namespace
    if etree.QName(root).localname != "Envelope" or soap_ns not in (ns.S12, ns.S11):
        raise EbmsError(
            EbmsCode.INVALID_HEADER, f"root element {etree.QName(root).text} is not a SOAP 1.2 or 1.1 Envelope"
        )
    assert soap_ns is not None
    header = root.find(q(soap_ns, "Header"))
    body = root.find(q(soap_ns, "Body"))
    if header is None or body is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, "the SOAP envelope needs both a Header and a Body")
    _check_must_understand(header, soap_ns)
    messaging = _one_messaging(header)
    validate_messaging(messaging)
    return Incoming(
        root=root, soap_ns=soap_ns, header=header, body=body, messaging=messaging, unit=_one_unit(messaging)
    )


def _check_must_understand(header: etree._Element, soap_ns: str) -> None:
    for block in header.iterchildren(etree.Element):
        flag = block.get(q(soap_ns, "mustUnderstand"), "false").strip()
        if flag in ("true", "1") and block.tag not in _UNDERSTOOD:
            raise EbmsError(
                EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
                f"header block {etree.QName(block).text} is marked mustUnderstand, and this gateway does not process it",
            )


def _one_messaging(header: etree._Element) -> etree._Element:
    blocks = header.findall(q(ns.EB, "Messaging"))
    if len(blocks) != 1:
        raise EbmsError(
            EbmsCode.INVALID_HEADER, f"expected exactly one eb:Messaging header block, found {len(blocks)}"
        )
    return blocks[0]


def _one_unit(messaging: etree._Element) -> etree._Element:
    units = [el for el in messaging.iterchildren(etree.Element) if el.tag != q(ns.DS, "Signature")]
    if not units:
        raise EbmsError(EbmsCode.INVALID_HEADER, "eb:Messaging contains no UserMessage or SignalMessage")
    if len(units) > 1:
        names = ", ".join(etree.QName(u).localname for u in units)
        raise EbmsError(
            EbmsCode.FEATURE_NOT_SUPPORTED,
            f"eb:Messaging bundles {len(units)} message units ({names}); this gateway accepts one per message",
        )
    return units[0]
