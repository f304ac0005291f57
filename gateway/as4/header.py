"""The ``eb:Messaging`` header: built from and parsed into ``gateway.as4.model`` values.

Parsing assumes the block already validated against the ebMS 3.0 header schema (``validate_messaging``),
then checks what the schema cannot: RFC 2822 MessageIds, time zones, and the semantic rules of ebMS 3.0.
Every problem is EBMS:0009 InvalidHeader naming the element.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from lxml import etree

from gateway.as4._ns import DEFAULT_MPC, EB, S12, WSU, XML, q
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.model import (
    PartInfo,
    PartSchema,
    Party,
    PartyId,
    Property,
    PullRequest,
    UserMessage,
    check_message_id,
)
from gateway.xmlsafe import load_schema

HEADER_XSD = "ebxml/ebms-header-3_0-200704.xsd"
_TAGS = {
    local: q(EB, local)
    for local in (
        "Action",
        "AgreementRef",
        "CollaborationInfo",
        "ConversationId",
        "Description",
        "Error",
        "From",
        "MessageId",
        "MessageInfo",
        "MessageProperties",
        "PartInfo",
        "PartProperties",
        "PartyId",
        "PartyInfo",
        "PayloadInfo",
        "Property",
        "PullRequest",
        "Receipt",
        "RefToMessageId",
        "Role",
        "Schema",
        "Service",
        "Timestamp",
        "To",
    )
}
_XML_LANG = q(XML, "lang")


def _first(parent: etree._Element, local: str) -> etree._Element | None:
    """The first eb: child called ``local`` (C-level iteration; ElementPath is several times slower)."""
    return next(parent.iterchildren(_TAGS[local]), None)


def _children(parent: etree._Element) -> dict[str, etree._Element]:
    """The first child element of each tag: one pass over the children instead of one ``_first`` per field."""
    found: dict[str, etree._Element] = {}
    for child in parent.iterchildren(etree.Element):
        found.setdefault(str(child.tag), child)
    return found


def _all(parent: etree._Element | None, local: str) -> list[etree._Element]:
    return [] if parent is None else list(parent.iterchildren(_TAGS[local]))


def _sub(parent: etree._Element, local: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    el = etree.SubElement(parent, q(EB, local), {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def format_timestamp(moment: datetime) -> str:
    """xsd:dateTime in UTC with ``Z``, to the millisecond (cut, not rounded, so never later than ``moment``): what
    phase4, Domibus and Holodeck write, and read back, in eb:Timestamp."""
    if moment.tzinfo is None:
        raise ValueError("a Timestamp needs a time zone")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def new_messaging(parent: etree._Element, *, wsu_id: str, soap_ns: str = S12) -> etree._Element:
    must_understand = "true" if soap_ns == S12 else "1"
    return etree.SubElement(
        parent,
        q(EB, "Messaging"),
        {q(soap_ns, "mustUnderstand"): must_understand, q(WSU, "Id"): wsu_id},
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


def _add_part_info(payload_info: etree._Element, part: PartInfo) -> None:
    part_el = _sub(payload_info, "PartInfo", href=part.href)
    for schema in part.schemas:
        _sub(part_el, "Schema", location=schema.location, version=schema.version, namespace=schema.namespace)
    if part.description is not None:
        description = _sub(part_el, "Description", part.description)
        description.set(q(XML, "lang"), part.description_lang or "en")
    _add_properties(part_el, "PartProperties", part.properties)


def add_user_message(messaging: etree._Element, um: UserMessage, parts: Sequence[PartInfo] | None = None) -> None:
    """Append ``um`` (with ``parts`` instead of ``um.parts`` if given): a copy of the block built for the first
    message of its shape, its own values filled in."""
    parts = um.parts if parts is None else parts
    el = copy.copy(_user_message_template(um, parts))  # lxml copies the whole subtree: one C call
    info = el[0]
    info[0].text = format_timestamp(um.timestamp)
    info[1].text = um.message_id
    if um.ref_to_message_id is not None:
        info[2].text = um.ref_to_message_id
    el[2][-1].text = um.conversation_id
    if parts:
        for part_el, part in zip(el[-1], parts, strict=True):
            if part.href is not None:
                part_el.set("href", part.href)
    messaging.append(el)


_PER_MESSAGE = frozenset({"message_id", "timestamp", "ref_to_message_id", "conversation_id", "parts"})
_FIXED_FIELDS = operator.attrgetter(
    *(f.name for f in dataclasses.fields(UserMessage) if f.name not in _PER_MESSAGE)
)
_FIXED_PART_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(PartInfo) if f.name != "href"))
_MAX_TEMPLATES = 256
_TEMPLATES: dict[tuple[object, ...], etree._Element] = {}


def _user_message_template(um: UserMessage, parts: Sequence[PartInfo]) -> etree._Element:
    """The eb:UserMessage built for the first message of ``um``'s shape: the same values in every field but
    the ones each message has its own of (``_PER_MESSAGE`` and the hrefs), which the copy gets."""
    part_shapes = tuple((p.href is None, _FIXED_PART_FIELDS(p)) for p in parts)
    shape = (_FIXED_FIELDS(um), um.ref_to_message_id is None, part_shapes)
    try:
        template = _TEMPLATES.get(shape)
    except TypeError:  # a list where the model says tuple: unhashable, so built as it is, uncached
        return _build_user_message(um, parts)
    if template is None:
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.clear()  # a bound, not an LRU: shapes are few (one per partner, service and action)
        template = _TEMPLATES[shape] = _build_user_message(um, parts)
    return template


def _build_user_message(um: UserMessage, parts: Sequence[PartInfo]) -> etree._Element:
    el = etree.Element(q(EB, "UserMessage"), {} if um.mpc == DEFAULT_MPC else {"mpc": um.mpc}, nsmap={"eb": EB})
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
    if parts:
        payload_info = _sub(el, "PayloadInfo")
        for part in parts:
            _add_part_info(payload_info, part)
    return el


def add_pull_request(messaging: etree._Element, pull: PullRequest) -> None:
    signal = _sub(messaging, "SignalMessage")
    add_message_info(signal, message_id=pull.message_id, timestamp=pull.timestamp, ref_to=pull.ref_to_message_id)
    _sub(signal, "PullRequest", mpc=None if pull.mpc == DEFAULT_MPC else pull.mpc)


def validate_messaging(messaging: etree._Element) -> None:
    """Validate against the ebMS 3.0 header XSD; EBMS:0009 names the first problem's element and message.

    lxml validates the subtree in place (no copy); the schema is compiled once per process.
    """
    instruction = next(messaging.iter(etree.PI), None)
    if instruction is not None:
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            f"eb:Messaging carries a processing instruction (line {instruction.sourceline}); header values must be "
            "plain text, as a value split by one would be read differently than it was signed",
        )
    schema = load_schema(HEADER_XSD)
    if schema.validate(messaging):
        return
    first = schema.error_log[0]
    raise EbmsError(
        EbmsCode.INVALID_HEADER,
        f"eb:Messaging does not validate against the ebMS 3.0 header schema (line {first.line}): {first.message}",
    )


def _text(
    parent: etree._Element, local: str, *, required: bool = True, children: dict[str, etree._Element] | None = None
) -> str | None:
    el = children.get(_TAGS[local]) if children is not None else _first(parent, local)
    text = (el.text or "").strip() if el is not None else ""
    if not text:
        if required:
            raise EbmsError(
                EbmsCode.INVALID_HEADER, f"missing or empty eb:{local} in eb:{etree.QName(parent).localname}"
            )
        return None
    return text


_END_OF_DAY = re.compile(r"T24:00:00(?:\.0+)?(?=[Zz+-]|$)")


def parse_timestamp(text: str) -> datetime:
    """An xsd:dateTime, in UTC when it names no time zone; 24:00:00 is the end of its day (00:00 of the next)."""
    start_of_day, end_of_day = _END_OF_DAY.subn("T00:00:00", text)
    try:
        moment = datetime.fromisoformat(start_of_day.replace("Z", "+00:00").replace("z", "+00:00"))
        moment += timedelta(days=end_of_day)
    except (ValueError, OverflowError):
        raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:Timestamp {text!r} is not an xsd:dateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _message_id(text: str, element: str) -> str:
    try:
        check_message_id(text, f"eb:{element}")
    except ValueError as exc:
        raise EbmsError(EbmsCode.INVALID_HEADER, str(exc)) from None
    return text


def _party(el: etree._Element | None, name: str) -> Party:
    if el is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"missing eb:PartyInfo/eb:{name}")
    ids = []
    for pid in _all(el, "PartyId"):
        value = (pid.text or "").strip()
        if not value:
            raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:PartyInfo/eb:{name}/eb:PartyId is empty")
        ids.append(PartyId(value=value, type=pid.get("type")))
    if not ids:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:PartyInfo/eb:{name} has no eb:PartyId")
    role = _text(el, "Role", children=_children(el))
    assert role is not None
    return Party(party_ids=tuple(ids), role=role)


def _properties(el: etree._Element | None, where: str) -> tuple[Property, ...]:
    if el is None:
        return ()
    props = []
    for p in _all(el, "Property"):
        name = (p.get("name") or "").strip()
        if not name:
            raise EbmsError(EbmsCode.INVALID_HEADER, f"an eb:Property in {where} has no name")
        props.append(Property(name=name, value=(p.text or "").strip(), type=p.get("type")))
    return tuple(props)


def parse_message_info(unit: etree._Element) -> tuple[str, datetime, str | None]:
    """(MessageId, Timestamp, RefToMessageId) of a message unit, each checked."""
    info = _first(unit, "MessageInfo")
    if info is None:
        raise EbmsError(EbmsCode.INVALID_HEADER, f"missing eb:MessageInfo in eb:{etree.QName(unit).localname}")
    fields = _children(info)
    message_id = _message_id(str(_text(info, "MessageId", children=fields)), "MessageId")
    try:
        timestamp = parse_timestamp(str(_text(info, "Timestamp", children=fields)))
        ref_to = _text(info, "RefToMessageId", required=False, children=fields)
        if ref_to is not None:
            _message_id(ref_to, "RefToMessageId")
    except EbmsError as exc:
        raise exc.with_ref(message_id) from None
    return message_id, timestamp, ref_to


def _part_info(el: etree._Element) -> PartInfo:
    href = el.get("href")
    children = _children(el)
    description = children.get(_TAGS["Description"])
    return PartInfo(
        href=href.strip() if href is not None else None,
        properties=_properties(children.get(_TAGS["PartProperties"]), f"eb:PartInfo {href!r}"),
        schemas=tuple(
            PartSchema(location=s.get("location", ""), version=s.get("version"), namespace=s.get("namespace"))
            for s in _all(el, "Schema")
        ),
        description=(description.text or "").strip() if description is not None else None,
        description_lang=description.get(_XML_LANG) if description is not None else None,
    )


def parse_user_message(unit: etree._Element) -> UserMessage:
    message_id, timestamp, ref_to = parse_message_info(unit)
    try:
        sections = _children(unit)
        collab = sections.get(_TAGS["CollaborationInfo"])
        if collab is None:
            raise EbmsError(EbmsCode.INVALID_HEADER, "missing eb:CollaborationInfo")
        collab_fields = _children(collab)
        service_el = collab_fields.get(_TAGS["Service"])
        agreement = collab_fields.get(_TAGS["AgreementRef"])
        agreement_text = (agreement.text or "").strip() if agreement is not None else None
        if agreement is not None and not agreement_text:
            raise EbmsError(EbmsCode.INVALID_HEADER, "eb:AgreementRef is empty")
        party_info = sections.get(_TAGS["PartyInfo"])
        if party_info is None:
            raise EbmsError(EbmsCode.INVALID_HEADER, "missing eb:PartyInfo")
        parties = _children(party_info)
        mpc = unit.get("mpc")
        if mpc is not None and not mpc.strip():
            raise EbmsError(EbmsCode.INVALID_HEADER, "eb:UserMessage/@mpc is empty")
        conversation_id = collab_fields.get(_TAGS["ConversationId"])
        if conversation_id is None:
            raise EbmsError(EbmsCode.INVALID_HEADER, "missing eb:ConversationId")
        return UserMessage(
            message_id=message_id,
            timestamp=timestamp,
            ref_to_message_id=ref_to,
            from_party=_party(parties.get(_TAGS["From"]), "From"),
            to_party=_party(parties.get(_TAGS["To"]), "To"),
            service=str(_text(collab, "Service", children=collab_fields)),
            service_type=service_el.get("type") if service_el is not None else None,
            action=str(_text(collab, "Action", children=collab_fields)),
            conversation_id=(conversation_id.text or "").strip(),
            agreement_ref=agreement_text,
            agreement_ref_type=agreement.get("type") if agreement is not None else None,
            agreement_ref_pmode=agreement.get("pmode") if agreement is not None else None,
            mpc=mpc.strip() if mpc is not None else DEFAULT_MPC,
            properties=_properties(sections.get(_TAGS["MessageProperties"]), "eb:MessageProperties"),
            parts=tuple(_part_info(p) for info in _all(unit, "PayloadInfo") for p in _all(info, "PartInfo")),
        )
    except EbmsError as exc:
        raise exc.with_ref(message_id) from None
    except ValueError as exc:  # a model invariant the checks above did not name
        raise EbmsError(EbmsCode.INVALID_HEADER, f"eb:UserMessage: {exc}", ref_to_message_id=message_id) from None


def parse_pull_request(unit: etree._Element) -> PullRequest:
    message_id, timestamp, ref_to = parse_message_info(unit)
    pull = _first(unit, "PullRequest")
    if pull is None:
        raise EbmsError(
            EbmsCode.INVALID_HEADER, "the SignalMessage holds no eb:PullRequest", ref_to_message_id=message_id
        )
    mpc = pull.get("mpc")
    if mpc is not None and not mpc.strip():
        raise EbmsError(EbmsCode.INVALID_HEADER, "eb:PullRequest/@mpc is empty", ref_to_message_id=message_id)
    return PullRequest(
        message_id=message_id,
        timestamp=timestamp,
        mpc=mpc.strip() if mpc is not None else DEFAULT_MPC,
        ref_to_message_id=ref_to,
    )


def signal_kind(unit: etree._Element) -> str:
    """``Receipt``, ``Error``, ``PullRequest`` or ``""``: what a SignalMessage carries besides MessageInfo.

    More than one kind (a Receipt bundled with an Error, say) is EBMS:0003; AS4 only lets a responding MSH
    piggyback a receipt on a pull, which this gateway does not do.
    """
    kinds = {
        etree.QName(child).localname
        for child in unit.iterchildren(etree.Element)
        if child.tag in (_TAGS["Receipt"], _TAGS["Error"], _TAGS["PullRequest"])
    }
    if len(kinds) > 1:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the SignalMessage carries {' and '.join(sorted(kinds))}; one kind of signal per message is accepted",
        )
    return kinds.pop() if kinds else ""
