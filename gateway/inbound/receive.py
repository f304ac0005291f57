"""The receive path: verify, drop duplicates, validate the permit, store, and only then answer with a receipt."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import structlog

from gateway.as4 import (
    TEST_ACTION,
    TEST_SERVICE,
    EbmsCode,
    EbmsError,
    Outgoing,
    Package,
    PackageAssembler,
    PartInfo,
    PartyId,
    Payload,
    Property,
    SecurityPolicy,
    SoapVersion,
    UserMessage,
    UserMessageReceived,
    build_error_signal,
    build_receipt,
    message_id_for,
    mime,
    parse_incoming,
)
from gateway.as4.envelope import MAX_ENVELOPE_BYTES
from gateway.clock import Clock
from gateway.documents import (
    ParsedDocument,
    PermitDocument,
    PermitDocumentRejected,
    parse_document,
    sender_findings,
    validate_document,
)
from gateway.documents.types import document_type_for
from gateway.errors import GatewayError
from gateway.faults import NO_FAULTS, Faults
from gateway.files import is_disk_full, sha256_of_file
from gateway.metrics import DUPLICATES, EBMS_ERRORS_SENT, FAILURES
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import (
    Attachment,
    Direction,
    Event,
    Evidence,
    MessageRecord,
    MessageStore,
    NewMessage,
    PayloadStore,
    PermitRegistry,
    attachments_of,
    is_unavailable,
)
from gateway.store.attachments import FILENAME_PROPERTY, safe_filename
from gateway.store.payloads import IncomingFile
from gateway.store.permits import Recheck
from gateway.store.unit import unit_of_work
from gateway.tasks import on_documents_thread, run_to_end

log = structlog.get_logger("gateway.inbound")
SPOOL_THRESHOLD = 1024 * 1024
"""MIME parts and payloads above this are spooled to files in the data folder instead of memory."""
MIN_DECOMPRESSED_CAP = 256 * 1024 * 1024


def is_test_message(user_message: UserMessage) -> bool:
    return user_message.service == TEST_SERVICE and user_message.action == TEST_ACTION


class _StoredMeanwhile(Exception):
    """A concurrent request stored the same MessageId first: this one's unit of work rolls back, so that a
    refused message leaves no permit in the registry."""

    def __init__(self, record: MessageRecord) -> None:
        self.record = record


@dataclass(frozen=True, slots=True, kw_only=True)
class Reception:
    """The HTTP answer for one incoming message, and the stored message when there is one."""

    response: Outgoing
    record: MessageRecord | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Pulled:
    """Where a pulled user message came from: it must be that partner's, on the MPC we pulled."""

    partner_id: str
    mpc: str


def _check_pulled(user_message: UserMessage, partner: Partner, pulled: Pulled) -> None:
    """A pulled message belongs to the MPC pulled (ebMS 3.0 section 3.4) and to the partner that served it."""
    if user_message.mpc != pulled.mpc:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            f"UserMessage/@mpc is {user_message.mpc!r} but it answers our PullRequest for MPC {pulled.mpc!r}; "
            "a pulled message must be assigned to the MPC pulled",
        )
    if partner.profile.id != pulled.partner_id:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            f"From PartyId is partner {partner.profile.id!r} but the message was pulled from partner "
            f"{pulled.partner_id!r}; a partner's MPC serves only its own messages",
        )


def _type_of(value: str | None) -> str:
    return "no type attribute" if value is None else f"type {value!r}"


def _check_roles(user_message: UserMessage, partner: Partner, *, pulled: bool = False) -> None:
    """The roles are part of the agreement: the sender's is ``roles.initiator``, ours ``roles.responder``, as
    our own messages to the partner carry them. A message we pulled may carry them the other way round: in
    One-Way/Pull the PMode's Initiator is the party that pulls (ebMS 3.0 appendix D), and Domibus and Holodeck
    B2B give the message it pulls the responder's role as its From."""
    roles = partner.profile.roles
    came = (user_message.from_party.role, user_message.to_party.role)
    if pulled and came == (roles.responder, roles.initiator):
        return
    for side, came_role, key, expected in (
        ("From", user_message.from_party.role, "initiator", roles.initiator),
        ("To", user_message.to_party.role, "responder", roles.responder),
    ):
        if came_role != expected:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"{side} Role is {came_role!r}, but the agreement with partner {partner.profile.id!r} has "
                f"roles.{key} {expected!r}{' (or, pulled, the two the other way round)' if pulled else ''}: the "
                f"sender sends that role; if the partners agreed on {came_role!r}, the receiving authority sets "
                f"roles.{key} to it in its profile of partner {partner.profile.id!r}",
            )


def _check_collaboration(user_message: UserMessage, partner: Partner) -> None:
    """Our agreements name the Service without a type (our own messages carry none; a Service of another type is
    another service, ebMS 3.0 section 5.2.2.8), and the AgreementRef the profile names, if any."""
    if user_message.service_type is not None:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            f"Service {user_message.service!r} has type {user_message.service_type!r}, but the agreement with "
            f"partner {partner.profile.id!r} names this Service without a type, and a Service is its value and "
            "type together (ebMS 3.0 section 5.2.2.8): the sender leaves the type attribute out of eb:Service "
            "(its PMode's Service type empty)",
        )
    _check_agreement_ref(user_message, partner)


def _check_agreement_ref(user_message: UserMessage, partner: Partner) -> None:
    """The AgreementRef (value and type; its pmode attribute names the sender's PMode, not matched) is the one
    the profile's ``agreement`` names, or absent when it names none."""
    agreement = partner.profile.agreement
    came = (user_message.agreement_ref, user_message.agreement_ref_type)
    expected = (None, None) if agreement is None else (agreement.value, agreement.type)
    if came == expected:
        return
    pmode = user_message.agreement_ref_pmode
    sent = (
        "no AgreementRef"
        if came[0] is None
        else f"AgreementRef {came[0]!r} ({_type_of(came[1])}{'' if pmode is None else f', pmode {pmode!r}'})"
    )
    wanted = "none" if agreement is None else f"{agreement.value!r} ({_type_of(agreement.type)})"
    raise EbmsError(
        EbmsCode.PROCESSING_MODE_MISMATCH,
        f"the message has {sent}, but the agreement with partner {partner.profile.id!r} names {wanted} (ebMS 3.0 "
        "section 5.2.2.7): the sender puts the agreed AgreementRef on its messages (none: leaves it out), or, if "
        "the partners agreed on this one, the receiving authority sets agreement.value (and agreement.type) in its "
        f"profile of partner {partner.profile.id!r}",
    )


def _parse_first(received: UserMessageReceived) -> ParsedDocument:
    """The permit document, the first payload: read (from its spool file) and parsed off the event loop."""
    return parse_document(received.payloads[0].read())


class Receiver:
    def __init__(
        self,
        *,
        store: MessageStore,
        permits: PermitRegistry,
        payloads: PayloadStore,
        partners: Partners,
        identity: IdentitySettings,
        keys: OwnKeys,
        clock: Clock,
        faults: Faults = NO_FAULTS,
        max_message_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        self._max_decompressed = max(MIN_DECOMPRESSED_CAP, max_message_bytes)
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

    def use_keys(self, keys: OwnKeys) -> None:
        """Decrypt a partner's message with our current, next or previous key of the partner's suite; sign the
        receipt with our current key of that suite."""
        self._keys = keys

    def _new_id(self) -> str:
        return message_id_for(self._identity.party_id, str(uuid.uuid4()))

    async def receive(
        self, content_type: str, body: bytes | IncomingFile, *, pulled: Pulled | None = None
    ) -> Reception:
        """Never raises for bad input: every refusal becomes a signed ebMS error signal. A large request
        arrives as an ``IncomingFile`` and is read from disk chunk by chunk. ``pulled`` names the partner
        and MPC a pulled message was pulled from."""
        now = self._clock.now()
        keys = self._keys
        sender: list[Partner] = []
        mismatch: list[EbmsError] = []
        parse = functools.partial(self._parse, sender=sender, mismatch=mismatch, pulled=pulled)
        try:
            check_content_type(content_type)
            if isinstance(body, bytes):
                received = parse(content_type, body, now, keys)
            else:  # seconds of decrypting and hashing for a large one: off the event loop
                received = await asyncio.to_thread(parse, content_type, body, now, keys)
            return await self._accept(received, content_type, body, sender[0], keys, mismatch)
        except EbmsError as exc:
            return Reception(response=self.refuse(exc, content_type, sender[0] if sender else None))

    def refuse(self, error: EbmsError, content_type: str, partner: Partner | None = None) -> Outgoing:
        """The answer to a refused request (logged and counted): also for one refused before its body is read."""
        log.warning(
            "message refused", code=error.code.code, detail=error.detail, message_id=error.ref_to_message_id
        )
        EBMS_ERRORS_SENT.labels(code=error.code.code).inc()
        soap_version = mime.soap_version_of(content_type) if content_type.isascii() else SoapVersion.SOAP12
        return self._error_signal(error, partner, self._keys, self._clock.now(), soap_version)

    def _error_signal(
        self, error: EbmsError, partner: Partner | None, keys: OwnKeys, now: datetime, soap_version: SoapVersion
    ) -> Outgoing:
        """Signed with our key of the sender's suite, so it can verify the signal; a sender we could not
        identify gets it signed with our default key. In the SOAP version the request announced."""
        suite, key = keys.answering(partner.policy.suite if partner is not None else None)
        return build_error_signal(
            error, key=key, message_id=self._new_id(), now=now, suite=suite, soap_version=soap_version
        )

    def _receipt(self, received: UserMessageReceived, partner: Partner, keys: OwnKeys) -> Outgoing:
        """Signed with our current key of the partner's suite; the partner verifies it under that suite."""
        suite = partner.policy.suite
        try:
            key = keys.signing_for(suite, partner=partner.profile.id)
        except GatewayError as exc:
            raise EbmsError(EbmsCode.OTHER, f"the receiving gateway cannot sign a receipt: {exc}") from None
        return build_receipt(
            received.user_message.message_id,
            received.references,
            key=key,
            message_id=self._new_id(),
            now=self._clock.now(),
            suite=suite,
            soap_version=received.soap_version,
        )

    def _parse(
        self,
        content_type: str,
        body: bytes | IncomingFile,
        now: datetime,
        keys: OwnKeys,
        *,
        sender: list[Partner],
        mismatch: list[EbmsError],
        pulled: Pulled | None = None,
    ) -> UserMessageReceived:
        """Open the message with our keys of the suite agreed with its sender; ``sender`` gets that partner, and
        ``mismatch`` what of the agreement the message does not match but a resend of a stored one may."""
        return parse_incoming(
            content_type,
            body if isinstance(body, bytes) else self._assemble(content_type, body),
            policy_for=functools.partial(self._policy_for, found=sender, mismatch=mismatch, pulled=pulled),
            keys=keys.decryption,
            now=now,
            spool=self._payloads.spool,
            spool_threshold=SPOOL_THRESHOLD,
            max_payload_bytes=self._max_decompressed,
        )

    def _assemble(self, content_type: str, body: IncomingFile) -> bytes | Package:
        if not content_type.strip().lower().startswith("multipart/"):
            if body.size > MAX_ENVELOPE_BYTES:  # refused before it is read into memory
                raise EbmsError(
                    EbmsCode.INVALID_HEADER,
                    f"SOAP envelope is {body.size} bytes, over the limit of {MAX_ENVELOPE_BYTES} bytes; send "
                    "payloads as MIME attachments",
                    envelope_unreadable=True,
                )
            return b"".join(body.chunks())
        assembler = PackageAssembler(content_type, spool=self._payloads.spool, spool_threshold=SPOOL_THRESHOLD)
        for chunk in body.chunks():
            assembler.feed(chunk)
        return assembler.close()

    def _policy_for(
        self,
        user_message: UserMessage,
        *,
        found: list[Partner],
        mismatch: list[EbmsError],
        pulled: Pulled | None = None,
    ) -> SecurityPolicy:
        partner = self._partner(user_message)
        found.append(partner)
        if pulled is not None:
            _check_pulled(user_message, partner, pulled)
        self._check_agreement(user_message, partner)
        try:  # checked after the duplicate lookup: a resend of a message accepted before the profile changed
            self._check_party_id_type(user_message)
            _check_roles(user_message, partner, pulled=pulled is not None)
            _check_collaboration(user_message, partner)
        except EbmsError as exc:
            mismatch.append(exc)
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
        """PMode matching (ebMS 3.0 appendix D, eDelivery AS4 1.15 section 1.4.2.2): the To PartyId with its type,
        both roles, the Service by value and type, the AgreementRef and the Action must be the agreement's."""
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

    def _check_party_id_type(self, user_message: UserMessage) -> None:
        recipient = user_message.to_party.primary
        if recipient.type != self._identity.party_id_type:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"To PartyId {recipient.value!r} has {_type_of(recipient.type)}, but this gateway's PartyId has type "
                f"{self._identity.party_id_type!r} ([identity] party_id_type): a PartyId is its value and type "
                "together (ebMS 3.0 section 5.2.2.4); the sender's profile of this gateway names that type",
            )

    async def _accept(
        self,
        received: UserMessageReceived,
        content_type: str,
        body: bytes | IncomingFile,
        partner: Partner,
        keys: OwnKeys,
        mismatch: Sequence[EbmsError] = (),
    ) -> Reception:
        """The message and its receipt are stored in one transaction before the receipt is sent: a crash
        leaves either nothing (the sender's retry starts over) or both (the retry gets the same receipt). A
        message that does not match the agreement (``mismatch``) is refused, unless it is the resend of one
        accepted before the agreement changed: that gets its stored receipt."""
        user_message = received.user_message
        if mismatch and (is_test_message(user_message) or not received.payloads):
            raise mismatch[0].with_ref(user_message.message_id)
        if is_test_message(user_message):
            log.info("test message receipted", message_id=user_message.message_id)
            return Reception(response=self._receipt(received, partner, keys))
        if not received.payloads:
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                "a permit message carries the permit document as its first payload; this one has no payload",
            )
        payload_sha256 = await asyncio.to_thread(_sha256_of, received.payloads[0])  # up to the permit size limit
        sender = user_message.from_party.primary.value
        sent, stored = await self._store.find_sent_and_received(user_message.message_id, sender)
        self._check_not_ours(user_message, sent)
        if stored is not None:
            return await self._duplicate(stored, await _content_key_off_loop(payload_sha256, received), user_message)
        if mismatch:
            raise mismatch[0].with_ref(user_message.message_id)
        # payload files are written and fsynced on a worker thread, not on the event loop
        new = await asyncio.to_thread(self._new_message, received, content_type, body, partner)
        document, recheck = await self._validate(new, received, partner)
        receipt = self._receipt(received, partner, keys)
        findings = [f.to_json() for f in document.findings]
        then_detail: dict[str, Any] = {
            "document_type": document.document_type.value,
            "document_number": document.number,
            "findings": findings,
        }

        async def keep() -> tuple[bool, MessageRecord]:
            async with unit_of_work(self._store, self._permits) as work:
                first = await work.record_permit(
                    document, direction=Direction.INBOUND, message_id=new.message_id, recheck=recheck
                )
                if not first:  # receipted (the sender needs it) and kept, but not delivered a second time
                    then_detail["first_message_id"] = await work.first_carrier(document)
                record, created = await work.add(
                    new,
                    detail={"signer": received.signer_certificate_sha256},
                    then=Event.ACCEPT if first else Event.DUPLICATE_DOCUMENT,
                    then_detail=then_detail,
                    evidence=Evidence(kind="receipt", content_type=receipt.content_type, body=receipt.body),
                    document_number=document.number,
                    findings=findings,  # delivered with the permit: the national officer acts on its warnings
                )
                if not created:  # a request with this MessageId committed meanwhile: keep nothing of this one
                    raise _StoredMeanwhile(record)
            if work.cancelled:  # committed; said here, where a request cut short still gets to
                log.info("permit cancellations took effect", **work.cancellations_said(document, new.message_id))
            return first, record

        try:
            first, record = await run_to_end(keep())  # a request cut short does not cut its transaction
        except PermitDocumentRejected as exc:
            await self._refuse(new, received, exc)
        except _StoredMeanwhile as meanwhile:
            return await self._duplicate(meanwhile.record, await _content_key_off_loop(payload_sha256, received), user_message)
        self._faults.hit("receive.before_answer")
        if not first:
            DUPLICATES.labels(partner=record.partner_id, outcome="document_resent").inc()
            log.warning(
                "permit received before under another MessageId; receipted, not delivered again",
                message_id=user_message.message_id,
                document=document.number,
                first_message_id=then_detail["first_message_id"],
            )
            return Reception(response=receipt, record=record, duplicate=True)
        log.info("message accepted", message_id=user_message.message_id, document=document.number)
        return Reception(response=receipt, record=record)

    def _check_not_ours(self, user_message: UserMessage, sent: MessageRecord | None) -> None:
        """A MessageId names one message (ebMS 3.0 section 5.2.2.1): a partner's message under the MessageId of
        one we sent (``sent``, the message we sent under it, if any) would make every lookup by that MessageId
        (the REST API, the national system's attachment URLs) ambiguous."""
        if sent is None:
            return
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"MessageId {user_message.message_id!r} is the MessageId of a message this gateway sent; a MessageId "
            "must be globally unique (ebMS 3.0 section 5.2.2.1): send the message under a new MessageId of the "
            "sender's own, and name the message it answers in RefToMessageId",
            ref_to_message_id=user_message.message_id,
        )

    def _new_message(
        self, received: UserMessageReceived, content_type: str, body: bytes | IncomingFile, partner: Partner
    ) -> NewMessage:
        """The received message as stored; its signed wire bytes are kept as evidence of what was sent.
        ``partner`` is the sender as identified when the message was opened: a reload meanwhile changes nothing
        for this message."""
        user_message = received.user_message
        payload = received.payloads[0]
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
            payload_sha256=self._payloads.put(payload.read()),
            payload_mime_type=payload.mime_type,
            wire_sha256=self._payloads.put(body) if isinstance(body, bytes) else body.keep(),
            wire_content_type=content_type,
            signed_references=[{"uri": r.uri, "digest": r.digest_value} for r in received.references],
            attachments=[self._keep(p, n).to_json() for n, p in enumerate(received.payloads[1:], 1)] or None,
            header_digests=header_digests(user_message),
        )

    def _keep(self, payload: Payload, position: int) -> Attachment:
        """A supporting document: stored as it came (from its spool file when large), named by its FileName."""
        if payload.file is not None:
            sha256, size = self._payloads.put_file(payload.file)
        else:
            sha256, size = self._payloads.put(payload.data), len(payload.data)
        name = next((p.value for p in payload.properties if p.name == FILENAME_PROPERTY), None)
        return Attachment(
            position=position,
            filename=safe_filename(name, position),
            mime_type=payload.mime_type,
            sha256=sha256,
            size=size,
        )

    async def _validate(
        self, new: NewMessage, received: UserMessageReceived, partner: Partner
    ) -> tuple[PermitDocument, Recheck]:
        """Check the permit against the registry (recorded there later, with the message, in one unit of work,
        which checks it again under the registry's locks); a refused one is stored REJECTED with its findings,
        and the sender told why."""
        try:
            # in a thread: a large document must not stall the node's other traffic
            parsed = await on_documents_thread(_parse_first, received)
            context = await self._permits.context_for(parsed.outline)
            as_of = self._clock.now().date()
            document = await on_documents_thread(validate_document, parsed, as_of=as_of, context=context)
            self._check_sender(document, received, partner)
            return document, Recheck(parsed, as_of)
        except PermitDocumentRejected as exc:
            await self._refuse(new, received, exc)

    def _check_sender(self, document: PermitDocument, received: UserMessageReceived, partner: Partner) -> None:
        """A partner sends only what its own authority issued, under that document type's Action, to us."""
        user_message = received.user_message
        findings = sender_findings(
            document,
            sender_country=partner.profile.country,
            action_type=document_type_for(user_message.service, user_message.action),
            own_country=self._identity.country,
        )
        if findings:
            raise PermitDocumentRejected(findings)

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
        FAILURES.labels(direction=Direction.INBOUND.value, partner=new.partner_id).inc()
        raise EbmsError(
            EbmsCode.DELIVERY_FAILURE,
            f"the permit document was refused by the receiving authority's checks: {reason}",
            ref_to_message_id=new.message_id,
        ) from None

    async def _duplicate(
        self, stored: MessageRecord, content: dict[str, object], user_message: UserMessage
    ) -> Reception:
        differing = _differences(content, header_digests(user_message), stored)
        if differing:
            what = f"different {', '.join(differing)}"
            reason = f"same MessageId, {what}"
            await self._note(stored, "duplicate_refused", {"reason": reason})
            DUPLICATES.labels(partner=stored.partner_id, outcome="refused").inc()
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"MessageId {stored.message_id!r} was already received with different content ({what}); "
                "a retry must resend the same message, a new message needs a new MessageId",
                ref_to_message_id=stored.message_id,
            )
        evidence = await self._store.get_evidence(stored.id, "receipt")
        if evidence is None:
            raise EbmsError(
                EbmsCode.DELIVERY_FAILURE,
                f"MessageId {stored.message_id!r} was received before and refused ({stored.last_error})",
                ref_to_message_id=stored.message_id,
            )
        await self._note(stored, "duplicate", {"answer": "original receipt"})
        DUPLICATES.labels(partner=stored.partner_id, outcome="receipt_resent").inc()
        content_type, body = evidence
        response = Outgoing(message_id=stored.message_id, content_type=content_type, body=body)
        return Reception(response=response, record=stored, duplicate=True)

    async def _note(self, stored: MessageRecord, kind: str, detail: dict[str, object]) -> None:
        """A duplicate's line in the timeline, best effort: the answer (the stored receipt, or the refusal) needs
        only reads, and a full disk or a database failing over must not turn it into "not kept" for a message
        that was kept and receipted."""
        try:
            await self._store.note(stored.id, kind, detail)
        except Exception as exc:
            if not (is_disk_full(exc) or is_unavailable(exc)):
                raise
            log.warning(
                "a duplicate could not be noted in the message's timeline; answered all the same",
                message_id=stored.message_id,
                kind=kind,
                reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            )


def check_content_type(content_type: str) -> None:
    """The HTTP Content-Type must be ASCII (RFC 9110 section 5.5: other octets are opaque, and MIME parameter values
    are ASCII): one that is not cannot be parsed, nor kept with the message as evidence."""
    if content_type.isascii():
        return
    shown = content_type.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:300]
    raise EbmsError(
        EbmsCode.MIME_INCONSISTENCY,
        f"the HTTP Content-Type header has bytes that are not ASCII ({shown}); send a Content-Type of ASCII "
        "characters alone (RFC 2045, RFC 9110 section 5.5): a parameter value with other characters goes "
        "RFC 2231-encoded, or is left out",
        envelope_unreadable=True,
    )


_PAYLOADS = ("permit document", "attachments")


async def _content_key_off_loop(permit_sha256: str, received: UserMessageReceived) -> dict[str, object]:
    """``_content_key`` on a worker thread: a resent message's attachments (up to 1 GiB) are hashed again."""
    return await asyncio.to_thread(_content_key, permit_sha256, received)


def _content_key(permit_sha256: str, received: UserMessageReceived) -> dict[str, object]:
    """What makes two messages with one MessageId the same, with the header's digests: the header fields kept in
    columns, the permit and every attachment by SHA-256. Not the Timestamp, the ids or the signature, which a
    sender's retry may renew."""
    um = received.user_message
    return {
        "ConversationId": um.conversation_id,
        "Service": um.service,
        "Action": um.action,
        "RefToMessageId": um.ref_to_message_id,
        "To PartyId": um.to_party.primary.value,
        "permit document": permit_sha256,
        "attachments": tuple(_sha256_of(p) for p in received.payloads[1:]),
    }


def _differences(content: dict[str, object], header: dict[str, str], stored: MessageRecord) -> list[str]:
    """What differs from the stored message, by name. A message stored before migration 0011 has no header
    digests: it is compared on the columns alone."""
    kept = _stored_content(stored)
    if stored.header_digests is None:
        return [name for name in kept if content[name] != kept[name]]
    differing = [name for name in _PAYLOADS if content[name] != kept[name]]
    items = list(stored.header_digests) + [name for name in header if name not in stored.header_digests]
    return [_label(name) for name in items if header.get(name) != stored.header_digests.get(name)] + differing


def _label(item: str) -> str:
    if item.startswith("PartInfo "):
        return f"{item} (its MimeType or other part properties, Schema or Description)"
    return item


def header_digests(user_message: UserMessage) -> dict[str, str]:
    """The signed eb:UserMessage but its Timestamp and MessageId, one SHA-256 per item, in a canonical form that
    ids, prefixes, whitespace and the order of properties do not change: what a retry must repeat. Payload
    ``n`` (1 the permit) is ``PartInfo n``, by its position, not by its Content-ID."""
    um = user_message
    items: dict[str, object] = {
        "RefToMessageId": um.ref_to_message_id,
        "mpc": um.mpc,
        "From party": _party(um.from_party.party_ids, um.from_party.role),
        "To party": _party(um.to_party.party_ids, um.to_party.role),
        "AgreementRef": [um.agreement_ref, um.agreement_ref_type, um.agreement_ref_pmode],
        "Service": [um.service, um.service_type],
        "Action": um.action,
        "ConversationId": um.conversation_id,
        "MessageProperties": _properties(um.properties),
    }
    for n, part in enumerate(um.parts, 1):
        items[f"PartInfo {n}"] = _part(part)
    return {name: _digest(value) for name, value in items.items()}


def _party(party_ids: tuple[PartyId, ...], role: str) -> list[object]:
    # sorted: a sender may keep several PartyIds in a set, and send them in another order on a retry
    return [sorted(([p.value, p.type] for p in party_ids), key=json.dumps), role]


def _properties(properties: tuple[Property, ...]) -> list[list[str | None]]:
    return sorted(([p.name, p.type, p.value] for p in properties), key=json.dumps)


def _part(part: PartInfo) -> list[object]:
    schemas = [[s.location, s.version, s.namespace] for s in part.schemas]
    return [part.href is None, _properties(part.properties), schemas, part.description, part.description_lang]


def _digest(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored_content(stored: MessageRecord) -> dict[str, object]:
    return {
        "ConversationId": stored.conversation_id,
        "Service": stored.service,
        "Action": stored.action,
        "RefToMessageId": stored.ref_to_message_id,
        "To PartyId": stored.to_party,
        "permit document": stored.payload_sha256,
        "attachments": tuple(a.sha256 for a in attachments_of(stored.attachments)),
    }


def _sha256_of(payload: Payload) -> str:
    if payload.file is None:
        return hashlib.sha256(payload.data).hexdigest()
    return sha256_of_file(payload.file)
