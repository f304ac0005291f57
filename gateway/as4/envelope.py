"""SOAP envelopes: a fresh one to fill, and an incoming one split into the pieces the AS4 layer uses.

The structure of an incoming envelope is checked before anything else looks at it, because signature
wrapping lives in structure: one Header and one Body directly under the Envelope, exactly one eb:Messaging
in the whole document and it directly in the Header, every ebMS message unit inside that one block, and no
mustUnderstand header block addressed to us that we do not process.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass

from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4._ns import SoapVersion, q
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.header import new_messaging, parse_message_info, validate_messaging
from gateway.as4.mime import MAX_ROOT_PART_BYTES
from gateway.xmlsafe import XmlInputError, parse_xml

MAX_ENVELOPE_BYTES = MAX_ROOT_PART_BYTES
"""Bytes of a SOAP envelope (the payloads travel as MIME parts and do not count)."""
_UNDERSTOOD = {q(ns.EB, "Messaging"), q(ns.WSSE, "Security")}
_UNITS = {q(ns.EB, "UserMessage"), q(ns.EB, "SignalMessage")}
_OUR_ROLES = {
    SoapVersion.SOAP12: {None, ns.SOAP12_ROLE_NEXT, ns.SOAP12_ROLE_ULTIMATE_RECEIVER},
    SoapVersion.SOAP11: {None, ns.SOAP11_ACTOR_NEXT},
}
_ENVELOPES: dict[object, SoapVersion] = {q(version.value, "Envelope"): version for version in SoapVersion}
_HEADER_BODY = {version: [q(version.value, "Header"), q(version.value, "Body")] for version in SoapVersion}
_MUST_UNDERSTAND = {version: q(version.value, "mustUnderstand") for version in SoapVersion}
_ROLE_ATTRIBUTE = {SoapVersion.SOAP12: q(ns.S12, "role"), SoapVersion.SOAP11: q(ns.S11, "actor")}
_MESSAGING = q(ns.EB, "Messaging")


@dataclass(slots=True)
class Draft:
    """An envelope being built: header, Messaging block and Body, each with the ids signing needs."""

    root: etree._Element
    header: etree._Element
    messaging: etree._Element
    body: etree._Element
    soap_version: SoapVersion = SoapVersion.SOAP12

    def serialize(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8")


def new_draft(soap_version: SoapVersion = SoapVersion.SOAP12) -> Draft:
    root = copy.copy(_envelope_template(soap_version))  # lxml copies the whole tree: one C call
    header, body = root
    messaging = header[0]
    ids = os.urandom(32).hex()  # the 128 random bits of each wsu:Id, drawn at once
    messaging.set(_WSU_ID, f"_{ids[:32]}")
    body.set(_WSU_ID, f"_{ids[32:]}")
    return Draft(root=root, header=header, messaging=messaging, body=body, soap_version=soap_version)


_WSU_ID = q(ns.WSU, "Id")


@functools.cache
def _envelope_template(soap_version: SoapVersion) -> etree._Element:
    """Envelope, Header with an empty eb:Messaging, and Body, their wsu:Ids left to fill in."""
    soap_ns = soap_version.value
    root = etree.Element(q(soap_ns, "Envelope"), nsmap={"env": soap_ns})
    header = etree.SubElement(root, q(soap_ns, "Header"))
    new_messaging(header, wsu_id="", soap_ns=soap_ns)
    etree.SubElement(root, q(soap_ns, "Body"), {_WSU_ID: ""}, nsmap={"wsu": ns.WSU})
    return root


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed incoming envelope. Nothing here is trusted until ``wss.verify`` says which parts are signed."""

    root: etree._Element
    soap_version: SoapVersion
    header: etree._Element
    body: etree._Element
    messaging: etree._Element
    unit: etree._Element

    @property
    def soap_ns(self) -> str:
        return self.soap_version.value

    @property
    def kind(self) -> str:
        return etree.QName(self.unit).localname


def read_envelope(data: bytes) -> tuple[etree._Element, SoapVersion]:
    """Parse XML that must be a SOAP 1.2 or 1.1 Envelope; failures are EBMS:0009, envelope unreadable."""
    try:
        root = parse_xml(data, max_bytes=MAX_ENVELOPE_BYTES, what="SOAP envelope")
    except XmlInputError as exc:
        raise EbmsError(EbmsCode.INVALID_HEADER, str(exc), envelope_unreadable=True) from None
    version = _ENVELOPES.get(root.tag)
    if version is not None:
        return root, version
    name = etree.QName(root)
    if name.localname != "Envelope" or name.namespace not in (ns.S12, ns.S11):
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"root element {name.text} is not a SOAP 1.2 or SOAP 1.1 Envelope",
            envelope_unreadable=True,
        )
    return root, SoapVersion(name.namespace)


def split_envelope(root: etree._Element, soap_version: SoapVersion) -> tuple[etree._Element, etree._Element]:
    """(Header, Body): exactly one of each, directly under the Envelope, and nothing else there."""
    children = list(root.iterchildren(etree.Element))
    names = [c.tag for c in children]
    if names != _HEADER_BODY[soap_version]:
        found = ", ".join(etree.QName(c).localname for c in children) or "nothing"
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"the {soap_version.label} Envelope must contain exactly one Header followed by one Body; found {found}",
        )
    return children[0], children[1]


def parse_envelope(data: bytes) -> Incoming:
    """Parse and structurally check an envelope: one eb:Messaging in the Header, one message unit."""
    root, soap_version = read_envelope(data)
    header, body = split_envelope(root, soap_version)
    blocks, units = _ebms_elements(root)
    messaging = _one_messaging(blocks, header)
    try:
        check_must_understand(header, soap_version)
    except EbmsError as exc:  # checked before the ebMS header, which may still name the message refused
        raise exc.with_ref(_readable_message_id(messaging)) from None
    validate_messaging(messaging)
    return Incoming(
        root=root,
        soap_version=soap_version,
        header=header,
        body=body,
        messaging=messaging,
        unit=_one_unit(units, messaging),
    )


def targets_us(block: etree._Element, soap_version: SoapVersion) -> bool:
    """A header block addressed to us: no role/actor, or the next/ultimateReceiver role."""
    role = block.get(_ROLE_ATTRIBUTE[soap_version])
    return (role.strip() if role is not None else None) in _OUR_ROLES[soap_version]


def check_must_understand(header: etree._Element, soap_version: SoapVersion) -> None:
    """EBMS:0008 naming every header block addressed to us, marked mustUnderstand, that we do not process;
    the error lists them (``not_understood``) for the env:MustUnderstand fault and its env:NotUnderstood blocks."""
    attribute = _MUST_UNDERSTAND[soap_version]
    not_understood: list[str] = []
    for block in header.iterchildren(etree.Element):
        flag = block.get(attribute, "false").strip()
        if flag not in ("true", "1", "false", "0"):
            raise EbmsError(
                EbmsCode.INVALID_HEADER,
                f"mustUnderstand={flag!r} on header block {etree.QName(block).text} is not a boolean",
            )
        if flag in ("true", "1") and block.tag not in _UNDERSTOOD and targets_us(block, soap_version):
            not_understood.append(etree.QName(block).text)
    if not_understood:
        names = ", ".join(not_understood)
        blocks, it = (
            (f"header block {names} is", "it")
            if len(not_understood) == 1
            else (f"header blocks {names} are", "them")
        )
        raise EbmsError(
            EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
            f"{blocks} marked mustUnderstand and addressed to us, and this gateway does not process {it} (it "
            f"processes eb:Messaging and wsse:Security): the sender leaves {it} out, or marks {it} "
            f'mustUnderstand="false" where the message means the same to a receiver that ignores {it}',
            not_understood=tuple(not_understood),
        )


def _readable_message_id(messaging: etree._Element) -> str | None:
    """The MessageId of the one message unit in ``messaging`` if it can be read, else None; never raises."""
    units = [el for el in messaging.iterchildren(etree.Element) if el.tag in _UNITS]
    if len(units) != 1:
        return None
    try:
        return parse_message_info(units[0])[0]
    except EbmsError as exc:  # a bad Timestamp or RefToMessageId after a good MessageId still names it
        return exc.ref_to_message_id
    except ValueError:
        return None


def _ebms_elements(root: etree._Element) -> tuple[list[etree._Element], list[etree._Element]]:
    """(every eb:Messaging, every UserMessage and SignalMessage) in the document, found in one walk."""
    blocks: list[etree._Element] = []
    units: list[etree._Element] = []
    for el in root.iter(_MESSAGING, *_UNITS):
        (blocks if el.tag == _MESSAGING else units).append(el)
    return blocks, units


def _one_messaging(blocks: list[etree._Element], header: etree._Element) -> etree._Element:
    if not blocks:
        raise EbmsError(EbmsCode.INVALID_HEADER, "the SOAP Header has no eb:Messaging header block")
    misplaced = [b for b in blocks if b.getparent() is not header]
    if misplaced:
        parent = misplaced[0].getparent()
        where = etree.QName(parent).text if parent is not None else "the document"
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"an eb:Messaging element sits inside {where}; exactly one eb:Messaging, directly in the SOAP Header, "
            "is accepted",
        )
    if len(blocks) > 1:
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"the SOAP Header holds {len(blocks)} eb:Messaging blocks; exactly one is accepted",
        )
    return blocks[0]


def _one_unit(units_anywhere: list[etree._Element], messaging: etree._Element) -> etree._Element:
    stray = [el for el in units_anywhere if el.getparent() is not messaging]
    if stray:
        parent = stray[0].getparent()
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"an eb:{etree.QName(stray[0]).localname} sits inside "
            f"{etree.QName(parent).text if parent is not None else 'the document'}, outside eb:Messaging",
        )
    units = [el for el in messaging.iterchildren(etree.Element) if el.tag in _UNITS]
    if not units:
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            "eb:Messaging contains no UserMessage or SignalMessage (ebMS 3.0 section 5.2.1: at least one unit)",
        )
    if len(units) > 1:
        names = ", ".join(etree.QName(u).localname for u in units)
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"eb:Messaging bundles {len(units)} message units ({names}); AS4 section 5.1.2 and eDelivery AS4 allow "
            "one per message, and this gateway accepts one",
        )
    return units[0]
