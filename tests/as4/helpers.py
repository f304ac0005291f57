"""Builders for AS4 test messages, and ``GatewayPair``: two sans-IO endpoints exchanging bytes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsError,
    ErrorReceived,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    ReceiptReceived,
    SecurityPolicy,
    UserMessage,
    UserMessageReceived,
    build_error_signal,
    build_receipt,
    build_user_message,
    parse_incoming,
    parse_response,
)

PARTY_TYPE = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"
PERMIT = (
    b'<?xml version="1.0" encoding="UTF-8"?><ImportAuthorization xmlns="urn:test">'
    + b"x" * 200
    + b"</ImportAuthorization>"
)
SERVICE = "urn:permit-gateway:services:controlled-substances-trade"


def party(name: str, role: str) -> Party:
    return Party(party_ids=(PartyId(value=name, type=PARTY_TYPE),), role=role)


def user_message(now: datetime, message_id: str = "m-1@be-famhp.test", **changes: object) -> UserMessage:
    fields: dict[str, object] = {
        "message_id": message_id,
        "timestamp": now,
        "from_party": party("BE-FAMHP", ROLE_INITIATOR),
        "to_party": party("CH-SWISSMEDIC", ROLE_RESPONDER),
        "service": SERVICE,
        "action": "ImportAuthorization",
        "conversation_id": "conv-1",
    }
    fields.update(changes)
    return UserMessage(**fields)  # type: ignore[arg-type]


def permit(data: bytes = PERMIT, content_id: str = "permit@be-famhp.test", **kw: object) -> Payload:
    return Payload(content_id=content_id, mime_type="application/xml", data=data, **kw)  # type: ignore[arg-type]


def build(sender: KeyPair, recipient: KeyPair, now: datetime, data: bytes = PERMIT, **kw: object) -> Outgoing:
    return build_user_message(
        user_message(now),
        [permit(data)],
        sender=sender,
        recipient_certificate=recipient.certificate,
        **kw,  # type: ignore[arg-type]
    )


def policy_of(*partners: KeyPair, **kw: object) -> SecurityPolicy:
    return SecurityPolicy(signing_certificates=tuple(p.certificate for p in partners), **kw)  # type: ignore[arg-type]


@dataclass
class Endpoint:
    """One side of a ``GatewayPair``: its key, its policy for the other side, and what it received."""

    name: str
    key: KeyPair
    partner_policy: SecurityPolicy
    received: list[UserMessageReceived] = field(default_factory=list)
    refused: list[EbmsError] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self) -> str:
        return f"{self.name.lower()}-{next(self._ids)}@{self.name.lower()}.test"

    def answer(self, content_type: str, body: bytes, now: datetime) -> Outgoing:
        """What an MSH answers on the HTTP response: a signed receipt, or a (signed) error signal."""
        try:
            event = parse_incoming(
                content_type, body, policy_for=lambda um: self.partner_policy, keys=[self.key], now=now
            )
        except EbmsError as exc:
            self.refused.append(exc)
            return build_error_signal(exc, key=self.key, message_id=self.new_id(), now=now)
        self.received.append(event)
        return build_receipt(
            event.user_message.message_id,
            event.references,
            key=self.key,
            message_id=self.new_id(),
            now=now,
            soap_version=event.soap_version,
        )


@dataclass
class GatewayPair:
    """Two sans-IO MSHs with their own keys; ``push`` sends from one to the other and checks the answer."""

    a: Endpoint
    b: Endpoint

    @classmethod
    def of(cls, a_key: KeyPair, b_key: KeyPair, **policy: object) -> GatewayPair:
        return cls(
            a=Endpoint("BE-FAMHP", a_key, policy_of(b_key, **policy)),
            b=Endpoint("CH-SWISSMEDIC", b_key, policy_of(a_key, **policy)),
        )

    def push(
        self,
        message: UserMessage,
        payloads: Sequence[Payload],
        now: datetime,
        *,
        reverse: bool = False,
        compress: bool = True,
    ) -> tuple[Outgoing, ReceiptReceived | ErrorReceived]:
        sender, receiver = (self.b, self.a) if reverse else (self.a, self.b)
        sent = build_user_message(
            message, payloads, sender=sender.key, recipient_certificate=receiver.key.certificate, compress=compress
        )
        response = receiver.answer(sent.content_type, sent.body, now)
        return sent, parse_response(
            response.content_type, response.body, sent=sent, policy=sender.partner_policy, now=now
        )


def hand_built(
    sender: KeyPair,
    message: UserMessage,
    *,
    body_children: Sequence[bytes] = (),
    attachments: Sequence[tuple[str, str, bytes]] = (),
    sign_attachments: bool = True,
) -> tuple[str, bytes]:
    """A signed, unencrypted message with exactly the header, Body and MIME parts given (for odd cases).

    ``attachments`` are (Content-ID, Content-Type, bytes); the header is used as given, unlike
    ``build_user_message``, which writes the PartInfo elements itself.
    """
    from lxml import etree

    from gateway.as4 import mime, wss
    from gateway.as4.envelope import new_draft
    from gateway.as4.header import add_user_message
    from gateway.xmlsafe import parse_xml

    draft = new_draft()
    add_user_message(draft.messaging, message)
    for child in body_children:
        draft.body.append(parse_xml(child))
    parts = [mime.MimePart.of(cid, ctype, data) for cid, ctype, data in attachments]
    security = wss.security_header(draft.header)
    targets = [wss.element_target(draft.body), wss.element_target(draft.messaging)]
    if sign_attachments:
        targets += [wss.attachment_target(p) for p in parts]
    wss.sign(security, targets, sender)
    assert isinstance(draft.root, etree._Element)
    return mime.build(draft.serialize(), parts)
