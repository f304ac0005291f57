"""The reliable send loop: claim due messages, POST the stored bytes, verify the receipt, retry or give up."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import aiohttp
import structlog

from gateway.as4 import (
    MAX_SIGNAL_BYTES,
    EbmsCode,
    EbmsError,
    ErrorDetail,
    ErrorReceived,
    ReceiptReceived,
    SignedReference,
    mime,
    parse_response,
)
from gateway.as4._ns import EB
from gateway.as4.signals import error_detail
from gateway.clock import Clock
from gateway.errors import GatewayError, StoreError
from gateway.faults import NO_FAULTS, Faults
from gateway.metrics import (
    FAILURES,
    OUTBOUND_WAITING,
    PARTNER_HELD,
    SEND_ATTEMPTS,
    SEND_LATENCY,
    SEND_WINDOW,
    count_sends_from_zero,
)
from gateway.outbound.proxy import NO_PROXY, ProxySettings, redirected
from gateway.outbound.tls import TlsContexts, TlsSettingsError
from gateway.profiles.model import Transport
from gateway.profiles.trust import Partner, Partners
from gateway.store import (
    Direction,
    Event,
    Evidence,
    IllegalTransition,
    MessageRecord,
    MessageStore,
    PayloadStore,
    is_unavailable,
)
from gateway.tasks import cancel_all
from gateway.xmlsafe import XmlInputError, parse_xml

log = structlog.get_logger("gateway.outbound")

# Error signals that may clear by themselves; the others need a person (profile, certificate, document).
# EBMS:0202 DeliveryFailure is final: the partner could not deliver "in spite of resending efforts" (ebMS 3.0
# core, 6.7.2), and a receiving Permit Gateway answers with it a permit its checks refused.
RETRYABLE_CODES = frozenset({"EBMS:0004", "EBMS:0005", "EBMS:0201", "EBMS:0301", "EBMS:0302"})
# A final code in a SOAP Receiver fault is retried (the partner says the problem is its own), but DeliveryFailure
# stays final: the partner already resent in vain, and a receiving Permit Gateway refuses a permit with it in a
# Receiver fault.
FINAL_IN_ANY_FAULT = frozenset({"EBMS:0202"})
JITTER = 0.1
STREAM_ABOVE_BYTES = 1024 * 1024
SLOWEST_BYTES_PER_SECOND = 4 * 1024 * 1024  # upload and the partner's decrypt, verify and store
MIN_WAKE_SECONDS = 0.5  # a retry timer never fires sooner: with a clock that stands still (tests) it would spin
# A partner's lane starts with this many messages in flight (TCP's slow start): a partner that takes requests and
# never answers holds few of the node's send slots until its time-outs show it, however many messages it has due.
FIRST_WINDOW = 2
SHOW_WAITING_EVERY = timedelta(seconds=10)  # the waiting-age gauge costs a query; a wake per submission need not
_READ_CHUNK = 64 * 1024
UNVERIFIED = "unverified_error_signal"  # the timeline detail of an error signal not taken as the partner's
RECEIVER_FAULT = "receiver_fault_error_signal"  # the timeline detail of a partner's error in a Receiver fault


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What one POST produced: a receipt, or a failure that is retryable or final."""

    receipt: ReceiptReceived | None
    retryable: bool
    reason: str
    http_status: int | None
    latency_ms: float
    error_codes: tuple[str, ...] = ()
    evidence: Evidence | None = None
    unverified: dict[str, Any] | None = None
    """An error signal in the answer that is not the partner's (unsigned, or its signature not verified): kept in
    the timeline as evidence, never acted on."""
    receiver_fault: dict[str, Any] | None = None
    """The partner's signed error signal in a SOAP Receiver fault, whose final codes were retried: kept in the
    timeline, and named by the failure at the time to live."""
    proxy_problem: str | None = None
    """``HOST:PORT`` of the outbound proxy when it, not the partner, failed the attempt."""
    unanswered: bool = False
    """No answer came: the connection failed or the time-out ran out. The partner's lane falls back to one."""

    def detail(self, attempt: int) -> dict[str, Any]:
        out: dict[str, Any] = {"attempt": attempt, "http_status": self.http_status, "latency_ms": self.latency_ms}
        if self.receipt is None:
            out["reason"] = self.reason
        if self.error_codes:
            out["error_codes"] = list(self.error_codes)
        if self.unverified is not None:
            out[UNVERIFIED] = self.unverified
        if self.receiver_fault is not None:
            out[RECEIVER_FAULT] = self.receiver_fault
        if self.proxy_problem is not None:
            out["proxy_problem"] = self.proxy_problem
        return out


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What the receipt of a stored outbound message is checked against (the wire bytes stay on disk)."""

    message_id: str
    references: tuple[SignedReference, ...]


def stored_message(record: MessageRecord) -> StoredMessage:
    references = tuple(
        SignedReference(uri=r["uri"], digest_method="", digest_value=r["digest"], xml=b"")
        for r in record.signed_references or []
    )
    return StoredMessage(record.message_id, references)


def _described(errors: tuple[ErrorDetail, ...] | list[ErrorDetail]) -> str:
    return "; ".join(f"{e.code} {e.short_description}: {e.detail or e.description or ''}" for e in errors)


def _unverified_detail(
    errors: tuple[ErrorDetail, ...] | list[ErrorDetail], status: int | None, *, signature: str
) -> dict[str, Any]:
    """The timeline's record of an error signal not taken: what it carried, its HTTP status, and its signature
    (``none``, or why it was not verified)."""
    return {"signed": signature != "none", "verified": False, "signature": signature} | _signal_detail(
        errors, status
    )


def _signal_detail(errors: tuple[ErrorDetail, ...] | list[ErrorDetail], status: int | None) -> dict[str, Any]:
    """What an error signal carried, for the timeline, and the HTTP status it came with."""
    return {
        "http_status": status,
        "summary": _described(errors)[:2000],
        "errors": [
            {
                "code": e.code,
                "severity": e.severity,
                "short_description": e.short_description,
                "description": (e.description or "")[:500] or None,
                "detail": (e.detail or "")[:500] or None,
            }
            for e in errors[:10]
        ],
    }


def _error_attempt(
    event: ErrorReceived, status: int, latency_ms: float, *, endpoint: str = "the partner's endpoint"
) -> Attempt:
    """A signed (and so verified) error signal is the partner's answer: a final code fails the message. An unsigned
    one, or a bare SOAP Fault, may come from anything that answers our POST (a proxy, a firewall, anyone on the
    path of an http:// endpoint), so it is evidence only and the message is sent again until a receipt comes
    or its time to live runs out, as the pull path takes only signed errors (``pull_serve``)."""
    codes = tuple(e.code for e in event.errors)
    described = _described(event.errors)
    if not event.signed:
        form = "an ebMS error signal" if event.message_id else "a SOAP Fault carrying an ebMS error"
        reason = (
            f"HTTP {status}; the answer from {endpoint} is {form} without a signature, not taken as the partner's "
            f"answer (unverified: {described}). Only an error signal signed with a certificate our profile of the "
            "partner trusts fails a message (eDelivery AS4 signs every signal); something between us and the "
            "partner (a proxy, a firewall) may have sent this one, so the message is sent again until a receipt "
            "comes or its time to live runs out. If it persists, ask the partner's administrator whether its "
            f"gateway sent it, and check what answers at {endpoint}"
        )
        return Attempt(
            receipt=None,
            retryable=True,
            reason=reason,
            http_status=status,
            latency_ms=latency_ms,
            unverified=_unverified_detail(event.errors, status, signature="none"),
        )
    retryable = all(code in RETRYABLE_CODES for code in codes) or not event.is_failure
    if not retryable and retried_in_fault(event):
        return _receiver_fault_attempt(event, status, latency_ms, endpoint)
    return Attempt(
        receipt=None,
        retryable=retryable,
        reason=f"partner answered with an error signal: {described}",
        http_status=status,
        latency_ms=latency_ms,
        error_codes=codes,
    )


def retried_in_fault(event: ErrorReceived) -> bool:
    """A signed error signal whose final codes are retried all the same: it came in a SOAP Receiver fault (the
    partner says the problem is its own) and names no code final in any fault (DeliveryFailure)."""
    return event.receiver_fault and FINAL_IN_ANY_FAULT.isdisjoint(e.code for e in event.errors)


def receiver_fault_detail(event: ErrorReceived, status: int | None) -> dict[str, Any]:
    """The timeline's record of a signed error in a Receiver fault that was retried (``RECEIVER_FAULT``)."""
    return {"fault": event.fault, "signed": True, "verified": True} | _signal_detail(event.errors, status)


def _receiver_fault_attempt(event: ErrorReceived, status: int, latency_ms: float, endpoint: str) -> Attempt:
    """A signed error in a SOAP Receiver (1.1: Server) fault is the partner saying the problem is its own and may
    go away (SOAP 1.2 Part 1, 5.4.6), as a decryption key not yet installed does: retried until the time to
    live, whatever its code but DeliveryFailure."""
    codes = tuple(e.code for e in event.errors)
    reason = (
        f"HTTP {status}; the partner answered from {endpoint} with a signed error signal in a SOAP Receiver fault "
        f"(the problem is on its side and may go away, SOAP 1.2 Part 1 section 5.4.6): {_described(event.errors)}. "
        "The message is sent again until a receipt comes or its time to live runs out; if it persists, ask the "
        f"partner's administrator to fix what {', '.join(codes)} names on their gateway"
    )
    return Attempt(
        receipt=None,
        retryable=True,
        reason=reason,
        http_status=status,
        latency_ms=latency_ms,
        error_codes=codes,
        receiver_fault=receiver_fault_detail(event, status),
    )


def _connection_failure(exc: aiohttp.ClientError | TimeoutError, timeout: float) -> str:
    """What went wrong on the way to the partner, in an operator's words, and where to look."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return (
            f"no answer within the time-out ([outbound] http_timeout_seconds = {timeout:g} s, more for a large "
            "message); the partner may be down or slow: it is asked again"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"the TLS handshake failed ({exc}); check the partner's server certificate and the profile's tls"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error.strerror or str(exc.os_error) or "refused"
        return (
            f"cannot connect ({cause}); check that the endpoint is up and reachable from this host (its address "
            "and port, DNS, firewalls) and that the profile's endpoint is right"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the partner closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer broke off part way ({exc})"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Lane:
    """One partner's send loop, and how to tell it that messages may have come for it."""

    task: asyncio.Task[int]
    woken: asyncio.Event


async def _first_of(sending: set[asyncio.Task[None]], woken: asyncio.Event) -> None:
    """Until one of ``sending`` ends or ``woken`` is set."""
    waiter = asyncio.create_task(woken.wait())
    try:
        await asyncio.wait({*sending, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _settled(sending: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
    """The sends still running; a send that raised (the store went away) stops its lane."""
    for task in sending:
        if task.done():
            task.result()
    return {task for task in sending if not task.done()}


def alert_failed(record: MessageRecord, reason: str, logger: structlog.stdlib.BoundLogger = log) -> None:
    """Count and log a message that gave up (FAILED): the alert rules and the operator act on these."""
    FAILURES.labels(direction=Direction.OUTBOUND.value, partner=record.partner_id).inc()
    logger.error("message FAILED: alert the operator", message_id=record.message_id, reason=reason)


class Dispatcher:
    def __init__(
        self,
        *,
        store: MessageStore,
        payloads: PayloadStore,
        partners: Partners,
        clock: Clock,
        session: aiohttp.ClientSession,
        node_id: str,
        http_timeout: float,
        lease: timedelta,
        per_partner: int,
        max_in_flight: int,
        faults: Faults = NO_FAULTS,
        tls_passphrase: bytes | None = None,
        proxy: ProxySettings = NO_PROXY,
    ) -> None:
        self._store = store
        self._payloads = payloads
        self._partners = partners
        self._clock = clock
        self._session = session
        self._node_id = node_id
        self._http_timeout = http_timeout
        self._lease = max(lease, timedelta(seconds=http_timeout * 2))
        self._faults = faults
        self._tls = TlsContexts(tls_passphrase)
        self._proxy = proxy
        self._per_partner = min(per_partner, max_in_flight)
        self._posting = asyncio.Semaphore(max_in_flight)
        self._windows: dict[str, int] = {}  # per partner, as set by the outcomes of its sends (``_window``)
        self._lanes: dict[str, _Lane] = {}
        self._wake: Callable[[], None] = lambda: None
        self._timer: asyncio.TimerHandle | None = None
        self._shown: set[str] = set()  # the partners this node exports the held and waiting gauges of
        self._waiting_shown_at: datetime | None = None
        self._held_before: dict[str, str] = {}
        self._unknown: set[str] = set()  # partners with messages waiting that no profile of this node names

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners
        self._tls.clear()  # the reload may have replaced a CA bundle or client certificate under its old path

    def wake_with(self, callback: Callable[[], None]) -> None:
        """``callback`` wakes the node's send loop: when a lane has nothing left to send (a message that came
        while it was ending is picked up at once), and when the next retry falls due."""
        self._wake = callback

    async def run_once(self) -> int:
        """Open a lane for every partner with messages due and no lane yet; returns how many were opened.

        A lane keeps up to its window of its partner's messages in flight (``_window``: 2 at first, one more
        per receipt up to ``per_partner``, one after an attempt that got no answer), claiming more whenever half
        of its window is free, until none is due. Lanes run side by side, so a partner that answers slowly, or
        not at all until the HTTP time-out, holds up only its own messages: with its window down to one, it
        holds one of the node's ``max_in_flight`` send slots, not ``per_partner`` of them. Messages for
        a partner with ``transport: pull`` wait for its PullRequests instead (``outbound.pull_serve``). Messages
        to a suspended partner, or to one whose certificate is not valid now (a gap in its rollover), are held:
        not claimed, not attempted, their attempts unchanged, until the partner is enabled or its profile fixed;
        those whose time to live runs out meanwhile fail, saying why they were held. So are messages for a
        partner no profile on this node names (retired, renamed, or not yet deployed to this node): another node
        that has the profile may send them.
        """
        held = self._held()
        await self._show_waiting()
        for lane in self._lanes.values():
            lane.woken.set()  # something may have come for it
        known = {p.profile.id for p in self._partners}
        pulled = {p.profile.id for p in self._partners if p.profile.transport is Transport.PULL}
        pushed = known - pulled - held.keys()
        opened: list[str] = []
        # with every partner in an open lane, which claims what comes due, the store is not asked
        if not (pushed and pushed <= self._lanes.keys()):
            waiting = await self._store.waiting_partners(exclude_partners=sorted({*pulled, *held, *self._lanes}))
            self._unknown = {p for p, _ in waiting if p not in known}
            waiting = [(p, at) for p, at in waiting if p in known]
            now = self._clock.now()
            self._wake_at(min((at for _, at in waiting if at > now), default=None))
            # not opened meanwhile by a drain() beside the node's pump
            opened = [p for p, at in waiting if at <= now and p not in self._lanes]
        for partner_id in opened:
            woken = asyncio.Event()
            task = asyncio.create_task(self._lane(partner_id, woken), name=f"send lane {partner_id}")
            self._lanes[partner_id] = _Lane(task, woken)
        held |= {p: self._no_profile(p) for p in self._unknown - known}
        self._show_held(held)
        await self._expire_held(held)
        return len(opened)

    async def drain(self) -> int:
        """Send everything due and wait until every lane has ended; returns how many messages were attempted.
        For tests and one-shot tools: a running node lets its lanes run on their own."""
        sent = 0
        while True:
            await self.run_once()
            if not self._lanes:
                return sent
            sent += sum(await asyncio.gather(*(lane.task for lane in self._lanes.values())))

    def _wake_at(self, due: datetime | None) -> None:
        """Wake the send loop when the next retry is due, as the partner's profile says, not at the next sweep."""
        if due is None:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + max((due - self._clock.now()).total_seconds(), MIN_WAKE_SECONDS)
        if self._timer is not None and not self._timer.cancelled() and loop.time() < self._timer.when() <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._wake)

    async def close(self) -> None:
        """Stop every lane, and give back the messages cut off mid-send, due at once (not when their lease ends)."""
        if self._timer is not None:
            self._timer.cancel()
        await cancel_all([lane.task for lane in self._lanes.values()])
        try:
            released = await self._store.release_leases(self._node_id)
        except StoreError as exc:  # the store may be gone too: their leases run out, and lease recovery takes them
            log.warning("messages being sent were not given back", reason=str(exc))
            return
        if released:
            log.info("messages being sent given back for another node or the restart", count=released)

    async def _lane(self, partner_id: str, woken: asyncio.Event) -> int:
        sending: set[asyncio.Task[None]] = set()
        sent = 0
        try:
            while True:
                window = self._window(partner_id)
                room = window - len(sending)
                # claim when half the window is free, new messages too: claiming one at a time as they come or
                # as sends settle costs a statement each, and the receiver commits them one by one. Never more
                # than the window: a message claimed beyond it would wait, leased, behind its partner's sends
                woken.clear()
                if 2 * room >= window and self._pushes_to(partner_id):
                    batch = await self._store.claim_due(
                        self._node_id, limit=room, lease=self._lease, partners=[partner_id]
                    )
                    sending.update(asyncio.create_task(self._send(record)) for record in batch)
                    sent += len(batch)
                if not sending:
                    break
                await _first_of(sending, woken)
                sending = _settled(sending)
        except asyncio.CancelledError:
            await cancel_all(sending)
            raise
        except Exception:
            await asyncio.gather(*sending, return_exceptions=True)
            # not woken again at once: the store may be down, and the sweep tries again
            log.exception("send lane stopped; its partner's messages go at the next sweep", partner=partner_id)
            return sent
        finally:
            if (lane := self._lanes.get(partner_id)) is not None and lane.task is asyncio.current_task():
                del self._lanes[partner_id]
        # nothing was due: the next lane starts small again (TCP after an idle spell), so a partner that was fast
        # and is black-holed meanwhile holds few send slots until its first time-outs
        self._set_window(partner_id, min(self._window(partner_id), FIRST_WINDOW))
        self._wake()
        return sent

    def _window(self, partner_id: str) -> int:
        """How many of the partner's messages may be in flight: ``FIRST_WINDOW`` at first and after a spell with
        nothing due, one more after each receipt up to ``per_partner`` (so doubling each round trip), and one
        after an attempt that got no answer until a receipt comes. Other answers (an HTTP error, an error signal)
        leave it as it is."""
        return self._windows.get(partner_id, min(FIRST_WINDOW, self._per_partner))

    def _adjust_window(self, partner_id: str, attempt: Attempt) -> None:
        if attempt.unanswered:
            self._set_window(partner_id, 1)
        elif attempt.receipt is not None:
            self._set_window(partner_id, min(self._window(partner_id) + 1, self._per_partner))

    def _set_window(self, partner_id: str, window: int) -> None:
        self._windows[partner_id] = window
        SEND_WINDOW.labels(partner=partner_id).set(window)

    def _pushes_to(self, partner_id: str) -> bool:
        """False once the partner pulls or is held (a profile change, or a certificate that lapsed, while its
        lane runs), or no profile names it any more: its messages wait for a node that has its profile, or fail
        at their time to live, saying so (``run_once``)."""
        partner = next((p for p in self._partners if p.profile.id == partner_id), None)
        if partner is None:
            return False
        return (
            partner.profile.transport is not Transport.PULL
            and _why_held(partner, self._partners, self._clock) is None
        )

    def _held(self) -> dict[str, str]:
        """Each partner whose messages wait unsent, and why."""
        reasons = {p.profile.id: _why_held(p, self._partners, self._clock) for p in self._partners}
        return {partner_id: reason for partner_id, reason in reasons.items() if reason is not None}

    def _no_profile(self, partner_id: str) -> str:
        return (
            f"no profile for partner {partner_id!r} on this node ({self._node_id}); add the profile to this node's "
            "profiles folder ([profiles].folder), or, if the partner was renamed or retired, retry or submit the "
            "document again once it failed"
        )

    def _show_held(self, held: dict[str, str]) -> None:
        """Held messages are not claimed, so no retry or failure is counted until their time to live runs out:
        the gauge is what alerts on a held partner, and the log says why, once, when it starts or changes."""
        self._shown.update(p.profile.id for p in self._partners)
        self._shown.update(held)
        for partner_id in self._shown:
            count_sends_from_zero(partner_id)
            PARTNER_HELD.labels(partner=partner_id).set(1 if partner_id in held else 0)
        for partner_id, why in sorted(held.items()):
            if self._held_before.get(partner_id) != why:
                log.warning("messages to the partner are held unsent", partner=partner_id, reason=why)
        for partner_id in sorted(self._held_before.keys() - held.keys()):
            log.info("messages to the partner are no longer held", partner=partner_id)
        self._held_before = held

    async def _show_waiting(self) -> None:
        """How long each partner's longest-due message has waited: it grows for a partner with ``transport: pull``
        that stopped pulling, whose messages wait SUBMITTED, never retried, until their time to live."""
        now = self._clock.now()
        if self._waiting_shown_at is not None and now - self._waiting_shown_at < SHOW_WAITING_EVERY:
            return
        due = dict(await self._store.waiting_partners())
        self._unknown = due.keys() - {p.profile.id for p in self._partners}
        self._shown.update(due)
        for partner_id in self._shown:
            # the start made these for the partners then stored; this is for messages another node (one with the
            # profile) stored since, seen here sweeps before their time to live runs out, so a scrape sees 0 first
            count_sends_from_zero(partner_id)
            since = due.get(partner_id, now)
            OUTBOUND_WAITING.labels(partner=partner_id).set(max(round((now - since).total_seconds()), 0))
        self._waiting_shown_at = now

    async def _expire_held(self, held: dict[str, str]) -> None:
        for partner_id, why in sorted(held.items()):
            reason = f"its time to live ran out while it was held unsent: {why}"
            for record in await self._store.give_up_waiting(partners=[partner_id], reason=reason):
                alert_failed(record, reason)

    async def _hold(self, record: MessageRecord, why: str) -> None:
        """The partner became held after this message was claimed: give it back untried (its attempts as they
        were) and due, so it goes out as soon as the partner is enabled or its profile fixed."""
        await self._store.move(
            record.id,
            Event.SEND_FAILED,
            detail={"held": f"{why}; not attempted"},
            attempts=record.attempts - 1,
            next_attempt_at=self._clock.now(),
            lease_owner=None,
            last_error=f"not sent: {why}; it waits unsent until the profile is fixed or its time to live runs out",
            claimed=record.claim_seq,
        )

    async def _send(self, record: MessageRecord) -> None:
        lost = asyncio.Event()
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(record, done, lost), name=f"lease {record.message_id}")
        try:
            await self._attempt(record, lost)
        except IllegalTransition as exc:  # the attempt outlived its lease (StaleClaim), or a receipt came twice
            await self._store.note(
                record.id, "outcome_not_applied", {"attempt": record.attempts, "reason": str(exc)}
            )
            log.warning("attempt outcome not applied", message_id=record.message_id, reason=str(exc))
        finally:
            # stopped, not cancelled: a cancel landing in a renewal's query drops the pooled connection (asyncpg)
            done.set()
            await keeper

    async def _keep_lease(self, record: MessageRecord, done: asyncio.Event, lost: asyncio.Event) -> None:
        """Renew the lease every third of it until ``done``: waiting for a send slot and a large upload may take
        longer than one lease, and a lease that ran out meanwhile would let another claim send the message beside
        this one. Sets ``lost`` once the message left this claim. A store out of reach fails a renewal, not the
        lease: the next one may come before it runs out."""
        while not await _set_within(done, self._lease.total_seconds() / 3):
            try:
                renewed = await self._store.renew_lease(
                    record.id, self._node_id, claimed=record.claim_seq, lease=self._lease
                )
            except Exception as exc:
                if not (isinstance(exc, StoreError) or is_unavailable(exc)):
                    log.exception(
                        "lease renewal failed; the message is left to its lease", message_id=record.message_id
                    )
                    lost.set()
                    return
                log.warning(
                    "lease not renewed; trying again at the next renewal",
                    message_id=record.message_id,
                    reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                )
                continue
            if not renewed:
                lost.set()
                return

    async def _attempt(self, record: MessageRecord, lost: asyncio.Event) -> None:
        try:
            partner = self._partners.get(record.partner_id)
        except GatewayError:  # retired, renamed, or not on this node yet: another node may have its profile
            await self._hold(record, self._no_profile(record.partner_id))
            return
        why_held = _why_held(partner, self._partners, self._clock)
        if why_held is not None:
            await self._hold(record, why_held)
            return
        if (expired := self._expired(record)) is not None:
            await self._give_up(record, await self._naming_last_error_signal(record, expired))
            return
        async with self._posting:  # waiting here is not counted in the POST's time-out
            if lost.is_set():  # the lease ran out while waiting: the message is another claim's now
                reason = "its lease ran out while it waited for a send slot; another claim sends it"
                await self._store.note(
                    record.id, "attempt_abandoned", {"attempt": record.attempts, "reason": reason}
                )
                return
            if (expired := self._expired(record)) is not None:  # the wait for a slot outlasted its time to live
                await self._give_up(record, await self._naming_last_error_signal(record, expired))
                return
            attempt = await self._post(record, partner)
        self._adjust_window(record.partner_id, attempt)
        await self._settle(record, partner, attempt)

    def _expired(self, record: MessageRecord) -> str | None:
        """Why the message must not go any more (its time to live ran out), or None."""
        if record.expires_at is None or self._clock.now() <= record.expires_at:
            return None
        reason = "its time to live ran out before it could be sent"
        if record.attempts > 1:  # this claim counted as one
            reason = EbmsCode.MISSING_RECEIPT.describe(f"{reason} again; {record.last_error or 'no receipt'}")
        return reason

    async def _post(self, record: MessageRecord, partner: Partner) -> Attempt:
        assert record.wire_sha256 is not None and record.wire_content_type is not None
        sent = stored_message(record)
        started = time.perf_counter()
        try:
            context = self._tls.get(partner.profile.tls)
        except TlsSettingsError as exc:
            return _not_tried(str(exc))
        endpoint = partner.profile.endpoint_url
        route = self._proxy.route(endpoint)
        proxy = route.proxy
        try:
            size = self._payloads.size(record.wire_sha256)
            with ExitStack() as files:
                # a large message is streamed from its file (it may be a GiB); a small one goes in one write
                wire = (
                    self._payloads.get(record.wire_sha256)
                    if size <= STREAM_ABOVE_BYTES
                    else (files.enter_context(self._payloads.open(record.wire_sha256)))
                )
                async with self._session.post(
                    endpoint,
                    data=wire,
                    headers={"Content-Type": record.wire_content_type, **route.headers},
                    timeout=self._proxy.timeout(endpoint, self._timeout_for(size), self._http_timeout),
                    ssl=context or True,
                    proxy=proxy,
                    proxy_headers=route.proxy_headers,
                    allow_redirects=False,
                ) as response:
                    body = await _answer_of(response, partner)
                    content_type = response.headers.get("Content-Type", "")
                    status = response.status
                    location = response.headers.get("Location")
        except StoreError as exc:  # the signed message's file is gone or changed: sending it again cannot help
            reason = (
                f"the signed message cannot be sent: {exc}; restore the file, then `permit-gateway messages retry`"
            )
            return Attempt(receipt=None, retryable=False, reason=reason, http_status=None, latency_ms=0.0)
        except AnswerTooLarge as exc:
            latency = round((time.perf_counter() - started) * 1000, 1)
            return Attempt(
                receipt=None, retryable=True, reason=str(exc), http_status=exc.status, latency_ms=latency
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            latency = round((time.perf_counter() - started) * 1000, 1)
            unanswered = self._unanswered(record, endpoint, exc, latency, proxied=proxy is not None)
            return replace(unanswered, unanswered=True)
        latency = round((time.perf_counter() - started) * 1000, 1)
        self._faults.hit("send.after_post")
        if proxy is not None and self._proxy.answered_for_partner(endpoint, status):
            problem = self._proxy.refused(status, answering=f"to our POST to {endpoint}")
            return self._proxy_attempt(record, endpoint, problem, status, latency)
        if 300 <= status < 400:
            reason = redirected(status, location, endpoint, partner.profile.id)
            if proxy is not None:
                reason += f" (sent through the outbound proxy {self._proxy.shown}, which may have answered for it)"
            return Attempt(receipt=None, retryable=True, reason=reason, http_status=status, latency_ms=latency)
        if status >= 300 and not _ebms_content_type(content_type):
            reason = _not_ebms_answer(status, partner, content_type, body)
            if proxy is not None:
                reason += f" (sent through the outbound proxy {self._proxy.shown}, which may have answered for it)"
            return Attempt(receipt=None, retryable=True, reason=reason, http_status=status, latency_ms=latency)
        try:
            answer = parse_response(content_type, body, sent=sent, policy=partner.policy, now=self._clock.now())
        except EbmsError as exc:
            reason = _unchecked_answer(status, exc, partner, content_type, body)
            errors = _errors_in(content_type, body)
            unverified = (
                _unverified_detail(errors, status, signature=f"not verified: {exc}"[:500]) if errors else None
            )
            return Attempt(
                receipt=None,
                retryable=True,
                reason=reason,
                http_status=status,
                latency_ms=latency,
                unverified=unverified,
            )
        if isinstance(answer, ErrorReceived):
            return _error_attempt(answer, status, latency, endpoint=partner.profile.endpoint_url)
        kept = Evidence(kind="receipt", content_type=content_type, body=body)
        return Attempt(
            receipt=answer, retryable=False, reason="", http_status=status, latency_ms=latency, evidence=kept
        )

    def _unanswered(
        self,
        record: MessageRecord,
        endpoint: str,
        exc: aiohttp.ClientError | TimeoutError,
        latency: float,
        *,
        proxied: bool,
    ) -> Attempt:
        """The attempt that got no answer: a connection or TLS failure, or the time-out, the proxy's or ours."""
        problem = self._proxy.problem(exc, self._http_timeout, endpoint) if proxied else None
        if problem is not None and not self._proxy.partner_unreached(exc):
            return self._proxy_attempt(record, endpoint, problem, getattr(exc, "status", None), latency)
        if problem is not None:
            reason = EbmsCode.CONNECTION_FAILURE.describe(f"{endpoint} not reached: {problem}")
            unreached = getattr(exc, "status", None)
            return Attempt(receipt=None, retryable=True, reason=reason, http_status=unreached, latency_ms=latency)
        failure = _connection_failure(exc, self._http_timeout)
        if proxied:
            failure += self._proxy.through(exc)
        reason = EbmsCode.CONNECTION_FAILURE.describe(f"{endpoint}: {failure}")
        return Attempt(receipt=None, retryable=True, reason=reason, http_status=None, latency_ms=latency)

    def _proxy_attempt(
        self, record: MessageRecord, endpoint: str, problem: str, status: int | None, latency: float
    ) -> Attempt:
        """The proxy failed the attempt, not the partner: said so, and retried as any transport failure."""
        log.warning(
            "outbound proxy problem",
            proxy=self._proxy.shown,
            message_id=record.message_id,
            partner=record.partner_id,
            reason=problem,
        )
        reason = EbmsCode.CONNECTION_FAILURE.describe(f"{endpoint} not reached: {problem}")
        return Attempt(
            receipt=None,
            retryable=True,
            reason=reason,
            http_status=status,
            latency_ms=latency,
            proxy_problem=self._proxy.shown,
        )

    def _timeout_for(self, size: int) -> aiohttp.ClientTimeout:
        """The configured time-out, plus time to move and process a large message at a modest rate."""
        return aiohttp.ClientTimeout(total=self._http_timeout + size / SLOWEST_BYTES_PER_SECOND)

    async def _settle(self, record: MessageRecord, partner: Partner, attempt: Attempt) -> None:
        detail = attempt.detail(record.attempts)
        if attempt.receipt is not None:
            detail["receipt_message_id"] = attempt.receipt.message_id
            await self._store.move(
                record.id,
                Event.RECEIPT_OK,
                detail=detail,
                evidence=attempt.evidence,
                lease_owner=None,
                last_error=None,
            )
            SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="receipt").inc()
            SEND_LATENCY.labels(partner=record.partner_id).observe(
                (self._clock.now() - record.created_at).total_seconds()
            )
            log.info("message acknowledged", message_id=record.message_id, attempt=record.attempts)
            return
        if not attempt.retryable:
            await self._store.move(
                record.id, Event.FINAL_ERROR, detail=detail, last_error=attempt.reason, claimed=record.claim_seq
            )
            SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="failed").inc()
            alert_failed(record, attempt.reason)
            return
        awareness = partner.profile.reception_awareness
        if record.attempts > awareness.retries:
            why = EbmsCode.MISSING_RECEIPT.describe(
                f"no receipt after {record.attempts} attempts; last: {attempt.reason}"
            )
            await self._give_up(record, await self._naming_last_error_signal(record, why, attempt), detail)
            return
        delay = awareness.retry_delay(record.attempts) * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
        due = self._clock.now() + timedelta(seconds=delay)
        if record.expires_at is not None and due > record.expires_at:
            why = EbmsCode.MISSING_RECEIPT.describe(
                f"no receipt, and the next retry would fall after its time to live; last: {attempt.reason}"
            )
            await self._give_up(record, await self._naming_last_error_signal(record, why, attempt), detail)
            return
        detail["next_attempt_at"] = due.isoformat()
        await self._store.move(
            record.id,
            Event.SEND_FAILED,
            detail=detail,
            next_attempt_at=due,
            lease_owner=None,
            last_error=attempt.reason,
            claimed=record.claim_seq,
        )
        SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="retry").inc()
        log.warning(
            "send failed, will retry", message_id=record.message_id, reason=attempt.reason, at=due.isoformat()
        )

    async def _naming_last_error_signal(
        self, record: MessageRecord, reason: str, attempt: Attempt | None = None
    ) -> str:
        """``reason`` for a message that failed without a receipt, naming the last error signal it got that was not
        taken (unsigned, or not verified) or was retried (a Receiver fault) unless the last attempt got it: a
        refusal that may not be the partner's, or a problem the partner may still have, is what the operator
        checks first."""
        if attempt is not None and (attempt.unverified is not None or attempt.receiver_fault is not None):
            return reason
        try:
            events = await self._store.events(record.id)
        except StoreError as exc:  # the reason is complete without it; the timeline still holds it
            log.warning("earlier error signals not looked up", message_id=record.message_id, reason=str(exc))
            return reason
        found = None
        for event in reversed(events):
            if event.kind in (Event.OPERATOR_RETRY.value, Event.RESUBMITTED.value):
                break  # an earlier round of attempts, already reported when it failed
            if any(isinstance(event.detail.get(key), dict) for key in (UNVERIFIED, RECEIVER_FAULT)):
                found = event
                break
        if found is None:
            return reason
        detail, at = found.detail, found.at
        unverified = isinstance(detail.get(UNVERIFIED), dict)
        signal: dict[str, Any] = detail[UNVERIFIED] if unverified else detail[RECEIVER_FAULT]
        if str(signal.get("summary")) in reason:
            return reason
        if unverified:
            signature = "unsigned" if signal.get("signature") == "none" else "its signature not verified"
            how = f"{signature}, so not taken as the partner's answer"
        else:
            how = f"signed by the partner, in a SOAP {signal.get('fault')} fault, so retried"
        status = signal.get("http_status")  # none for a pulled message's signal, which came as a request
        when = [f"attempt {detail.get('attempt')}", at.isoformat(), *([] if status is None else [f"HTTP {status}"])]
        return f"{reason}; the last error signal answered ({', '.join([*when, how])}): {signal.get('summary')}"

    async def _give_up(self, record: MessageRecord, reason: str, detail: dict[str, Any] | None = None) -> None:
        """FAILED, with the alert; ``detail`` given: the failed attempt that made it give up counts as one. Counted
        once moved: a move refused (the claim outlived its lease) leaves the message to the claim that has it."""
        await self._store.move(
            record.id,
            Event.GIVE_UP,
            detail=(detail or {}) | {"reason": reason},
            last_error=reason,
            lease_owner=None,
            claimed=record.claim_seq,
        )
        if detail is not None:
            SEND_ATTEMPTS.labels(partner=record.partner_id, outcome="failed").inc()
        alert_failed(record, reason)


def _why_held(partner: Partner, partners: Partners, clock: Clock) -> str | None:
    """Why messages for ``partner`` must wait unsent (suspended, or a certificate not valid now), or None."""
    try:
        partners.usable(partner, clock.now())
    except GatewayError as exc:
        return str(exc)
    return None


class AnswerTooLarge(GatewayError):
    """The partner's answer to a message we sent is larger than any signal."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _answer_of(response: aiohttp.ClientResponse, partner: Partner) -> bytes:
    """At most ``MAX_SIGNAL_BYTES``: the answer to a message is a receipt or an error signal, and a partner
    that answers with more must not fill our memory for the whole time-out."""
    body = bytearray()
    while chunk := await response.content.read(_READ_CHUNK):
        body += chunk
        if len(body) > MAX_SIGNAL_BYTES:
            raise AnswerTooLarge(
                f"HTTP {response.status}; partner {partner.profile.id!r} answered at {partner.profile.endpoint_url} "
                f"with more than {MAX_SIGNAL_BYTES} bytes, the largest signal taken (the answer to a message is a "
                "receipt or an ebMS error signal); the rest was not read. The partner's administrator checks what "
                "its endpoint answers to an AS4 message",
                response.status,
            )
    return bytes(body)


def _unchecked_answer(status: int, exc: EbmsError, partner: Partner, content_type: str, body: bytes) -> str:
    """Why the partner's answer was not taken: our check of it failed (not the partner's check of our message),
    what in our profile of the partner decides that check, and the error signal it may carry, unverified."""
    reason = (
        f"HTTP {status}; our check of partner {partner.profile.id!r}'s answer failed (the partner's answer was "
        f"not accepted; this is not the partner refusing our message): {exc}. If the partner's signing "
        f"certificate changed, {_trust_fix(partner)}"
    )
    errors = _unverified_errors(content_type, body)
    if errors:
        reason += f". The answer is an ebMS error signal, unverified: {errors}"
    return reason


_EBMS_CONTENT_TYPES = ("application/soap+xml", "text/xml", "multipart/related")
_HTTP_HINTS = {
    401: "something in front of the partner's gateway (a proxy or firewall) asks for credentials or a client "
    "certificate: ask the partner's administrator what it expects (our profile's tls section names our client "
    "certificate)",
    404: "nothing takes AS4 messages at that URL: check the endpoint in {where} with the partner's administrator",
    413: "something in front of the partner's gateway refuses the message's size: the partner's administrator "
    "raises that limit",
}
_HTTP_HINTS |= {403: _HTTP_HINTS[401], 407: _HTTP_HINTS[401], 405: _HTTP_HINTS[404]}


def _ebms_content_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _EBMS_CONTENT_TYPES


def _not_ebms_answer(status: int, partner: Partner, content_type: str, body: bytes) -> str:
    """An HTTP error that carries no ebMS signal: the partner's gateway or a proxy in front of it answered, not
    its AS4 handler. Said as such, with the answer's first words, not as a receipt that failed our checks."""
    try:
        phrase = f" {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    text = " ".join(body[:400].decode("utf-8", "replace").split())
    shown = "".join(c if c.isprintable() else "?" for c in text)[:200]
    where = f"our profile of the partner (the file in partner_profiles/ with id: {partner.profile.id})"
    default = (
        "the partner's gateway, or a proxy in front of it, cannot take messages now; sent again on schedule"
        if status >= 500
        else "ask the partner's administrator what its endpoint answers to an AS4 message"
    )
    hint = _HTTP_HINTS.get(status, default).format(where=where)
    return (
        f"HTTP {status}{phrase} from the endpoint of partner {partner.profile.id!r} "
        f"({partner.profile.endpoint_url}), not an ebMS answer ({content_type or 'no Content-Type'}: {shown or 'empty body'!s}); {hint}"
    )


def _trust_fix(partner: Partner) -> str:
    security = partner.profile.security
    where = f"our profile of it (the file in partner_profiles/ with id: {partner.profile.id})"
    if security.trust_anchor is not None:
        return (
            f"{where} names the CA that issues it in security.trust_anchor (now {security.trust_anchor.name}) "
            "with security.subject matching it"
        )
    pinned = ", ".join(p.name for p in security.pinned_certificates) or "none"
    return f"{where} pins its current certificate in security.signing_certificate (now pinned: {pinned})"


def _unverified_errors(content_type: str, body: bytes) -> str:
    """The eb:Error codes and descriptions of an answer, read without checking its signature ("" if none)."""
    described = []
    for error in _errors_in(content_type, body):
        detail = " ".join(" ".join(t for t in (error.description, error.detail) if t).split())
        shown = f"{error.code or '?'} {error.short_description or ''}: {detail}"
        described.append(shown[:500])
    return "; ".join(described[:10])


def _errors_in(content_type: str, body: bytes) -> list[ErrorDetail]:
    """The eb:Error elements of an answer, read without checking its signature (none if it cannot be read)."""
    try:
        envelope = mime.parse(content_type, body).envelope
        root = parse_xml(envelope, max_bytes=MAX_SIGNAL_BYTES, what="the partner's answer")
    except (EbmsError, XmlInputError, ValueError):
        return []
    return [error_detail(error) for error in root.iter(f"{{{EB}}}Error")]


def _not_tried(reason: str) -> Attempt:
    """An attempt that did not reach the partner for a reason an administrator can fix: retried on schedule."""
    return Attempt(receipt=None, retryable=True, reason=reason, http_status=None, latency_ms=0.0)
