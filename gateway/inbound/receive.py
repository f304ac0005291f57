"""The receive path: verify, drop duplicates, validate the permit, store, and only then answer with a receipt."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import NoReturn

import structlog

from gateway.as4 import (
    TEST_ACTION,
    TEST_SERVICE,
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    SecurityPolicy,
    UserMessage,
    UserMessageReceived,
    build_error_signal,
    build_receipt,
    parse_incoming,
)
from gateway.clock import Clock
from gateway.documents import PermitDocument, PermitDocumentRejected, parse_document, validate_document
from gateway.documents.types import document_type_for
from gateway.errors import GatewayError
from gateway.faults import NO_FAULTS, Faults
from gateway.metrics import DUPLICATES, EBMS_ERRORS_SENT, FAILURES
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import (
    Direction,
    Event,
    Evidence,
    MessageRecord,
    MessageStore,
    NewMessage,
    PayloadStore,
    PermitRegistry,
)
from gateway.store.unit import unit_of_work

log = structlog.get_logger("gateway.inbound")


def is_test_message(user_message: UserMessage) -> bool:
    return user_message.service == TEST_SERVICE and user_message.action == TEST_ACTION


@dataclass(frozen=True, slots=True, kw_only=True)
class Reception:
    """The HTTP answer for one incoming message, and the stored message when there is one."""

    response: Outgoing
    record: MessageRecord | None = None
    duplicate: bool = False


class Receiver:
    def __init__(
        self,
        *,
        store: MessageStore,
        permits: PermitRegistry,
        payloads: PayloadStore,
        partners: Partners,
        identity: IdentitySettings,
        keys: tuple[KeyPair, ...],
        clock: Clock,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self._store = store
        self._permits = permits
        self._payloads = payloads
        self._partners = partners
        self._identity = identity
        self._keys = keys
        self._clock = clock
        self._faults = faults

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners

    def use_keys(self, keys: tuple[KeyPair, ...]) -> None:
        """Decrypt with any of ``keys`` (current, next, previous); sign receipts with the first."""
        if not keys:
            raise ValueError("the receiver needs at least one key")
        self._keys = keys

    def _new_id(self) -> str:
        return f"{uuid.uuid4()}@{self._identity.party_id.lower()}.permit-gateway"

    async def receive(self, content_type: str, body: bytes) -> Reception:
        """Never raises for bad input: every refusal becomes a signed ebMS error signal."""
        now = self._clock.now()
        try:
            received = parse_incoming(content_type, body, policy_for=self._policy_for, keys=self._keys, now=now)
            return await self._accept(received, content_type, body)
        except EbmsError as exc:
            log.warning("message refused", code=exc.code.code, detail=exc.detail, ref=exc.ref_to_message_id)
            EBMS_ERRORS_SENT.labels(code=exc.code.code).inc()
            return Reception(
                response=build_error_signal(exc, key=self._keys[0], message_id=self._new_id(), now=now)
            )

    def _policy_for(self, user_message: UserMessage) -> SecurityPolicy:
        partner = self._partner(user_message)
        self._check_agreement(user_message, partner)
        return partner.policy

    def _partner(self, user_message: UserMessage) -> Partner:
        sender = user_message.from_party.primary
        try:
            partner = self._partners.by_party(sender.value, sender.type)
            self._partners.usable(partner, self._clock.now())
        except GatewayError as exc:
            raise EbmsError(EbmsCode.PROCESSING_MODE_MISMATCH, f"From PartyId {sender.value!r}: {exc}") from None
        return partner

    def _check_agreement(self, user_message: UserMessage, partner: Partner) -> None:
        recipient = user_message.to_party.primary
        if recipient.value != self._identity.party_id:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"To PartyId is {recipient.value!r}; this gateway is {self._identity.party_id!r}",
            )
        if is_test_message(user_message):
            return
        document_type = document_type_for(user_message.service, user_message.action)
        if document_type is None or document_type not in partner.profile.documents.receive:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"Service {user_message.service!r} / Action {user_message.action!r} is not agreed with partner "
                f"{partner.profile.id!r} (documents.receive: {', '.join(partner.profile.documents.receive)})",
            )

    async def _accept(self, received: UserMessageReceived, content_type: str, body: bytes) -> Reception:
        """The message and its receipt are stored in one transaction before the receipt is sent: a crash
        leaves either nothing (the sender's retry starts over) or both (the retry gets the same receipt)."""
        user_message = received.user_message
        if is_test_message(user_message):
            return self._test_receipt(received)
        if len(received.payloads) != 1:
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"a permit message carries exactly one payload; this one has {len(received.payloads)}",
            )
        payload_sha256 = hashlib.sha256(received.payloads[0].data).hexdigest()
        sender = user_message.from_party.primary.value
        stored = await self._store.find(Direction.INBOUND, user_message.message_id, sender)
        if stored is not None:
            return await self._duplicate(stored, payload_sha256)
        new = await self._new_message(received, content_type, body)
        document = await self._validate(new, received)
        receipt = build_receipt(
            user_message.message_id,
            received.references,
            key=self._keys[0],
            message_id=self._new_id(),
            now=self._clock.now(),
        )
        try:
            async with unit_of_work(self._store, self._permits) as work:
                await work.record_permit(document, direction=Direction.INBOUND, message_id=new.message_id)
                record, created = await work.add(
                    new,
                    detail={"signer": received.signer_certificate_sha256},
                    then=Event.ACCEPT,
                    then_detail={
                        "document_type": document.document_type.value,
                        "document_number": document.number,
                    },
                    evidence=Evidence(kind="receipt", content_type=receipt.content_type, body=receipt.body),
                    document_number=document.number,
                )
        except PermitDocumentRejected as exc:
            await self._refuse(new, received, exc)
        if not created:
            return await self._duplicate(record, payload_sha256)
        self._faults.hit("receive.before_answer")
        log.info("message accepted", message_id=user_message.message_id, document=document.number)
        return Reception(response=receipt, record=record)

    def _test_receipt(self, received: UserMessageReceived) -> Reception:
        """eDelivery's test service: verified and receipted like any message, but neither stored nor delivered."""
        log.info("test message receipted", message_id=received.user_message.message_id)
        receipt = build_receipt(
            received.user_message.message_id,
            received.references,
            key=self._keys[0],
            message_id=self._new_id(),
            now=self._clock.now(),
        )
        return Reception(response=receipt)

    async def _new_message(self, received: UserMessageReceived, content_type: str, body: bytes) -> NewMessage:
        """The received message as stored; its signed wire bytes are kept as evidence of what was sent."""
        user_message = received.user_message
        payload = received.payloads[0]
        partner = self._partners.by_party(
            user_message.from_party.primary.value, user_message.from_party.primary.type
        )
        document_type = document_type_for(user_message.service, user_message.action)
        return NewMessage(
            direction=Direction.INBOUND,
            message_id=user_message.message_id,
            conversation_id=user_message.conversation_id,
            ref_to_message_id=user_message.ref_to_message_id,
            partner_id=partner.profile.id,
            from_party=user_message.from_party.primary.value,
            to_party=user_message.to_party.primary.value,
            service=user_message.service,
            action=user_message.action,
            document_type=document_type.value if document_type else None,
            payload_sha256=await self._payloads.write(payload.data),
            payload_mime_type=payload.mime_type,
            wire_sha256=await self._payloads.write(body),
            wire_content_type=content_type,
            signed_references=[{"uri": r.uri, "digest": r.digest_value} for r in received.references],
        )

    async def _validate(self, new: NewMessage, received: UserMessageReceived) -> PermitDocument:
        """Check the permit against the registry (recorded there later, with the message, in one unit of work);
        a refused one is stored REJECTED with its findings, and the sender told why."""
        try:
            parsed = parse_document(received.payloads[0].data)
            context = await self._permits.context_for(parsed.outline)
            return validate_document(parsed, as_of=self._clock.now().date(), context=context)
        except PermitDocumentRejected as exc:
            await self._refuse(new, received, exc)

    async def _refuse(
        self, new: NewMessage, received: UserMessageReceived, exc: PermitDocumentRejected
    ) -> NoReturn:
        reason = str(exc)
        await self._store.add(
            new,
            detail={"signer": received.signer_certificate_sha256},
            then=Event.REJECT,
            then_detail={"findings": [str(f) for f in exc.findings]},
            last_error=reason,
        )
        FAILURES.labels(direction="inbound", partner=new.partner_id).inc()
        raise EbmsError(
            EbmsCode.DELIVERY_FAILURE,
            f"the permit document was refused by the receiving authority's checks: {reason}",
            ref_to_message_id=new.message_id,
        ) from None

    async def _duplicate(self, stored: MessageRecord, payload_sha256: str) -> Reception:
        if stored.payload_sha256 != payload_sha256:
            await self._store.note(stored.id, "duplicate_refused", {"reason": "same MessageId, different content"})
            DUPLICATES.labels(partner=stored.partner_id, outcome="refused").inc()
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"MessageId {stored.message_id!r} was already received with different content; a retry must resend "
                "the same message, a new message needs a new MessageId",
                ref_to_message_id=stored.message_id,
            )
        evidence = await self._store.get_evidence(stored.id, "receipt")
        if evidence is None:
            raise EbmsError(
                EbmsCode.DELIVERY_FAILURE,
                f"MessageId {stored.message_id!r} was received before and refused ({stored.last_error})",
                ref_to_message_id=stored.message_id,
            )
        await self._store.note(stored.id, "duplicate", {"answer": "original receipt"})
        DUPLICATES.labels(partner=stored.partner_id, outcome="receipt_resent").inc()
        content_type, body = evidence
        response = Outgoing(message_id=stored.message_id, content_type=content_type, body=body)
        return Reception(response=response, record=stored, duplicate=True)
