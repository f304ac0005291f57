"""One-Way/Pull, sending side: partners with ``transport: pull`` fetch the messages we send them.

A signed PullRequest gets the oldest due message for the partner that signed it, leased for the profile's
receipt timeout (the same claim as the push loop, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two nodes never
hand out one message at once). The puller POSTs the receipt back to our endpoint as a signal of its own; it
is verified against what we signed and acknowledges the message. Without a receipt the lease runs out, the
lease recovery makes the message due again, and the next pull gets it again with the same MessageId.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    KeyPair,
    Outgoing,
    PullRequestReceived,
    ReceiptReceived,
    SignalPeek,
    Suite,
    build_empty_mpc,
    build_error_signal,
    message_id_for,
    mime,
    parse_pull,
    parse_response,
)
from gateway.as4.header import format_timestamp
from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.metrics import EBMS_ERRORS_SENT, PULLS_SERVED, SEND_ATTEMPTS, SEND_LATENCY
from gateway.outbound.dispatch import (
    RECEIVER_FAULT,
    RETRYABLE_CODES,
    STREAM_ABOVE_BYTES,
    alert_failed,
    receiver_fault_detail,
    retried_in_fault,
    stored_message,
)
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.model import Transport
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import (
    Direction,
    Event,
    Evidence,
    IllegalTransition,
    MessageRecord,
    MessageStore,
    PayloadStore,
    State,
    is_unavailable,
)

log = structlog.get_logger("gateway.outbound.pull")

ACCEPTED = 200
"""The answer to a signal we took (a receipt or an error signal): HTTP 200 with an empty body."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAnswer:
    """A pulled message too large for memory, answered from its file in the payload store as it was stored."""

    content_type: str
    path: Path
    size: int


@dataclass(slots=True)
class _Asking:
    """The partner a request comes from, once it is known: its refusal is signed in that partner's suite."""

    partner: Partner | None = None


def pull_partners(partners: Partners) -> list[Partner]:
    return [p for p in partners if p.profile.transport is Transport.PULL]


PULL_REQUEST_WINDOW = timedelta(minutes=10)
"""How old a PullRequest may be when it arrives, and how long its MessageId is remembered against a replay."""


class PullServer:
    """Answers PullRequests and takes the receipts and error signals for the messages it handed out."""

    def __init__(
        self,
        *,
        store: MessageStore,
        payloads: PayloadStore,
        partners: Partners,
        identity: IdentitySettings,
        keys: OwnKeys,
        clock: Clock,
        node_id: str,
    ) -> None:
        self._store = store
        self._payloads = payloads
        self._partners = partners
        self._identity = identity
        self._keys = keys
        self._clock = clock
        self._node_id = node_id
        # a lease of its own: the push loop's release_leases(node_id) at a stop must not make a message the
        # partner holds (its receipt may be on the way) due at once; it waits for its lease like any pulled one
        self._owner = f"{node_id}/pull"

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners

    def use_keys(self, keys: OwnKeys) -> None:
        self._keys = keys

    def _new_id(self) -> str:
        return message_id_for(self._identity.party_id, str(uuid.uuid4()))

    async def answer(self, content_type: str, body: bytes, peeked: SignalPeek) -> Outgoing | StoredAnswer:
        """Never raises for bad input: every refusal is a signed ebMS error signal naming what was wrong, signed
        in the asking partner's suite once the partner is known (else in our default suite)."""
        asking = _Asking()
        try:
            if peeked.kind == "PullRequest":
                return await self._serve(content_type, body, asking)
            return await self._take_signal(content_type, body, peeked, asking)
        except EbmsError as exc:
            log.warning(
                "signal refused", kind=peeked.kind, code=exc.code.code, detail=exc.detail, ref=peeked.message_id
            )
            return self._refusal(exc, content_type, peeked, asking)
        except Exception as exc:
            if is_unavailable(exc):  # the store is out of reach: 503 with Retry-After, and the partner tries again
                raise
            log.exception("signal not handled: a fault of this gateway", kind=peeked.kind, ref=peeked.message_id)
            error = EbmsError(
                EbmsCode.OTHER,
                f"the gateway could not handle this {peeked.kind} ({type(exc).__name__}, logged on its side); "
                "send it again later, and if it persists ask the gateway's operator to look at the log",
            )
            return self._refusal(error, content_type, peeked, asking)

    def _refusal(self, error: EbmsError, content_type: str, peeked: SignalPeek, asking: _Asking) -> Outgoing:
        EBMS_ERRORS_SENT.labels(code=error.code.code).inc()
        suite, key = self._keys.answering(asking.partner.policy.suite if asking.partner else None)
        return build_error_signal(
            error.with_ref(peeked.message_id),
            key=key,
            message_id=self._new_id(),
            now=self._clock.now(),
            suite=suite,
            soap_version=mime.soap_version_of(content_type),
        )

    # --- PullRequests ------------------------------------------------------------------------------------

    async def _serve(self, content_type: str, body: bytes, asking: _Asking) -> Outgoing | StoredAnswer:
        now = self._clock.now()
        candidates = {p.profile.id: p.policy for p in pull_partners(self._partners)}
        try:
            partner_id, pull = parse_pull(content_type, body, candidates=candidates, now=now)
        except EbmsError:
            PULLS_SERVED.labels(partner="(unknown)", outcome="refused").inc()
            raise
        partner = asking.partner = self._partners.get(partner_id)
        self._authorize(partner, pull)
        await self._fresh(partner_id, pull, now)
        record = await self._claim(partner)
        if record is None:
            PULLS_SERVED.labels(partner=partner_id, outcome="empty").inc()
            suite = partner.policy.suite
            return build_empty_mpc(
                pull,
                key=self._our_key(suite, partner_id),
                message_id=self._new_id(),
                now=self._clock.now(),
                suite=suite,
            )
        detail = {"attempt": record.attempts, "pull_request": pull.message_id, "node": self._node_id}
        await self._store.note(record.id, "pulled", detail)
        PULLS_SERVED.labels(partner=partner_id, outcome="message").inc()
        log.info("message pulled", message_id=record.message_id, partner=partner_id, attempt=record.attempts)
        return self._stored_answer(record)

    def _our_key(self, suite: Suite, partner_id: str) -> KeyPair:
        try:
            return self._keys.signing_for(suite, partner=partner_id)
        except GatewayError as exc:  # the gateway started with a warning about it; the partner is told too
            raise EbmsError(EbmsCode.OTHER, f"the serving gateway cannot sign its answer: {exc}") from None

    def _stored_answer(self, record: MessageRecord) -> Outgoing | StoredAnswer:
        """The stored signed (and encrypted) bytes, as they were stored: in memory, or from their file if large."""
        assert record.wire_sha256 is not None and record.wire_content_type is not None
        size = self._payloads.size(record.wire_sha256)
        if size > STREAM_ABOVE_BYTES:
            path = self._payloads.path(record.wire_sha256)
            return StoredAnswer(content_type=record.wire_content_type, path=path, size=size)
        body = self._payloads.get(record.wire_sha256)
        return Outgoing(message_id=record.message_id, content_type=record.wire_content_type, body=body)

    async def _fresh(self, partner_id: str, pull: PullRequestReceived, now: datetime) -> None:
        """A PullRequest is answered once, while fresh: a captured one replayed would take the partner's
        messages (and their offers) for whoever replays it. The store remembers it for every node."""
        problem = None
        if now - pull.timestamp > PULL_REQUEST_WINDOW:
            minutes = int(PULL_REQUEST_WINDOW.total_seconds() // 60)
            problem = f"was made at {format_timestamp(pull.timestamp)}, more than {minutes} minutes ago"
        elif not await self._store.first_answer(
            pull.message_id, partner_id, fresh_until=pull.timestamp + PULL_REQUEST_WINDOW
        ):
            problem = "was answered before"
        if problem is not None:
            PULLS_SERVED.labels(partner=partner_id, outcome="refused").inc()
            raise EbmsError(
                EbmsCode.VALUE_INCONSISTENT,
                f"PullRequest {pull.message_id!r} {problem}; each PullRequest is answered once, when fresh: send a "
                "new one (a new MessageId and eb:Timestamp)",
            )

    def _authorize(self, partner: Partner, pull: PullRequestReceived) -> None:
        try:
            self._partners.usable(partner, self._clock.now())
        except GatewayError as exc:
            PULLS_SERVED.labels(partner=partner.profile.id, outcome="refused").inc()
            raise EbmsError(EbmsCode.PROCESSING_MODE_MISMATCH, str(exc)) from None
        if pull.mpc != partner.profile.pull.mpc:
            PULLS_SERVED.labels(partner=partner.profile.id, outcome="refused").inc()
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"PullRequest for MPC {pull.mpc!r}; partner {partner.profile.id!r} pulls MPC "
                f"{partner.profile.pull.mpc!r} (pull.mpc in its profile)",
            )

    async def _claim(self, partner: Partner) -> MessageRecord | None:
        """The oldest due message for ``partner``, leased until its receipt is due; expired ones fail on the way."""
        awareness = partner.profile.reception_awareness
        lease = timedelta(seconds=awareness.receipt_timeout_seconds)
        while claimed := await self._store.claim_due(
            self._owner, limit=1, lease=lease, partners=[partner.profile.id], mpc=partner.profile.pull.mpc
        ):
            record = claimed[0]
            now = self._clock.now()
            if record.expires_at is not None and now > record.expires_at:
                await self._give_up_claimed(record, _expired(offers=record.attempts - 1))
            elif record.attempts > awareness.retries + 1:
                offers = record.attempts - 1
                await self._give_up_claimed(
                    record, EbmsCode.MISSING_RECEIPT.describe(f"no receipt after it was pulled {offers} times")
                )
            else:
                return record
        return None

    async def _give_up_claimed(self, record: MessageRecord, reason: str) -> None:
        """Give up a message just claimed; one that moved meanwhile (a late receipt acknowledged it) is left
        as it is, and the claim goes on to the next message."""
        try:
            await self._give_up(record, reason, claimed=record.claim_seq)
        except IllegalTransition:
            moved = await self._store.get(record.id)
            log.info("message moved while it was given up", message_id=record.message_id, state=moved.state.value)

    async def _give_up(self, record: MessageRecord, reason: str, *, claimed: int | None = None) -> None:
        """``claimed``: the claim (its ``claim_seq``) that gives up; None for an error signal's, which is about
        the bytes handed out, whichever offer it answers."""
        await self._store.move(
            record.id,
            Event.GIVE_UP,
            detail={"reason": reason},
            last_error=reason,
            lease_owner=None,
            claimed=claimed,
        )
        alert_failed(record, reason, log)

    async def expire(self) -> int:
        """Messages for pull partners that nobody pulled within their time to live: FAILED, as for push."""
        partners = [p.profile.id for p in pull_partners(self._partners)]
        failed = 0
        for state, offers in ((State.SUBMITTED, 0), (State.RETRY_WAIT, 1)):
            reason = _expired(offers=offers)
            for record in await self._store.give_up_waiting(partners=partners, reason=reason, waiting=(state,)):
                alert_failed(record, reason, log)
                failed += 1
        return failed

    # --- receipts and error signals for pulled messages ---------------------------------------------------

    async def _take_signal(self, content_type: str, body: bytes, peeked: SignalPeek, asking: _Asking) -> Outgoing:
        record, partner = await self._pulled_message(peeked)
        asking.partner = partner
        sent = stored_message(record)
        try:
            answer = parse_response(content_type, body, sent=sent, policy=partner.policy, now=self._clock.now())
        except EbmsError as exc:
            await self._store.note(record.id, "receipt_refused", {"reason": f"{exc.code.code} {exc.detail}"})
            raise
        if isinstance(answer, ErrorReceived):
            await self._error_signal(record, partner, answer)
        else:
            await self._acknowledge(record, Evidence(kind="receipt", content_type=content_type, body=body), answer)
        return Outgoing(message_id=peeked.message_id, content_type="", body=b"", http_status=ACCEPTED)

    async def _pulled_message(self, peeked: SignalPeek) -> tuple[MessageRecord, Partner]:
        ref = peeked.ref_to_message_id
        code = EbmsCode.INVALID_RECEIPT if peeked.kind == "Receipt" else EbmsCode.VALUE_INCONSISTENT
        if ref is None:
            raise EbmsError(
                code, f"the {peeked.kind} signal has no RefToMessageId; it must name the message pulled"
            )
        record = await self._store.find(Direction.OUTBOUND, ref, self._identity.party_id)
        if record is None:
            raise EbmsError(code, f"RefToMessageId {ref!r} names no message this gateway sent")
        try:
            partner = self._partners.get(record.partner_id)
        except (KeyError, GatewayError):
            raise EbmsError(
                code, f"message {ref!r} went to partner {record.partner_id!r}, which has no profile now"
            ) from None
        if partner.profile.transport is not Transport.PULL:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"a {peeked.kind} signal arrived as a request for {ref!r}, which we push to partner "
                f"{partner.profile.id!r}; pushed messages take their receipt on the HTTP response "
                "(PMode[1].Security.SendReceipt.ReplyPattern = Response)",
            )
        return record, partner

    async def _acknowledge(self, record: MessageRecord, evidence: Evidence, receipt: ReceiptReceived) -> None:
        if record.state is State.ACKNOWLEDGED:
            await self._store.note(record.id, "receipt_again", {})
            return
        detail = {"attempt": record.attempts, "pulled": True, "receipt_message_id": receipt.message_id}
        try:  # also after its lease ran out (RETRY_WAIT): the receipt proves the partner has it
            await self._store.move(
                record.id, Event.RECEIPT_OK, detail=detail, evidence=evidence, lease_owner=None, last_error=None
            )
        except IllegalTransition:  # FAILED meanwhile, or acknowledged by a receipt that came at the same time
            now = await self._store.get(record.id)
            if now.state is State.ACKNOWLEDGED:
                await self._store.note(record.id, "receipt_again", {})
                return
            raise EbmsError(
                EbmsCode.OTHER,
                f"message {record.message_id!r} is {now.state.value}, not waiting for a receipt "
                f"({now.last_error or 'no reason recorded'}); this receipt is not applied",
            ) from None
        SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="receipt").inc()
        SEND_LATENCY.labels(partner=record.partner_id).observe(
            (self._clock.now() - record.created_at).total_seconds()
        )
        log.info("pulled message acknowledged", message_id=record.message_id, attempt=record.attempts)

    async def _error_signal(self, record: MessageRecord, partner: Partner, answer: ErrorReceived) -> None:
        codes = [e.code for e in answer.errors]
        described = "; ".join(
            f"{e.code} {e.short_description}: {e.detail or e.description or ''}" for e in answer.errors
        )
        if not answer.signed:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"the error signal about {record.message_id!r} is not signed; only a signed one changes a message",
            )
        noted: dict[str, object] = {"error_codes": codes, "reason": described}
        in_fault = answer.is_failure and retried_in_fault(answer)
        if in_fault:
            noted[RECEIVER_FAULT] = receiver_fault_detail(answer, None)
        await self._store.note(record.id, "error_signal", noted)
        if not answer.is_failure:
            return
        reason = f"partner answered the pulled message with an error signal: {described}"
        if in_fault:
            reason = (
                "partner answered the pulled message with a signed error signal in a SOAP Receiver fault (the "
                f"problem is on its side and may go away, SOAP 1.2 Part 1 section 5.4.6), so it is offered again: "
                f"{described}"
            )
        for _ in range(2):  # once more if it moved meanwhile (its lease recovered, claimed again, a receipt)
            try:
                await self._apply_error(record, partner, codes, reason, in_fault=in_fault)
                return
            except IllegalTransition:
                record = await self._store.get(record.id)
        log.warning(
            "error signal recorded only: the message kept moving",
            message_id=record.message_id,
            state=record.state.value,
            reason=reason,
        )

    async def _apply_error(
        self, record: MessageRecord, partner: Partner, codes: list[str], reason: str, *, in_fault: bool
    ) -> None:
        """Also after the lease ran out (RETRY_WAIT): the partner's signed refusal is about the bytes it was
        handed, whichever offer it answers. ``in_fault``: a Receiver fault's, retried whatever its codes."""
        if record.state not in (State.SENDING, State.RETRY_WAIT):
            return
        final = not in_fault and not all(code in RETRYABLE_CODES for code in codes)
        if record.attempts == 0:  # sent again (an operator's retry, a resubmission) and not offered since
            await self._not_applied(record, codes, final=final)
            return
        if final:
            detail = {"error_codes": codes}
            await self._store.move(
                record.id, Event.FINAL_ERROR, detail=detail, last_error=reason, lease_owner=None
            )
            SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="failed").inc()
            alert_failed(record, reason, log)
            return
        awareness = partner.profile.reception_awareness
        if record.attempts > awareness.retries:
            await self._give_up(record, f"refused after it was pulled {record.attempts} times; last: {reason}")
            return
        due = self._clock.now() + timedelta(seconds=awareness.retry_delay(record.attempts))
        await self._retry_later(record, codes, reason, due)
        SEND_ATTEMPTS.labels(partner=partner.profile.id, outcome="retry").inc()
        log.warning(
            "pulled message refused for now; offered again later",
            message_id=record.message_id,
            reason=reason,
            at=due.isoformat(),
        )

    async def _retry_later(self, record: MessageRecord, codes: list[str], reason: str, due: datetime) -> None:
        detail = {"error_codes": codes, "next_attempt_at": due.isoformat()}
        if record.state is State.SENDING:
            await self._store.move(
                record.id,
                Event.SEND_FAILED,
                detail=detail,
                next_attempt_at=due,
                lease_owner=None,
                last_error=reason,
            )
            return
        # its lease ran out first and left it due at once: it waits the retry delay, as after a refusal in time.
        # Not a move (RETRY_WAIT to RETRY_WAIT): if it is claimed meanwhile, the claim's lease decides anyway.
        await self._store.note(record.id, "retry_delayed", detail, next_attempt_at=due)

    async def _not_applied(self, record: MessageRecord, codes: list[str], *, final: bool) -> None:
        """A refusal of an offer made before the message was sent again: the new round has made no offer yet, so
        there is nothing to delay, and a final refusal of the earlier bytes does not undo the operator's decision
        to send them again; it stays due. Kept in the timeline."""
        why = (
            "the error signal answers an offer made before the message was sent again (an operator's retry or a "
            "resubmission); it stays due and goes with the partner's next PullRequest"
        )
        kind = "refusal_not_applied" if final else "retry_not_delayed"
        await self._store.note(record.id, kind, {"error_codes": codes, "reason": why})
        log.info("late error signal for an earlier offer; not applied", message_id=record.message_id, codes=codes)


def _expired(*, offers: int) -> str:
    """Why a message for a pulling partner failed at its time to live: never pulled, or pulled ``offers``
    times (a claim counts one attempt) and never receipted."""
    if offers == 0:
        return "its time to live ran out before the partner pulled it"
    return EbmsCode.MISSING_RECEIPT.describe("its time to live ran out before a receipt for it arrived")
