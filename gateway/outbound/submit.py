"""Submission: a national system's permit document becomes a durable, signed and encrypted AS4 message.

The document is validated against what the permit registry knows, its partner chosen from what the permit
says (an import authorization goes to the exporting country's authority, an export authorization to the
importing country's), the AS4 message is built once, the document is recorded in the registry (an export
draws on its import there) and the message stored, before the submitter hears "accepted". Retries resend
these same bytes. The registry row and the message row are one transaction (a unit of work): both or neither.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    KeyPair,
    Party,
    PartyId,
    Payload,
    UserMessage,
    build_user_message,
)
from gateway.clock import Clock
from gateway.documents import PermitDocument, parse_document, validate_document
from gateway.documents.types import service_action
from gateway.errors import ProfileError
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import Direction, MessageRecord, MessageStore, NewMessage, PayloadStore, PermitRegistry
from gateway.store.unit import unit_of_work

PERMIT_MIME_TYPE = "application/xml"


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    record: MessageRecord
    document: PermitDocument
    created: bool


def new_message_id(identity: IdentitySettings) -> str:
    """RFC 2822 msg-id form, a UUID on the left as eDelivery recommends; it never changes on retry."""
    return f"{uuid.uuid4()}@{identity.party_id.lower()}.permit-gateway"


def choose_partner(
    document: PermitDocument, partners: Partners, identity: IdentitySettings, partner_id: str | None
) -> Partner:
    if document.issuing_country != identity.country:
        raise ProfileError(
            f"{document.document_type} {document.number} was issued by {document.issuing_country}; this gateway "
            f"sends only documents issued by its own country ({identity.country})"
        )
    if partner_id is not None:
        return partners.get(partner_id)
    country = document.counterpart_country
    found = partners.for_country(country, exclude_party=identity.party_id)
    if len(found) != 1:
        names = ", ".join(p.profile.id for p in found) or "none"
        raise ProfileError(
            f"{document.document_type} {document.number} goes to {country}; partner profiles for {country}: "
            f"{names}. Add a profile for {country}'s competent authority or name the partner explicitly"
        )
    return found[0]


class Submitter:
    def __init__(
        self,
        *,
        store: MessageStore,
        permits: PermitRegistry,
        payloads: PayloadStore,
        partners: Partners,
        identity: IdentitySettings,
        keys: KeyPair,
        clock: Clock,
    ) -> None:
        self._store = store
        self._permits = permits
        self._payloads = payloads
        self._partners = partners
        self._identity = identity
        self._keys = keys
        self._clock = clock

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners

    def use_keys(self, keys: KeyPair) -> None:
        """Sign new messages with ``keys`` (after a rollover); stored messages keep their signatures."""
        self._keys = keys

    async def submit(self, data: bytes, *, partner_id: str | None = None) -> Submitted:
        """Validate, route, pack and store one permit document; raises with the reason when it cannot go."""
        now = self._clock.now()
        parsed = parse_document(data)
        context = await self._permits.context_for(parsed.outline)
        document = validate_document(parsed, as_of=now.date(), context=context)
        partner = choose_partner(document, self._partners, self._identity, partner_id)
        self._partners.usable(partner, now)
        if document.document_type not in partner.profile.documents.send:
            raise ProfileError(
                f"partner {partner.profile.id!r} does not accept {document.document_type} documents "
                f"(documents.send in its profile lists: {', '.join(partner.profile.documents.send) or 'none'})"
            )
        user_message = self._user_message(document, partner)
        outgoing = build_user_message(
            user_message,
            [Payload(content_id=f"permit-{uuid.uuid4()}@permit-gateway", mime_type=PERMIT_MIME_TYPE, data=data)],
            sender=self._keys,
            recipient_certificate=partner.certificates.encryption,
            compress=partner.profile.compression,
        )
        ttl = timedelta(hours=partner.profile.reception_awareness.time_to_live_hours)
        new = NewMessage(
            direction=Direction.OUTBOUND,
            message_id=user_message.message_id,
            conversation_id=user_message.conversation_id,
            partner_id=partner.profile.id,
            from_party=self._identity.party_id,
            to_party=partner.profile.party_id,
            service=user_message.service,
            action=user_message.action,
            document_type=document.document_type.value,
            document_number=document.number,
            payload_sha256=await self._payloads.write(data),
            payload_mime_type=PERMIT_MIME_TYPE,
            wire_sha256=await self._payloads.write(outgoing.body),
            wire_content_type=outgoing.content_type,
            signed_references=[{"uri": r.uri, "digest": r.digest_value} for r in outgoing.references],
            expires_at=now + ttl,
        )
        detail = {"document_type": document.document_type.value, "document_number": document.number}
        async with unit_of_work(self._store, self._permits) as work:
            await work.record_permit(document, direction=Direction.OUTBOUND, message_id=new.message_id)
            record, created = await work.add(new, detail=detail | {"warnings": len(document.findings)})
        return Submitted(record=record, document=document, created=created)

    def _user_message(self, document: PermitDocument, partner: Partner) -> UserMessage:
        service, action = service_action(document.document_type)
        ours = PartyId(value=self._identity.party_id, type=self._identity.party_id_type)
        theirs = PartyId(value=partner.profile.party_id, type=partner.profile.party_id_type)
        return UserMessage(
            message_id=new_message_id(self._identity),
            timestamp=self._clock.now(),
            from_party=Party(party_ids=(ours,), role=partner.profile.roles.initiator or ROLE_INITIATOR),
            to_party=Party(party_ids=(theirs,), role=partner.profile.roles.responder or ROLE_RESPONDER),
            service=service,
            action=action,
            conversation_id=str(uuid.uuid4()),
        )
