"""Sending a FAILED outbound message again: an operator's retry, or the national system submitting its document
again. One decision for both: the same MessageId and the same signed bytes go out again, with a fresh round of
attempts and a fresh time to live from the partner's current profile (cut short where the signed eb:Timestamp
would grow older than the partner's duplicate-detection window); or, when those bytes can no longer be
delivered, a message built anew from the stored document under the current profile, which supersedes it.

Bytes that can no longer be delivered: they are past the duplicate window (the partner refuses them as too old,
EBMS:0003), or what they were built with is not what the partner's profile says now (its PartyId, roles,
Service/Action, MPC, AgreementRef, encryption certificate or security suite were corrected after the message was
built: the same bytes would fail again however often they were sent). What they were built with is read from the
stored bytes themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.as4 import Party, UserMessage, mime
from gateway.as4 import _ns as ns
from gateway.as4.agreement import agreement_method, recipient_key_info
from gateway.as4.envelope import parse_envelope
from gateway.as4.header import parse_user_message
from gateway.as4.wss import index_ids, resolve_certificate
from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.profiles.trust import Partner, Partners
from gateway.settings import InboundSettings
from gateway.store import Direction, Event, MessageRecord, MessageStore, State
from gateway.store.lifecycle import Superseded

log = structlog.get_logger("gateway.outbound")

# a Partners built without a window (the messages CLI) still must not send past the gateways' usual one
DEFAULT_DUPLICATE_WINDOW = InboundSettings().duplicate_window
SUPERSEDES = "supersedes"  # on the new message: the one it replaces
MAX_SUPERSEDED = 100  # a chain of messages built anew is followed this far, no further


class UnknownMessage(GatewayError):
    """No outbound message has this MessageId."""


class NotRetryable(GatewayError):
    """Only a FAILED message can be retried: the others are still on their way, or done."""


class PartnerGone(NotRetryable):
    """The FAILED message's partner has no profile now: the message itself says how to send it."""


@dataclass(frozen=True, slots=True)
class BuiltWith:
    """What a message's signed bytes were built with, or would be built with now: its signed ebMS header, the
    certificate its payloads are encrypted for, and its signature algorithm."""

    user_message: UserMessage
    encrypted_for: x509.Certificate
    signature_method: str


class Rebuilder(Protocol):
    """Builds messages (the ``Submitter``): what a stored message was built with, and a new one in its place."""

    async def built_with(self, record: MessageRecord) -> BuiltWith | str:
        """What the stored signed bytes were built with, or why they cannot be read."""

    def building_with(self, record: MessageRecord, partner: Partner) -> BuiltWith:
        """What a message with this document would be built with now."""

    async def rebuild(
        self, record: MessageRecord, partner: Partner, *, because: str, reason: str
    ) -> MessageRecord:
        """A new message from ``record``'s stored document under the current profile, superseding it."""


async def retry_failed(
    store: MessageStore,
    partners: Partners,
    clock: Clock,
    message_id: str,
    *,
    reason: str,
    event: Event = Event.OPERATOR_RETRY,
    rebuilder: Rebuilder | None = None,
) -> MessageRecord:
    """FAILED -> RETRY_WAIT by ``event`` (an operator's retry, or the same document submitted again), or a new
    message built by ``rebuilder`` when the stored bytes can no longer be delivered (see the module)."""
    record = await store.find(Direction.OUTBOUND, message_id)
    if record is None:
        raise UnknownMessage(f"no outbound message has MessageId {message_id!r}")
    if record.state is not State.FAILED:
        raise NotRetryable(f"message {message_id!r} is {record.state.value}; only a FAILED message can be retried")
    if record.superseded_by is not None:
        raise _superseded(message_id, record.superseded_by)
    partner = _partner_of(partners, record)
    window = partners.max_age or DEFAULT_DUPLICATE_WINDOW
    because = await _why_built_anew(record, partner, window, clock.now(), rebuilder)
    if because is not None:
        if rebuilder is None:
            raise NotRetryable(
                f"{because}. Submit the document again, or retry it through the running gateway's "
                f"REST API (POST /api/v1/messages/{message_id}/retry): either builds it anew"
            )
        return await rebuilder.rebuild(record, partner, because=because, reason=reason)
    return await _same_bytes_again(store, record, partner, window, clock.now(), reason=reason, event=event)


def _superseded(message_id: str, newer: str) -> NotRetryable:
    return NotRetryable(
        f"message {message_id!r} was superseded by message {newer!r}, built anew from its document: retry "
        f"{newer!r} instead (its timeline says why)"
    )


def _partner_of(partners: Partners, record: MessageRecord) -> Partner:
    """The partner ``record`` goes to: by its partner id, or, when no profile has that id any more (renamed), the
    profile whose PartyId it is addressed to, which the retry then points it at."""
    if record.partner_id in partners.registry:
        return partners.get(record.partner_id)
    try:
        return partners.by_party(record.to_party)
    except GatewayError:
        raise PartnerGone(
            f"partner {record.partner_id!r} of message {record.message_id!r} has no profile now, and no profile "
            f"names its PartyId {record.to_party!r}: restore its profile (`permit-gateway profiles rollback "
            f"{record.partner_id} VERSION`, or the admin API's rollback) and retry, or submit the document again "
            "to send it to another partner"
        ) from None


async def latest_carrier(store: MessageStore, record: MessageRecord) -> MessageRecord:
    """``record``, or the message that superseded it (and so on): the one carrying its document now."""
    for _ in range(MAX_SUPERSEDED):
        newer = record.superseded_by
        found = await store.find(Direction.OUTBOUND, newer) if newer is not None else None
        if found is None:
            return record
        record = found
    return record


async def _why_built_anew(
    record: MessageRecord, partner: Partner, window: timedelta, now: datetime, rebuilder: Rebuilder | None
) -> str | None:
    """Why the stored bytes cannot be delivered and a new message must be built, or None."""
    last = _last_moment(record, partner, window)
    if last <= now:
        hours = window.total_seconds() / 3600
        return (
            f"message {record.message_id!r} is past the duplicate-detection window: its signed eb:Timestamp "
            f"({record.created_at.isoformat()}) has been older than [inbound].duplicate_window_hours = {hours:g}, "
            f"less {partner.policy.clock_skew} of clock skew, since {last.isoformat()}, and partner "
            f"{partner.profile.id!r} refuses a message that old (EBMS:0003) however often it is sent"
        )
    if rebuilder is None:
        return None
    stored = await rebuilder.built_with(record)
    if isinstance(stored, str):
        return f"the signed bytes of message {record.message_id!r} cannot be read ({stored})"
    changed = changes(stored, rebuilder.building_with(record, partner))
    if not changed:
        return None
    return (
        f"message {record.message_id!r} was built before partner {partner.profile.id!r}'s profile changed: "
        f"{'; '.join(changed)}; its signed bytes would fail again however often they were sent"
    )


async def _same_bytes_again(
    store: MessageStore,
    record: MessageRecord,
    partner: Partner,
    window: timedelta,
    now: datetime,
    *,
    reason: str,
    event: Event,
) -> MessageRecord:
    ttl = timedelta(hours=partner.profile.reception_awareness.time_to_live_hours)
    until = min(now + ttl, _last_moment(record, partner, window))
    detail: dict[str, object] = {
        "reason": reason,
        "failed_because": record.last_error,
        "time_to_live_until": until.isoformat(),
    }
    if partner.profile.id != record.partner_id:  # its profile was renamed: same PartyId, same bytes
        detail["partner_renamed"] = {"from": record.partner_id, "to": partner.profile.id}
    try:  # attempts start again; the store moves claim_seq on, so no claim of the round before can settle it
        moved = await store.move(
            record.id,
            event,
            detail=detail,
            partner_id=partner.profile.id,
            attempts=0,
            next_attempt_at=now,
            expires_at=until,
            last_error=None,
            lease_owner=None,
        )
    except Superseded as exc:  # built anew by a retry that committed after this one looked
        raise _superseded(record.message_id, exc.successor) from None
    log.info("FAILED message sent again", message_id=record.message_id, by=event.value, reason=reason)
    return moved


def _last_moment(record: MessageRecord, partner: Partner, window: timedelta) -> datetime:
    """The stored bytes' eb:Timestamp (set when the message was built, just before it was stored) plus the
    duplicate window, less the clock skew the partner's clock may run ahead: past that the partner refuses every
    attempt as too old (EBMS:0003)."""
    return record.created_at + window - partner.policy.clock_skew


def changes(stored: BuiltWith, now: BuiltWith) -> list[str]:
    """What differs between the stored bytes and a message built now, each naming the setting behind it."""
    was, will = stored.user_message, now.user_message
    found = [
        f"{what} was {shown(before)} and is now {shown(after)} ({setting})"
        for what, before, after, setting in (
            ("the To party", was.to_party, will.to_party, "party_id, party_id_type, roles.responder"),
            ("our From party", was.from_party, will.from_party, "[identity] party_id, roles.initiator"),
            ("the Service", was.service, will.service, "the document type"),
            ("the Action", was.action, will.action, "the document type"),
            ("the MPC", was.mpc, will.mpc, "transport, pull.mpc"),
            ("the AgreementRef", _agreement(was), _agreement(will), "agreement"),
            ("the signature algorithm", stored.signature_method, now.signature_method, "security.suite"),
        )
        if before != after
    ]
    if stored.encrypted_for != now.encrypted_for:
        found.append(
            f"its payloads are encrypted for {_certificate(stored.encrypted_for)}, and the profile names "
            f"{_certificate(now.encrypted_for)} now (security.encryption_certificate, or security.signing_certificate "
            "when it names none)"
        )
    return found


def _agreement(message: UserMessage) -> str | None:
    if message.agreement_ref is None:
        return None
    extra = [
        f"{name} {value}"
        for name, value in (("type", message.agreement_ref_type), ("pmode", message.agreement_ref_pmode))
        if value
    ]
    return message.agreement_ref + (f" ({', '.join(extra)})" if extra else "")


def shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, Party):
        ids = ", ".join(f"{p.value} (type {p.type})" if p.type else p.value for p in value.party_ids)
        return f"{ids} as {value.role}"
    return repr(value)


def _certificate(cert: x509.Certificate) -> str:
    fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return f"{cert.subject.rfc4514_string()!r} (SHA-256 {fingerprint[:16]}...)"


def built_with_of(content_type: str, head: bytes) -> BuiltWith:
    """What stored signed bytes were built with, from their first MIME part (the SOAP envelope) alone: a large
    message's attachments are never read. ValueError or EbmsError when they are not a message we built."""
    incoming = parse_envelope(_envelope_part(content_type, head))
    security = incoming.header.find(f"{{{ns.WSSE}}}Security")
    if security is None:
        raise ValueError("the stored message has no wsse:Security header")
    key_info = security.find(f"{{{ns.XENC}}}EncryptedKey/{{{ns.DS}}}KeyInfo")
    method = agreement_method(key_info)
    if method is not None:
        key_info = recipient_key_info(method, "the stored xenc:EncryptedKey")
    signature = security.find(f"{{{ns.DS}}}Signature/{{{ns.DS}}}SignedInfo/{{{ns.DS}}}SignatureMethod")
    return BuiltWith(
        user_message=parse_user_message(incoming.unit),
        encrypted_for=resolve_certificate(key_info, index_ids(incoming.root), ()),
        signature_method=signature.get("Algorithm", "") if signature is not None else "",
    )


def _envelope_part(content_type: str, head: bytes) -> bytes:
    media_type, params = mime.parse_content_type(content_type)
    if media_type != "multipart/related":
        return head
    delimiter = b"--" + params["boundary"].encode("ascii")
    start = head.index(delimiter) + len(delimiter)
    body = head.index(b"\r\n\r\n", start) + 4
    return head[body : head.index(b"\r\n" + delimiter, body)]
