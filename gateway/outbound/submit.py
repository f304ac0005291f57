"""Submission: a national system's permit document becomes a durable, signed and encrypted AS4 message.

The document is validated against what the permit registry knows, its partner chosen from what the permit
says (an import authorization goes to the exporting country's authority, an export authorization to the
importing country's), the AS4 message is built once, the document is recorded in the registry (an export
draws on its import there) and the message stored, before the submitter hears "accepted". Retries resend
these same bytes. The registry row and the message row are one transaction (a unit of work): both or neither.

A document is sent once. The same document submitted again (a national system that did not hear our answer
and tries again) is answered with the message that carries it, not sent under a new MessageId; if that message
FAILED, it goes again under its own MessageId, or, when its signed bytes can no longer be delivered, as a message
built anew that supersedes it (``gateway.outbound.retry`` decides, for an operator's retry too). The registry's
unique document key decides between two submissions of one document racing each other.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta

import structlog

from gateway.as4 import (
    DEFAULT_MPC,
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsError,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    Property,
    SignedReference,
    UserMessage,
    build_user_message,
    build_user_message_streamed,
    message_id_for,
)
from gateway.as4.mime import MAX_ROOT_PART_BYTES
from gateway.as4.policy import SUITES
from gateway.clock import Clock
from gateway.documents import (
    DocumentKey,
    DocumentReference,
    Finding,
    PermitDocument,
    parse_document,
    validate_document,
)
from gateway.documents.types import DocumentType, service_action
from gateway.errors import GatewayError, ProfileError, StoreError
from gateway.faults import NO_FAULTS, Faults
from gateway.files import sha256_of_file
from gateway.outbound.retry import BuiltWith, NotRetryable, built_with_of, latest_carrier, retry_failed
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.model import Transport, agreement_ref
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import (
    Attachment,
    Direction,
    MessageRecord,
    MessageStore,
    NewAttachment,
    NewMessage,
    PayloadStore,
    PermitRegistry,
    State,
)
from gateway.store.attachments import FILENAME_PROPERTY, attachments_of, safe_filename
from gateway.store.lifecycle import Event, IllegalTransition
from gateway.store.permits import KnownDocument, PermitContext, Recheck
from gateway.store.unit import unit_of_work
from gateway.tasks import on_documents_thread, run_to_end

log = structlog.get_logger("gateway.outbound")

PERMIT_MIME_TYPE = "application/xml"
MAX_ATTACHMENTS = 100
MIME_HEADERS_BYTES = 64 * 1024
"""The most supporting documents one submission carries, through the REST API or the outbox folder: each is an
AS4 payload of its own, and each is an open file while the message is packed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The message that carries a submitted document; ``created`` is False when an earlier submission of the
    same document made it (then ``findings`` is empty: the document was checked then)."""

    record: MessageRecord
    findings: tuple[Finding, ...]
    created: bool
    supersedes: str | None = None
    """The FAILED message whose document a message built anew (``created``) carries now."""


class AlreadySent(GatewayError):
    """The document was sent before and this submission cannot be answered with that message."""


class TooManyAttachments(GatewayError):
    """More supporting documents than one submission carries (``MAX_ATTACHMENTS``)."""

    def __init__(self, counted: str) -> None:
        super().__init__(
            f"{counted}; a submission carries at most {MAX_ATTACHMENTS} supporting documents, each an AS4 payload "
            "of its own: combine them into fewer files (one PDF of the scans, or a ZIP archive) and submit again"
        )


class _KeptMeanwhile(Exception):
    """A concurrent submission of the same document was kept first: this one's unit of work rolls back."""


def new_message_id(identity: IdentitySettings) -> str:
    """RFC 2822 msg-id form, a UUID on the left as eDelivery recommends; it never changes on retry."""
    return message_id_for(identity.party_id, str(uuid.uuid4()))


def choose_partner(
    document: PermitDocument,
    partners: Partners,
    identity: IdentitySettings,
    partner_id: str | None,
    *,
    sent_to: Sequence[str] = (),
) -> Partner:
    """The partner a document goes to: the one named; else the one profile of its counterpart country; else,
    of several, the one of the authority whose document it refers to, or the one our document it refers to went
    to (``sent_to``, profile ids: an amendment goes where its subject went); else the one enabled."""
    if document.issuing_country != identity.country:
        raise ProfileError(
            f"{document.document_type} {document.number} was issued by {document.issuing_country}; this gateway "
            f"sends only documents issued by its own country ({identity.country})"
        )
    if partner_id is not None:
        return _named_partner(document, partners, identity, partner_id)
    country = document.counterpart_country
    found = partners.for_country(country, exclude_party=identity.party_id)
    goes = f"{document.document_type} {document.number} goes to {country} ({_counterpart_role(document)})"
    if not found:
        raise ProfileError(
            f"{goes}, and there is no partner profile for {country}: add the profile of {country}'s competent "
            "authority to the partner profile folder (partner_profiles/README.md), then submit the document again"
        )
    if len(found) == 1:
        return found[0]
    referenced = referenced_authorities(document)
    if referenced or sent_to:
        return _answered(goes, found, referenced, sent_to)
    enabled = [p for p in found if p.profile.enabled]
    if len(enabled) == 1:  # the others suspended: how the outbox folder, which names no partner, chooses
        return enabled[0]
    raise ProfileError(f"{goes}, {_several(country, found)}")


def referenced_authorities(document: PermitDocument) -> tuple[str, ...]:
    """The AuthorityIds of the counterpart country's documents this one refers to (an ExportAuthorization's
    ImportAuthorization, an endorsement's ExportAuthorization, the document an acknowledgement is about): the
    authority it answers, and so the partner it goes to."""
    country = document.counterpart_country
    found = (ref.issuing_authority for ref in _references(document) if ref.issuing_country == country)
    return tuple(dict.fromkeys(found))


def _references(document: PermitDocument) -> tuple[DocumentReference, ...]:
    refs = (document.import_authorization_ref, document.export_authorization_ref, document.subject_ref)
    return tuple(ref for ref in refs if ref is not None)


def _answered(goes: str, found: Sequence[Partner], referenced: tuple[str, ...], sent_to: Sequence[str]) -> Partner:
    """Of several profiles for the counterpart country, the one of the authority the document answers, else
    the one our document it refers to went to. A suspended one is returned too: its messages are held, never
    sent to another authority instead."""
    for matching in (
        [p for p in found if p.profile.party_id in referenced],
        [p for p in found if p.profile.id in sent_to],
    ):
        if len(matching) == 1:
            return matching[0]
    raise ProfileError(_unmatched(goes, found, referenced, sent_to))


def _unmatched(goes: str, found: Sequence[Partner], referenced: tuple[str, ...], sent_to: Sequence[str]) -> str:
    """Why a document that refers to another cannot go: not exactly one of the several profiles for its country
    is that of the authority it refers to, or of the partner our document it refers to went to."""
    listed = ", ".join(
        f"{p.profile.id} ({p.profile.party_id}{'' if p.profile.enabled else ', suspended'})" for p in found
    )
    to = [f"the authority whose document it refers to ({' and '.join(referenced)})"] if referenced else []
    to += [f"the partner our document it refers to went to ({' and '.join(sent_to)})"] if sent_to else []
    folders = " or ".join(f"outbox/{p.profile.id}/" for p in found if p.profile.id != "sent")
    sent = (  # outbox/sent/ keeps the sent files: a profile of that id has no subfolder
        " (the profile sent has none, as outbox/sent/ keeps the sent files: name it through the REST API)"
        if any(p.profile.id == "sent" for p in found)
        else ""
    )
    return (
        f"{goes}, to {' or '.join(to)}, and not exactly one of the {len(found)} profiles for that country is "
        f"that one: {listed}. Correct the AuthorityId in the document's reference, or the party_id of that "
        "authority's profile (or restore the profile our document went to); or name the partner: through the "
        f"outbox folder, drop the file in the subfolder named after the partner's profile id: {folders}{sent}; "
        "through the REST API, POST /api/v1/documents?partner=PROFILE_ID"
    )


def _counterpart_role(document: PermitDocument) -> str:
    exporting = document.issuing_country == document.importing_country
    return "its exporting country" if exporting else "its importing country"


def _several(country: str, found: Sequence[Partner]) -> str:
    """Why a document that names no partner cannot go when several profiles are for its country, and how a REST
    client and the outbox folder (through a partner subfolder, ``gateway.interfaces.folder``) each name one."""
    listed = ", ".join(p.profile.id + ("" if p.profile.enabled else " (suspended)") for p in found)
    named = " or ".join(f"?partner={p.profile.id}" for p in found)
    folders = " or ".join(f"outbox/{p.profile.id}/" for p in found if p.profile.id != "sent")
    sent = (  # outbox/sent/ keeps the sent files: a profile of that id has no subfolder
        " (the profile sent has none, as outbox/sent/ keeps the sent files: name it through the REST API)"
        if any(p.profile.id == "sent" for p in found)
        else ""
    )
    return (
        f"and {len(found)} partner profiles are for {country}: {listed}; the gateway does not choose between "
        f"them (it does for a document that refers to one of their documents: it goes to the authority that "
        f"issued that one). Through the outbox folder, drop the file in the subfolder named after the partner's "
        f"profile id: {folders}{sent}. Through the REST API, name the partner: POST /api/v1/documents{named}"
    )


def _named_partner(
    document: PermitDocument, partners: Partners, identity: IdentitySettings, partner_id: str
) -> Partner:
    """A partner named in the submission; never our own profile, whose messages come back to us as a partner's
    reuse of our MessageId and fail for good."""
    partner = partners.get(partner_id)
    if partner.profile.party_id == identity.party_id:
        raise ProfileError(
            f"partner {partner_id!r} is this gateway's own profile (PartyId {identity.party_id}); "
            f"{document.document_type} {document.number} goes to another authority: name the profile of "
            f"{document.counterpart_country}'s competent authority, or leave the partner out"
        )
    country, counterpart = partner.profile.country, document.counterpart_country
    if country != counterpart:  # the permit's trade data would go to an authority that is no party to the trade
        others = [p.profile.id for p in partners.for_country(counterpart, exclude_party=identity.party_id)]
        instead = f" ({', '.join(others)})" if others else " (there is none yet: add one)"
        raise ProfileError(
            f"partner {partner_id!r} is an authority of {country}, and {document.document_type} "
            f"{document.number} goes to {counterpart} ({_counterpart_role(document)}): a permit goes only to the "
            f"other country of its trade. Name the profile of {counterpart}'s competent authority{instead} or "
            f"leave the partner out; if the trade is with {country}, correct the document's country instead"
        )
    return partner


class Submitter:
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
    ) -> None:
        self._faults = faults
        self._store = store
        self._permits = permits
        self._payloads = payloads
        self._partners = partners
        self._identity = identity
        self._keys = keys
        self._clock = clock

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners

    def use_keys(self, keys: OwnKeys) -> None:
        """Sign new messages with ``keys`` (after a rollover); stored messages keep their signatures."""
        self._keys = keys

    async def _sent_to(self, document: PermitDocument, context: PermitContext) -> tuple[str, ...]:
        """The partners (profile ids) our own documents this one refers to went to: an amendment, a
        cancellation or an execution goes where its subject went."""
        found = []
        for ref in _references(document):
            known = context.known.get(ref.key) if ref.issuing_country == self._identity.country else None
            if known is None or known.direction is not Direction.OUTBOUND:
                continue
            record = await self._store.find(Direction.OUTBOUND, known.message_id)
            if record is not None:
                found.append(record.partner_id)
        return tuple(dict.fromkeys(found))

    async def submit(
        self, data: bytes, *, partner_id: str | None = None, attachments: Sequence[NewAttachment] = ()
    ) -> Submitted:
        """Validate, route, pack and store one permit document (and its supporting documents, each an AS4
        payload of its own); raises with the reason when it cannot go."""
        if len(attachments) > MAX_ATTACHMENTS:
            raise TooManyAttachments(f"{len(attachments)} supporting documents were given")
        now = self._clock.now()
        parsed = await on_documents_thread(parse_document, data)  # a large document must not stall the node
        context = await self._permits.context_for(parsed.outline)
        outline = parsed.outline
        kept = context.known.get(outline.key) if outline is not None else None
        if outline is not None and kept is not None and kept.content_sha256 == outline.content_sha256:
            return await self._submitted_before(kept, partner_id, attachments)
        document = await on_documents_thread(validate_document, parsed, as_of=now.date(), context=context)
        recheck = Recheck(parsed, now.date())
        sent_to = await self._sent_to(document, context) if partner_id is None else ()
        partner = choose_partner(document, self._partners, self._identity, partner_id, sent_to=sent_to)
        self._partners.usable(partner, now)
        _check_agreed(document, partner, len(data))
        supporting = await asyncio.to_thread(self._keep_all, attachments, partner) if attachments else []
        new = await self._packed(document.document_type, document.number, data, supporting, partner)
        detail: dict[str, object] = {
            "document_type": document.document_type.value,
            "document_number": document.number,
            "findings": [f.to_json() for f in document.findings],  # the checks' verdict, kept for audits
        }
        if attachments:
            detail["attachments"] = len(attachments)

        async def keep() -> tuple[MessageRecord, bool]:
            async with unit_of_work(self._store, self._permits) as work:
                recorded = await work.record_permit(
                    document, direction=Direction.OUTBOUND, message_id=new.message_id, recheck=recheck
                )
                if not recorded:
                    raise _KeptMeanwhile
                record, created = await work.add(new, detail=detail)
            if work.cancelled:  # committed; said here, where a request cut short still gets to
                log.info("permit cancellations took effect", **work.cancellations_said(document, new.message_id))
            return record, created

        try:
            record, created = await run_to_end(keep())  # a request cut short does not cut its transaction
        except _KeptMeanwhile:
            if new.wire_sha256:  # signed under this submission's own MessageId: nothing else can name it
                await asyncio.to_thread(self._payloads.remove, new.wire_sha256, untouched_for=timedelta(0))
            context = await self._permits.context_for(outline)
            return await self._submitted_before(context.known[document.key], partner_id, attachments)
        self._faults.hit("submit.before_answer")
        if created:
            log.info(
                "message submitted",
                message_id=record.message_id,
                partner=record.partner_id,
                document=f"{document.document_type} {document.number}",
            )
        return Submitted(record=record, findings=document.findings, created=created)

    async def _packed(
        self,
        document_type: DocumentType,
        number: str,
        data: bytes,
        supporting: list[Attachment],
        partner: Partner,
        *,
        anew: MessageRecord | None = None,
    ) -> NewMessage:
        """The signed and encrypted message built and its files stored: the message row to insert (built
        ``anew`` in place of a message, in its conversation)."""
        sender = self._keys.signing_for(partner.policy.suite, partner=partner.profile.id)
        user_message = _user_message(self._identity, self._clock, document_type, partner, anew=anew)
        if supporting:  # seconds of copying, compressing and encrypting for large ones: off the event loop
            wire_sha256, content_type, references = await asyncio.to_thread(
                self._pack_streamed, user_message, data, supporting, partner, sender
            )
            payload_sha256 = await self._payloads.write(data)
        else:
            outgoing = self._pack(user_message, data, partner, sender)
            payload_sha256, wire_sha256 = await self._payloads.write_all(data, outgoing.body)
            content_type, references = outgoing.content_type, _signed(outgoing.references)
        ttl = timedelta(hours=partner.profile.reception_awareness.time_to_live_hours)
        return NewMessage(
            direction=Direction.OUTBOUND,
            message_id=user_message.message_id,
            conversation_id=user_message.conversation_id,
            mpc=user_message.mpc,
            partner_id=partner.profile.id,
            from_party=self._identity.party_id,
            to_party=partner.profile.party_id,
            service=user_message.service,
            action=user_message.action,
            document_type=document_type.value,
            document_number=number,
            payload_sha256=payload_sha256,
            payload_mime_type=PERMIT_MIME_TYPE,
            wire_sha256=wire_sha256,
            wire_content_type=content_type,
            signed_references=references,
            attachments=[a.to_json() for a in supporting] or None,
            expires_at=user_message.timestamp + ttl,
        )

    async def _submitted_before(
        self, kept: KnownDocument, partner_id: str | None, attachments: Sequence[NewAttachment]
    ) -> Submitted:
        """The message that carries this document (the one built anew in place of the first, if one was); a
        FAILED one goes again."""
        record = await latest_carrier(self._store, await self._carrier(kept))
        if partner_id is not None and partner_id != record.partner_id:
            raise AlreadySent(
                f"{_named(kept.document.key)} was sent to partner {record.partner_id!r} as message "
                f"{record.message_id!r}; a permit document goes to one partner, once"
            )
        sent = tuple(a.sha256 for a in attachments_of(record.attachments))
        given = await asyncio.to_thread(_sha256_of_files, attachments)
        if given != sent:
            raise AlreadySent(
                f"{_named(kept.document.key)} was sent as message {record.message_id!r} with {len(sent)} supporting "
                f"document(s); this submission has {len(given)} and they differ. A sent permit is not sent again "
                "with other supporting documents: submit an Amendment of it carrying them"
            )
        if record.state is not State.FAILED:
            return Submitted(record=record, findings=(), created=False)
        again = await self._resend(record)
        if again.message_id == record.message_id:
            return Submitted(record=again, findings=(), created=False)
        return Submitted(record=again, findings=(), created=True, supersedes=record.message_id)

    async def _carrier(self, kept: KnownDocument) -> MessageRecord:
        if kept.direction is not Direction.OUTBOUND:
            raise AlreadySent(
                f"{_named(kept.document.key)} was received from a partner in message {kept.message_id!r}; "
                "this gateway sends only documents it did not receive"
            )
        record = await self._store.find(Direction.OUTBOUND, kept.message_id)
        if record is None:
            raise AlreadySent(
                f"{_named(kept.document.key)} was sent as message {kept.message_id!r}, whose record the retention "
                "purge has since removed; a permit document is sent once. Submit an Amendment or a Cancellation "
                "to change or withdraw it"
            )
        return record

    async def _resend(self, record: MessageRecord) -> MessageRecord:
        try:
            return await retry_failed(
                self._store,
                self._partners,
                self._clock,
                record.message_id,
                reason="the national system submitted the same document again",
                event=Event.RESUBMITTED,
                rebuilder=self,
            )
        except (NotRetryable, IllegalTransition):  # another submission or an operator sent it again meanwhile
            again = await self._store.find(Direction.OUTBOUND, record.message_id)
            return await latest_carrier(self._store, again or record)

    async def built_with(self, record: MessageRecord) -> BuiltWith | str:
        """What a stored message's signed bytes were built with (``Rebuilder``), read from their envelope."""
        return await stored_built_with(self._payloads, record)

    def building_with(self, record: MessageRecord, partner: Partner) -> BuiltWith:
        """What a message carrying ``record``'s document would be built with now (``Rebuilder``)."""
        return building_with_now(self._identity, self._clock, record, partner)

    async def rebuild(
        self, record: MessageRecord, partner: Partner, *, because: str, reason: str
    ) -> MessageRecord:
        """A new message from ``record``'s stored document and supporting documents, built under the partner's
        current profile, superseding ``record`` (``Rebuilder``). Its MessageId follows from ``record``'s, so
        two rebuilds racing each other make one message."""
        self._partners.usable(partner, self._clock.now())
        if record.document_type is None or record.document_number is None:
            raise NotRetryable(f"message {record.message_id!r} carries no permit document to build anew")
        data = await asyncio.to_thread(self._payloads.get, record.payload_sha256)
        supporting = attachments_of(record.attachments)
        new = await self._packed(
            DocumentType(record.document_type), record.document_number, data, supporting, partner, anew=record
        )
        detail: dict[str, object] = {
            "document_type": record.document_type,
            "document_number": record.document_number,
        }
        why = {"reason": reason, "because": because}
        kept = await self._store.supersede(record, new, detail=detail, why=why)
        if kept is None or not kept[1]:
            if new.wire_sha256:
                await asyncio.to_thread(self._payloads.remove, new.wire_sha256, untouched_for=timedelta(0))
            if kept is None:
                raise NotRetryable(
                    f"message {record.message_id!r} was sent again meanwhile; it is no longer FAILED"
                )
            return kept[0]
        log.info(
            "FAILED message built anew", message_id=new.message_id, supersedes=record.message_id, because=because
        )
        return kept[0]

    def _keep_all(self, attachments: Sequence[NewAttachment], partner: Partner) -> list[Attachment]:
        return [self._keep(a, position, partner) for position, a in enumerate(attachments, start=1)]

    def _keep(self, attachment: NewAttachment, position: int, partner: Partner) -> Attachment:
        """Store a supporting document before anything refers to it; too large for the partner -> refused
        before it is stored."""
        size = attachment.file.seek(0, os.SEEK_END)
        limit = partner.profile.max_payload_bytes
        if size > limit:
            raise ProfileError(
                f"attachment {position} ({attachment.filename!r}) is {size} bytes; partner {partner.profile.id!r} "
                f"accepts payloads up to {limit} bytes (max_payload_bytes in its profile)"
            )
        sha256, size = self._payloads.put_file(attachment.file)
        return Attachment(
            position=position,
            filename=safe_filename(attachment.filename, position),
            mime_type=attachment.mime_type,
            sha256=sha256,
            size=size,
        )

    def _pack(self, user_message: UserMessage, data: bytes, partner: Partner, sender: KeyPair) -> Outgoing:
        """The signed, encrypted message, built once under the partner's security suite."""
        permit = Payload(content_id=_content_id("permit"), mime_type=PERMIT_MIME_TYPE, data=data)
        return build_user_message(
            user_message,
            [permit],
            sender=sender,
            recipient_certificate=partner.certificates.encryption,
            compress=partner.profile.compression,
            suite=partner.policy.suite,
        )

    def _pack_streamed(
        self,
        user_message: UserMessage,
        data: bytes,
        attachments: list[Attachment],
        partner: Partner,
        sender: KeyPair,
    ) -> tuple[str, str, list[dict[str, str]]]:
        """``_pack`` with supporting documents, through spool files, never whole in memory; stores the wire
        bytes: (wire SHA-256, Content-Type, signed references)."""
        permit = Payload(content_id=_content_id("permit"), mime_type=PERMIT_MIME_TYPE, data=data)
        with ExitStack() as files:
            payloads = [permit] + [
                Payload(
                    content_id=_content_id(f"attachment-{a.position}"),
                    mime_type=a.mime_type,
                    file=files.enter_context(self._payloads.open(a.sha256)),
                    properties=(Property(name=FILENAME_PROPERTY, value=a.filename),),
                )
                for a in attachments
            ]
            streamed = build_user_message_streamed(
                user_message,
                payloads,
                sender=sender,
                recipient_certificate=partner.certificates.encryption,
                spool=lambda: files.enter_context(self._payloads.spool()),
                compress=partner.profile.compression,
                suite=partner.policy.suite,
            )
            wire_sha256, _ = self._payloads.put_chunks(streamed.chunks())
        return wire_sha256, streamed.content_type, _signed(streamed.references)


async def stored_built_with(payloads: PayloadStore, record: MessageRecord) -> BuiltWith | str:
    """What a stored message's signed bytes were built with, read from their envelope, or why they cannot be
    read. Needs no keys: the messages CLI decides a retry with it where our private key cannot be read."""
    if record.wire_sha256 is None or record.wire_content_type is None:
        return "no signed bytes are stored"
    try:
        head = await asyncio.to_thread(_head, payloads, record.wire_sha256)
        return built_with_of(record.wire_content_type, head)
    except (StoreError, OSError, ValueError, EbmsError) as exc:
        return str(exc) or type(exc).__name__


def _head(payloads: PayloadStore, sha256: str) -> bytes:
    """Enough of the stored bytes for their envelope, the first MIME part: never a large message whole."""
    with payloads.open(sha256) as wire:
        return wire.read(MAX_ROOT_PART_BYTES + MIME_HEADERS_BYTES)


def building_with_now(
    identity: IdentitySettings, clock: Clock, record: MessageRecord, partner: Partner
) -> BuiltWith:
    """What a message carrying ``record``'s document would be built with now. Needs no keys (see above)."""
    document_type = DocumentType(record.document_type or "")
    return BuiltWith(
        user_message=_user_message(identity, clock, document_type, partner, anew=record),
        encrypted_for=partner.certificates.encryption,
        signature_method=SUITES[partner.policy.suite].signature.value,
    )


def _user_message(
    identity: IdentitySettings,
    clock: Clock,
    document_type: DocumentType,
    partner: Partner,
    *,
    anew: MessageRecord | None = None,
) -> UserMessage:
    service, action = service_action(document_type)
    ours = PartyId(value=identity.party_id, type=identity.party_id_type)
    theirs = PartyId(value=partner.profile.party_id, type=partner.profile.party_id_type)
    agreement = agreement_ref(partner.profile)
    return UserMessage(
        message_id=new_message_id(identity) if anew is None else _anew_id(identity, anew),
        timestamp=clock.now(),
        from_party=Party(party_ids=(ours,), role=partner.profile.roles.initiator or ROLE_INITIATOR),
        to_party=Party(party_ids=(theirs,), role=partner.profile.roles.responder or ROLE_RESPONDER),
        service=service,
        action=action,
        conversation_id=str(uuid.uuid4()) if anew is None else anew.conversation_id,
        mpc=partner.profile.pull.mpc if partner.profile.transport is Transport.PULL else DEFAULT_MPC,
        agreement_ref=agreement[0],
        agreement_ref_type=agreement[1],
        agreement_ref_pmode=agreement[2],
    )


def _anew_id(identity: IdentitySettings, record: MessageRecord) -> str:
    """The MessageId of the message built anew in place of ``record``: always the same for one ``record``."""
    return message_id_for(identity.party_id, str(uuid.uuid5(uuid.NAMESPACE_URL, record.message_id)))


def _check_agreed(document: PermitDocument, partner: Partner, size: int) -> None:
    """The partner takes this type of document, and a permit this large (each attachment is checked as kept)."""
    if document.document_type not in partner.profile.documents.send:
        raise ProfileError(
            f"partner {partner.profile.id!r} does not accept {document.document_type} documents "
            f"(documents.send in its profile lists: {', '.join(partner.profile.documents.send) or 'none'})"
        )
    if size > partner.profile.max_payload_bytes:
        raise ProfileError(
            f"{document.document_type} {document.number} is {size} bytes; partner {partner.profile.id!r} "
            f"accepts payloads up to {partner.profile.max_payload_bytes} bytes (max_payload_bytes in its profile)"
        )


def _named(key: DocumentKey) -> str:
    return f"{key.document_type} {key.number} (issued by {key.issuing_country})"


def _sha256_of_files(attachments: Sequence[NewAttachment]) -> tuple[str, ...]:
    return tuple(sha256_of_file(a.file) for a in attachments)


def _content_id(what: str) -> str:
    return f"{what}-{uuid.uuid4()}@permit-gateway"


def _signed(references: Sequence[SignedReference]) -> list[dict[str, str]]:
    """What the store keeps of each signed reference, to check the receipt against."""
    return [{"uri": r.uri, "digest": r.digest_value} for r in references]
