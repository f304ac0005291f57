"""Builders for AS4 test messages."""

from __future__ import annotations

from datetime import datetime

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    SecurityPolicy,
    UserMessage,
    build_user_message,
)

PARTY_TYPE = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"
PERMIT = (
    b'<?xml version="1.0" encoding="UTF-8"?><ImportAuthorization xmlns="urn:test">'
    + b"x" * 200
    + b"</ImportAuthorization>"
)


def user_message(now: datetime, message_id: str = "m-1@be-famhp.test") -> UserMessage:
    return UserMessage(
        message_id=message_id,
        timestamp=now,
        from_party=Party(party_ids=(PartyId(value="BE-FAMHP", type=PARTY_TYPE),), role=ROLE_INITIATOR),
        to_party=Party(party_ids=(PartyId(value="CH-SWISSMEDIC", type=PARTY_TYPE),), role=ROLE_RESPONDER),
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        conversation_id="conv-1",
    )


def build(sender: KeyPair, recipient: KeyPair, now: datetime, data: bytes = PERMIT, **kw: object) -> Outgoing:
    payload = Payload(content_id="permit@be-famhp.test", mime_type="application/xml", data=data)
    return build_user_message(
        user_message(now),
        [payload],
        sender=sender,
        recipient_certificate=recipient.certificate,
        **kw,  # type: ignore[arg-type]
    )


def policy_of(*partners: KeyPair) -> SecurityPolicy:
    return SecurityPolicy(signing_certificates=tuple(p.certificate for p in partners))
