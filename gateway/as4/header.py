"""The ``eb:Messaging`` header: built from and parsed into ``gateway.as4.model`` values."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from lxml import etree

from gateway.as4._ns import DEFAULT_MPC, EB, S12, WSU, q
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.model import PartInfo, Party, PartyId, Property, UserMessage
from gateway.xmlsafe import load_schema

HEADER_XSD = "ebxml/ebms-header-3_0-200704.xsd"


def _sub(parent: etree._Element, local: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    el = etree.SubElement(parent, q(EB, local), {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def format_timestamp(moment: datetime) -> str:
    """xsd:dateTime in UTC with milliseconds and ``Z``, as the eDelivery profile expects."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def new_messaging(parent: etree._Element, *, wsu_id: str, soap_ns: str = S12) -> etree._Element:
    return etree.SubElement(
        parent,
        q(EB, "Messaging"),
        {q(soap_ns, "mustUnderstand"): "true", q(WSU, "Id"): wsu_id},
        nsmap={"eb": EB, "wsu": WSU},
    )


def add_message_info(parent: etree._Element, *, message_id: str, timestamp: datetime, ref_to: str | None) -> None:
    info = _sub(parent, "MessageInfo")
    _sub(info, "Timestamp", format_timestamp(timestamp))
    _sub(info, "MessageId", message_id)
    if ref_to is not None:
        _sub(info, "RefToMessageId", ref_to)


def _add_party(parent: etree._Element, name: str, party: Party) -> None:
    el = _sub(parent, name)
    for pid in party.party_ids:
        _sub(el, "PartyId", pid.value, type=pid.type)
    _sub(el, "Role", party.role)


def _add_properties(parent: etree._Element, name: str, props: tuple[Property, ...]) -> None:
    if not props:
        return
    el = _sub(parent, name)
    for prop in props:
        _sub(el, "Property", prop.value, name=prop.name, type=prop.type)


def add_user_message(messaging: etree._Element, um: UserMessage) -> None:
    el = _sub(messaging, "UserMessage", mpc=None if um.mpc == DEFAULT_MPC else um.mpc)
    add_message_info(el, message_id=um.message_id, timestamp=um.timestamp, ref_to=um.ref_to_message_id)
    party_info = _sub(el, "PartyInfo")
    _add_party(party_info, "From", um.from_party)
    _add_party(party_info, "To", um.to_party)
    collab = _sub(el, "CollaborationInfo")
    if um.agreement_ref is not None:
        _sub(collab, "AgreementRef", um.agreement_ref, type=um.agreement_ref_type, pmode=um.agreement_ref_pmode)
    _sub(collab, "Service", um.service, type=um.service_type)
    _sub(collab, "Action", um.action)
    _sub(collab, "ConversationId", um.conversation_id)
    _add_properties(el, "MessageProperties", um.properties)
    if um.parts:
        payload_info = _sub(el, "PayloadInfo")
        for part in um.parts:
            part_el = _sub(payload_info, "PartInfo", href=part.href)
            _add_properties(part_el, "PartProperties", part.properties)


def validate_messaging(messaging: etree._Element) -> None:
    """Validate against the ebMS 3.0 header XSD; EBMS:0009 names the first problem's line and message."""
    schema = load_schema(HEADER_XSD)
    if schema.validate(etree.ElementTree(copy.deepcopy(messaging))):
        return
    first = schema.error_log[0]
    raise EbmsError(
        EbmsCode.INVALID_HEADER,
        f"eb:Messaging does not validate against the ebMS 3.0 header schema: {first.message}",
    )


def _text(parent: etree._Element, path: str, *, required: bool = True) -> str | None:
    el = parent.find(path, {"eb": EB})
    if el is None or el.text is None or not el.text.strip():
        if required:
            raise EbmsError(EbmsCode.INVALID_HEADER, f"missing or empty {path} in {etree.QName(parent).localname}")
        return None
    return el.text.strip()


def parse_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:Timestamp {text!r} is not an xsd:dateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _party(el: etree._Element | None, name: str) -> Party:
    if el is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"missing eb:PartyInfo/eb:{name}")
    ids = tuple(
        PartyId(value=(pid.text or "").strip(), type=pid.get("type"))
        for pid in el.findall("eb:PartyId", {"eb": EB})
        if (pid.text or "").strip()
    )
    if not ids:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:PartyInfo/eb:{name} has no non-empty eb:PartyId")
    role = _text(el, "eb:Role")
    assert role is not None
    return Party(party_ids=ids, role=role)


def _properties(el: etree._Element | None) -> tuple[Property, ...]:
    if el is None:
        return ()
    return tuple(
        Property(name=p.get("name", ""), value=(p.text or "").strip(), type=p.get("type"))
        for p in el.findall("eb:Property", {"eb": EB})
    )


def parse_message_info(unit: etree._Element) -> tuple[str, datetime, str | None]:
    info = unit.find("eb:MessageInfo", {"eb": EB})
    if info is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"missing eb:MessageInfo in eb:{etree.QName(unit).localname}")
    message_id = _text(info, "eb:MessageId")
    timestamp = _text(info, "eb:Timestamp")
    assert message_id is not None and timestamp is not None
    return message_id, parse_timestamp(timestamp), _text(info, "eb:RefToMessageId", required=False)


def parse_user_message(unit: etree._Element) -> UserMessage:
    ns = {"eb": EB}
    message_id, timestamp, ref_to = parse_message_info(unit)
    collab = unit.find("eb:CollaborationInfo", ns)
    if collab is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, "missing eb:CollaborationInfo", ref_to_message_id=message_id)
    service_el = collab.find("eb:Service", ns)
    agreement = collab.find("eb:AgreementRef", ns)
    parts = tuple(
        PartInfo(href=p.get("href"), properties=_properties(p.find("eb:PartProperties", ns)))
        for p in unit.findall("eb:PayloadInfo/eb:PartInfo", ns)
    )
    try:
        return UserMessage(
            message_id=message_id,
            timestamp=timestamp,
            ref_to_message_id=ref_to,
            from_party=_party(unit.find("eb:PartyInfo/eb:From", ns), "From"),
            to_party=_party(unit.find("eb:PartyInfo/eb:To", ns), "To"),
            service=_text(collab, "eb:Service") or "",
            service_type=service_el.get("type") if service_el is not None else None,
            action=_text(collab, "eb:Action") or "",
            conversation_id=_text(collab, "eb:ConversationId") or "",
            agreement_ref=(agreement.text or "").strip() if agreement is not None else None,
            agreement_ref_type=agreement.get("type") if agreement is not None else None,
            agreement_ref_pmode=agreement.get("pmode") if agreement is not None else None,
            mpc=unit.get("mpc") or DEFAULT_MPC,
            properties=_properties(unit.find("eb:MessageProperties", ns)),
            parts=parts,
        )
    except EbmsError as exc:
        raise exc.with_ref(message_id) from None
