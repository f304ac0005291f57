"""Delivery to the national system, by the method the sender's partner profile names, with its own retry.

Folder (the default): each message lands under a name derived from its sender and MessageId (the store's key:
two partners may use the same MessageId), written to a temporary file and renamed, so a delivery repeated after
a crash replaces the same file instead of adding a second one.
Webhook: the permit is POSTed to the profile's URL with the AS4 metadata as headers; 2xx means delivered. A
redirect is not followed (a POST redirected becomes a GET without the permit): it is a failed delivery.
SOAP: the national system's ``DeliverPermit`` operation (``schemas/wsdl/national-delivery.wsdl``) gets the
permit and its metadata and answers with its own reference; a Fault or an HTTP error means "try again".
A delivery renews its claim while it runs, and what it records is fenced on that claim (its number, the
message's ``claim_seq``): an attempt that outlived its claim, which another node then took, records nothing, and a
folder write checks the claim before each file, so it does not write the message again after the other node did.
Renewals stop after ``HUNG_AFTER_LEASES`` claim leases: the attempt is taken as hung (a stale mount), a failure
is recorded and logged as an error, and any node delivers the message after the back-off.
Folder writes run on threads of their own, ``FOLDER_WRITES_PER_PARTNER`` per partner at most: a folder on a
mount that hangs holds up its partner only, never the threads the receive path uses. The files are readable
as ``open()`` would make them (0666 less the umask), for a national system under its own account.
Every push method is retried until it succeeds, always with the same MessageId, after the lease doubled at each
failed attempt up to ``MAX_RETRY_DELAY``; from the ``ALERT_AFTER``th failure on, each one is logged as an error.
Failures are the message's ``delivery_failed`` events, not its attempts: an attempt a stopping node gave back or
one that lost its claim is no failure, so it neither lengthens the back-off nor brings the alert nearer.
Deliveries run side by side, each partner's messages capped at ``PER_PARTNER`` in flight, so a destination
that answers slowly or not at all (a webhook that hangs until the time-out) holds up only the messages of the
partner that delivers there, never another partner's.
REST pull: the national system fetches and acknowledges messages through the REST API; the worker leaves them.
The method is read from the profiles in use at each claim: messages of rest-pull partners are never claimed
(they stay due), so after a profile change they are pushed by the new method at the next run, and a partner
switched to rest-pull has its waiting messages listed for pull instead of pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

from gateway.clock import Clock
from gateway.errors import ProfileError, StoreError
from gateway.faults import NO_FAULTS, Faults
from gateway.files import remove_leftovers, shared_mode, write_atomically, write_chunks_atomically
from gateway.inbound.soap import SoapDelivery, SoapDeliveryFailed
from gateway.metrics import DELIVERY_ATTEMPTS, DELIVERY_LATENCY
from gateway.profiles import ProfileRegistry
from gateway.profiles.model import Delivery, DeliveryMethod
from gateway.settings import INBOX_KEY, GuardedFolder, guarding, real_path
from gateway.store import (
    Direction,
    Event,
    IllegalTransition,
    MessageRecord,
    MessageStore,
    PayloadStore,
    State,
    attachments_of,
    is_unavailable,
)
from gateway.tasks import cancel_all, run_to_end

log = structlog.get_logger("gateway.inbound")
RETRY_DELAY = timedelta(seconds=30)
MAX_RETRY_DELAY = timedelta(hours=1)
ALERT_AFTER = 10
"""Failed attempts after which each further failure of a delivery is logged as an error, for operators."""
PER_PARTNER = 16
"""A partner's deliveries in flight at most. Its messages are claimed again once half of them have settled, in
batches, so that their DELIVERED moves share commits."""
FOLDER_THREADS = 32
"""Threads writing delivery folders, apart from the event loop's default executor (which parses received AS4
messages): a folder on a mount that hangs holds its threads for as long as it hangs."""
FOLDER_WRITES_PER_PARTNER = 4
"""A partner's folder writes in flight at most, well below ``FOLDER_THREADS``: one partner's hung folder never
takes the threads another partner's deliveries need."""
HUNG_AFTER_LEASES = 5
"""Claim leases a delivery may run before it is taken as hung: its claim is no longer renewed, and the message is
due again after the back-off of a failure, for any node, instead of held by a hung mount for as long as it hangs.
Webhook and SOAP pushes end within half a lease (their HTTP time-out): only a folder write reaches it."""
CLOSE_WAIT_SECONDS = 5.0
"""How long ``close`` waits for folder writes it cannot cancel before handing their messages back."""
TEMPORARY_PREFIX = ".incoming-"
LEFTOVER_SECONDS = 3600.0
"""A temporary file older than this in a delivery folder is what a crash left of a write: it is deleted."""
ANSWER_SHOWN = 200
"""Characters of a failed webhook answer's body shown in its reason."""
FINDINGS_HEADER_BYTES = 4096
"""The longest X-Permit-Findings-Json: common servers take 8 KiB a header line (nginx, Tomcat, Node.js for all
of them), and the other headers need room."""


class DeliveryFailed(Exception):
    """A delivery attempt that did not succeed; retried after the back-off."""


class ClaimLost(Exception):
    """This node's claim on the message ran out (or the node is stopping) before the delivery was written:
    another claim delivers it, so this attempt writes nothing more."""


@dataclass(eq=False)
class _Claim:
    """A delivery under this node's claim. ``claimed`` (the claim's number, the message's ``claim_seq``) fences
    every change this attempt makes; ``expires`` is when the claim runs out unless renewed. ``lost`` and the
    worker's stop flag are read by the folder-writing thread before each file."""

    record: MessageRecord
    claimed: int
    expires: datetime
    lost: threading.Event = field(default_factory=threading.Event)
    thread: Future[dict[str, Any]] | None = None


def delivery_id(record: MessageRecord) -> str:
    """The national system's idempotency key: a MessageId alone does not name one message, since two partners
    may each send one under the same MessageId (the store keys messages by sender and MessageId too)."""
    return hashlib.sha256(f"{record.from_party}\0{record.message_id}".encode()).hexdigest()


def inbox_name(record: MessageRecord) -> str:
    """``NUMBER.HASH``: the start of the delivery id, so two partners' messages never share a file and a
    message delivered again gets the same name."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", record.document_number or "message")
    return f"{label}.{delivery_id(record)[:12]}"


def retry_delay(failures: int, lease: timedelta = RETRY_DELAY) -> timedelta:
    """The wait after a delivery's ``failures``th failed attempt: the lease, doubled each time, at most an hour."""
    return min(lease * (1 << min(max(failures - 1, 0), 20)), max(lease, MAX_RETRY_DELAY))


def metadata(record: MessageRecord) -> dict[str, Any]:
    """What eDelivery says the consumer must get with each message, plus what the permit is and the findings
    (warnings) it was accepted with."""
    return {
        "message_id": record.message_id,
        "conversation_id": record.conversation_id,
        "ref_to_message_id": record.ref_to_message_id,
        "from_party": record.from_party,
        "to_party": record.to_party,
        "partner": record.partner_id,
        "service": record.service,
        "action": record.action,
        "document_type": record.document_type,
        "document_number": record.document_number,
        "payload_sha256": record.payload_sha256,
        "received_at": record.created_at.isoformat(),
        "attachments": [a.to_json() for a in attachments_of(record.attachments)],
        "delivery_id": delivery_id(record),
        "findings": list(record.findings),  # the warnings it was accepted with, for the national officer
    }


def shown_url(url: str) -> str:
    """A national system's URL fit for logs and the message timeline: without the user, password and query
    string that may carry its credentials."""
    try:
        parsed = URL(url)
        parsed = parsed.with_user(None) if parsed.is_absolute() else parsed
        return str(parsed.with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(an unreadable URL)"


def scrubbed(text: str, url: str) -> str:
    """``text`` (an error about ``url``) with the URL as ``shown_url`` shows it, and its query taken out wherever
    the text names it: after the path, however a library encoded it (requests: "Max retries exceeded with url:
    /path?query"), or alone, as written or as yarl normalised it."""
    shown = shown_url(url)
    text = text.replace(url, shown)
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return text
    text = text.replace(str(parsed), shown)
    if parsed.raw_path:
        text = re.sub(re.escape(parsed.raw_path) + r"\?[^\s'\"()]*", f"{parsed.raw_path}?(hidden)", text)
    written = url.partition("?")[2].partition("#")[0]
    for query in sorted({written, parsed.raw_query_string, parsed.query_string} - {""}, key=len, reverse=True):
        text = text.replace(query, "(hidden)")
    return text


def _no_profile(record: MessageRecord) -> str:
    return (
        f"no partner profile {record.partner_id!r} on this node, so how the national system takes its permits is "
        "not known: restore the profile (`permit-gateway profiles history` shows its versions, `profiles rollback` "
        "brings one back) and the message is delivered by its delivery method"
    )


def attachment_url(record: MessageRecord, position: int | str) -> str:
    """Where the REST API serves a supporting document of ``record``: its query names the direction and the
    sender, so the URL names this message even when another one (another partner's) has the same MessageId."""
    direction = "outbound" if record.direction is Direction.OUTBOUND else "inbound"
    return (
        f"/api/v1/messages/{quote(record.message_id, safe='@')}/attachments/{position}"
        f"?direction={direction}&from={quote(record.from_party, safe='')}"
    )


def webhook_headers(record: MessageRecord) -> dict[str, str]:
    """The AS4 metadata a webhook consumer (and a REST pull fetch) gets with the permit, and its findings."""
    values = {
        "Content-Type": "application/xml",
        "X-Permit-Message-Id": record.message_id,
        "X-Permit-Delivery-Id": delivery_id(record),  # the idempotency key: the same on every attempt
        "X-Permit-Conversation-Id": record.conversation_id,
        "X-Permit-From-Party": record.from_party,
        "X-Permit-Document-Type": record.document_type,
        "X-Permit-Document-Number": record.document_number,
        "X-Permit-Attachments": str(len(record.attachments)) if record.attachments else None,
        # an RFC 6570 template: {position} is 1 to X-Permit-Attachments
        "X-Permit-Attachments-Url": attachment_url(record, "{position}") if record.attachments else None,
        **findings_headers(record.findings),
    }
    return {name: value for name, value in values.items() if value is not None}


def findings_headers(findings: Sequence[dict[str, Any]]) -> dict[str, str]:
    """``X-Permit-Findings``: the rules the permit was accepted with a warning under (``EA-012,X-027``), absent
    when none; ``X-Permit-Findings-Json``: the findings themselves as ASCII JSON, as many as fit in
    ``FINDINGS_HEADER_BYTES``, and ``X-Permit-Findings-Omitted`` how many did not (the folder's ``.json``, the
    REST listing and the message's timeline have them all)."""
    if not findings:
        return {}
    headers: dict[str, str] = {}
    rules = ",".join(dict.fromkeys(f["rule"] for f in findings if f.get("severity") != "info"))
    if rules:
        headers["X-Permit-Findings"] = rules
    shown = list(findings)
    while len(text := _ascii_json(shown)) > FINDINGS_HEADER_BYTES:
        shown.pop()
    if shown:
        headers["X-Permit-Findings-Json"] = text
    if len(shown) < len(findings):
        headers["X-Permit-Findings-Omitted"] = str(len(findings) - len(shown))
    return headers


def _ascii_json(value: Any) -> str:
    """One line of ASCII JSON, fit for an HTTP header: other characters and line breaks escaped."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


class FolderDelivery:
    """Delivers accepted inbound messages by each partner's ``delivery`` method (folder unless it says else).

    Each delivery renews its claim while it runs (a folder write has no time bound), and every change it makes
    is fenced on that claim: once the claim ran out and another claim took the message, this attempt writes no
    more files and records nothing. Folder writes run on threads of their own, a few per partner at most."""

    def __init__(
        self,
        *,
        store: MessageStore,
        payloads: PayloadStore,
        inbox: Path,
        clock: Clock,
        node_id: str,
        profiles: ProfileRegistry | None = None,
        session: aiohttp.ClientSession | None = None,
        http_timeout: float = 30.0,
        lease: timedelta = RETRY_DELAY,
        faults: Faults = NO_FAULTS,
        guarded: Sequence[GuardedFolder] = (),
    ) -> None:
        """``guarded``: the inbox and the folders a profile's delivery folder must stay out of
        (``gateway.settings.guarded_folders``)."""
        self._store = store
        self._guarded = tuple(guarded)
        self._payloads = payloads
        self._inbox = inbox
        self._clock = clock
        self._node_id = node_id
        self._profiles = profiles
        self._session = session
        self._http_timeout = http_timeout
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._soap = SoapDelivery(timeout=http_timeout)
        self._faults = faults
        self._lease = lease
        # a claim outlives the slowest push, so a message still being delivered is never claimed again
        self._claim_lease = max(lease, timedelta(seconds=http_timeout * 2))
        self._delivering: dict[asyncio.Task[int], _Claim] = {}
        self._wake: Callable[[], None] = lambda: None
        self._threads = ThreadPoolExecutor(max_workers=FOLDER_THREADS, thread_name_prefix="folder-delivery")
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stopping = threading.Event()
        self._file_mode = shared_mode()
        self._swept: dict[Path, float] = {}
        self._sweeps: set[asyncio.Task[None]] = set()

    def wake_with(self, callback: Callable[[], None]) -> None:
        """``callback`` wakes the node's delivery loop: when a partner's deliveries have room again."""
        self._wake = callback

    def use_profiles(self, profiles: ProfileRegistry) -> None:
        """After a profile change: the next claim follows the new delivery methods."""
        self._profiles = profiles

    def _pulled(self) -> list[str]:
        """Partners whose documents the national system pulls: the worker does not claim their messages."""
        profiles = () if self._profiles is None else self._profiles
        return [p.id for p in profiles if p.delivery.method is DeliveryMethod.REST_PULL]

    async def run_once(self) -> int:
        """``_start_due``, to its end even when the node stops meanwhile: a claim cut off before its deliveries
        started would be handed back by nobody, its messages waiting for the claim to run out."""
        return await run_to_end(self._start_due())

    async def _start_due(self) -> int:
        """Start delivering the due messages of every partner with room; returns how many were started.

        A partner with half of ``PER_PARTNER`` or more in flight is left out of the claim, and no claim takes
        more than the room of the fullest partner in it, so no partner ever has more than ``PER_PARTNER`` in
        flight. Deliveries run on their own; one that settles and leaves its partner room wakes the loop."""
        self._sweep_folders()
        in_flight = Counter(claim.record.partner_id for claim in self._delivering.values())
        busy = [partner for partner, count in in_flight.items() if 2 * count >= PER_PARTNER]
        limit = PER_PARTNER - max((c for p, c in in_flight.items() if p not in busy), default=0)
        batch = await self._store.claim_due(
            self._node_id,
            limit=limit,
            lease=self._claim_lease,
            direction=Direction.INBOUND,
            exclude_partners=[*self._pulled(), *busy],
        )
        expires = self._clock.now() + self._claim_lease
        delivering = {claim.record.id: claim for claim in self._delivering.values()}
        for record in batch:
            if (running := delivering.get(record.id)) is not None and not running.lost.is_set():
                # claimed again while still being delivered here (its renewals failed until the lease ran out):
                # the delivery in flight carries on under the new claim; one given up as hung writes no more, so
                # the new claim is an attempt of its own
                running.claimed, running.expires = record.claim_seq, expires
                continue
            claim = _Claim(record, record.claim_seq, expires)
            task = asyncio.create_task(self._deliver(claim), name=f"deliver {record.message_id}")
            self._delivering[task] = claim
            task.add_done_callback(self._settled)
        if len(batch) == limit:
            self._wake()  # more may be due
        return len(batch)

    async def drain(self) -> int:
        """Deliver everything due and wait for it; returns how many were delivered. For tests and one-shot
        tools: a running node lets its deliveries run on their own."""
        delivered = 0
        pending: set[asyncio.Task[int]] = set()
        while True:
            await self.run_once()
            pending |= self._delivering.keys()
            if not pending:
                await asyncio.gather(*self._sweeps)
                return delivered
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            delivered += sum(task.result() for task in done)

    async def close(self) -> None:
        """Stop the deliveries in flight and give their messages back, due at once: another node, or this one
        when it starts again, delivers them now instead of when their claims run out.

        A folder write cannot be cancelled: its thread writes no further file once stopped, and is waited for
        up to ``CLOSE_WAIT_SECONDS``. One that completed its delivery meanwhile is recorded as delivered; one
        still writing keeps its claim, so nobody delivers the message beside it until the claim runs out."""
        self._stopping.set()
        delivering = dict(self._delivering)
        await cancel_all([*delivering, *self._sweeps])
        self._threads.shutdown(wait=False, cancel_futures=True)
        writing = [asyncio.wrap_future(c.thread) for c in delivering.values() if c.thread and not c.thread.done()]
        if writing:
            written, _ = await asyncio.wait(writing, timeout=CLOSE_WAIT_SECONDS)
            for future in written:
                future.exception()  # a write the stop cut short ends in ClaimLost: expected, and said below
        self._soap.close()
        for claim in (claim for task, claim in delivering.items() if task.cancelled()):
            try:
                await self._hand_back(claim)
            except StoreError as exc:  # the store may be gone too: the claims run out as after a crash
                log.warning("deliveries in flight were not given back", reason=str(exc))
                return

    async def _hand_back(self, claim: _Claim) -> None:
        record, thread = claim.record, claim.thread
        if thread is not None and not thread.done():
            log.warning(
                "delivery still writing at shutdown: its message is left to its claim, delivered again when the "
                "claim runs out; check the partner's delivery folder, which does not answer",
                message_id=record.message_id,
                partner=record.partner_id,
                claim_expires_at=claim.expires.isoformat(),
            )
            return
        if thread is not None and not thread.cancelled() and thread.exception() is None:
            current = await self._store.get(record.id)
            if current.state is State.DELIVERED and current.claim_seq == claim.claimed:
                return  # the stop came as its delivery was being recorded, which went through
            await self._delivered(claim, Delivery(), thread.result())  # written in full before the thread stopped
            return
        detail = {"reason": f"node {self._node_id} stopped while delivering it"}
        await self._store.note_claimed(
            record.id,
            "delivery_interrupted",
            detail,
            owner=self._node_id,
            claimed=claim.claimed,
            next_attempt_at=self._clock.now(),
            lease_owner=None,
        )

    def _settled(self, task: asyncio.Task[int]) -> None:
        record = self._delivering.pop(task).record
        if not task.cancelled() and (error := task.exception()) is not None:  # the store went away
            log.error(
                "delivery stopped; tried again when its claim runs out",
                message_id=record.message_id,
                reason=f"{type(error).__name__}: {error}",
            )
        left = sum(1 for other in self._delivering.values() if other.record.partner_id == record.partner_id)
        if 2 * left < PER_PARTNER <= 2 * (left + 1):  # its partner was left out of claims, and is no more
            self._wake()

    def method(self, record: MessageRecord) -> Delivery | None:
        """The sender's delivery setting; None when its profile is gone (removed or renamed since): where the
        national system takes that partner's permits is then not known, and the folder may be the wrong place."""
        if self._profiles is None:
            return Delivery()
        try:
            return self._profiles.get(record.partner_id).delivery
        except ProfileError:
            return None

    async def _deliver(self, claim: _Claim) -> int:
        record = claim.record
        setting = self.method(record)
        if setting is None:
            await self._failed(claim, None, _no_profile(record))
            return 0
        if setting.method is DeliveryMethod.REST_PULL:  # switched to rest-pull since the claim: give it back
            due = {"next_attempt_at": self._clock.now(), "lease_owner": None}
            await self._store.note_claimed(
                record.id, "awaiting_pull", {}, owner=self._node_id, claimed=claim.claimed, **due
            )
            return 0
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_claim(claim, setting, done), name=f"claim {record.message_id}")
        try:
            return await self._attempt(claim, setting)
        finally:
            # stopped, not cancelled: a cancel landing in a renewal's query drops the pooled connection (asyncpg)
            done.set()
            await keeper

    async def _attempt(self, claim: _Claim, setting: Delivery) -> int:
        record = claim.record
        try:
            detail = await self._push(claim, setting)
        except ClaimLost as exc:
            log.warning("delivery abandoned", message_id=record.message_id, reason=str(exc))
            return 0
        except (OSError, StoreError, DeliveryFailed, SoapDeliveryFailed) as exc:  # StoreError: its payload file
            if claim.lost.is_set():  # given up as hung (its failure recorded then) or taken by another claim
                log.warning(
                    "failure of an attempt given up not recorded", message_id=record.message_id, reason=str(exc)
                )
                return 0
            await self._failed(claim, setting, str(exc))
            return 0
        return await self._delivered(claim, setting, detail)

    async def _delivered(self, claim: _Claim, setting: Delivery, detail: dict[str, Any]) -> int:
        record = claim.record
        try:
            await self._store.move(
                record.id,
                Event.DELIVER,
                detail=detail,
                lease_owner=None,
                last_error=None,
                claimed=claim.claimed,
            )
        except IllegalTransition as exc:  # StaleClaim: the claim ran out and another attempt delivered it
            log.warning(
                "delivered again by a stale attempt: its claim ran out before it was done, and another attempt "
                "delivered the message too; the national system gets it twice, under the same delivery id",
                message_id=record.message_id,
                delivery_id=delivery_id(record),
                reason=str(exc),
                **detail,
            )
            return 0
        DELIVERY_ATTEMPTS.labels(partner=record.partner_id, method=setting.method.value, outcome="delivered").inc()
        DELIVERY_LATENCY.labels(partner=record.partner_id).observe(
            (self._clock.now() - record.created_at).total_seconds()
        )
        log.info("delivered", message_id=record.message_id, **detail)
        return 1

    async def _keep_claim(self, claim: _Claim, setting: Delivery, done: asyncio.Event) -> None:
        """Renew the claim every third of its lease until ``done``: a folder write may hang for longer than a
        lease, and a claim that ran out meanwhile would let another node deliver the message beside this one.
        Sets ``claim.lost`` once the message left this claim. A store out of reach fails a renewal, not the
        claim: the next one may come before it runs out. After ``HUNG_AFTER_LEASES`` leases the attempt is given
        up as hung instead."""
        started = self._clock.now()
        while not await _set_within(done, self._claim_lease.total_seconds() / 3):
            record, now = claim.record, self._clock.now()
            if now - started >= self._claim_lease * HUNG_AFTER_LEASES:
                await self._give_up(claim, setting, now - started)
                return
            try:
                renewed = await self._store.renew_lease(
                    record.id,
                    self._node_id,
                    claimed=claim.claimed,
                    lease=self._claim_lease,
                    direction=Direction.INBOUND,
                )
            except Exception as exc:
                if not (isinstance(exc, StoreError) or is_unavailable(exc)):
                    log.exception(
                        "claim renewal failed; the delivery is left to its claim", message_id=record.message_id
                    )
                    return
                log.warning(
                    "claim not renewed; trying again at the next renewal",
                    message_id=record.message_id,
                    reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                )
                continue
            if not renewed:
                claim.lost.set()
                return
            claim.expires = now + self._claim_lease

    async def _give_up(self, claim: _Claim, setting: Delivery, running: timedelta) -> None:
        """A hung attempt: its thread writes no further file, and its failure makes the message due after the
        back-off, for whichever node claims it then. When the store is out of reach the claim runs out instead."""
        claim.lost.set()
        seconds = running.total_seconds()
        if setting.method is DeliveryMethod.FOLDER:
            folder = setting.folder or self._inbox
            limit = self._claim_lease.total_seconds() * HUNG_AFTER_LEASES
            reason = (
                f"folder write hung for {seconds:.0f} s on node {self._node_id} (folder {folder}); check that "
                f"folder's file system (a stale network mount?): a delivery running over {HUNG_AFTER_LEASES} claim "
                f"leases ({limit:g} s) is given up, and the message is delivered again after the back-off, by any node"
            )
        else:
            reason = (
                f"delivery by {setting.method.value} hung for {seconds:.0f} s on node {self._node_id}, over "
                f"{HUNG_AFTER_LEASES} claim leases; it is given up and delivered again after the back-off"
            )
        try:
            await self._failed(claim, setting, reason, hung=True)
        except Exception as exc:
            if not (isinstance(exc, StoreError) or is_unavailable(exc)):
                raise
            log.error(
                "hung delivery given up, its failure not recorded: the store is out of reach; the message is "
                "delivered again when its claim runs out",
                message_id=claim.record.message_id,
                partner=claim.record.partner_id,
                reason=reason,
                store_error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            )

    def _check_claim(self, claim: _Claim) -> None:
        """Raise ``ClaimLost`` unless this attempt may still write: its claim holds (a sixth of its lease left at
        least, a margin for the other nodes' clocks; renewed every third, it has that even after one renewal
        failed) and the node is not stopping."""
        if self._stopping.is_set():
            raise ClaimLost(f"node {self._node_id} is stopping; the message is given back")
        if claim.lost.is_set() or claim.expires - self._clock.now() < self._claim_lease / 6:
            raise ClaimLost(
                "its claim ran out before the delivery was written (renewals failed or came too late, or the "
                "write hung and was given up); another claim delivers it"
            )

    async def _failed(self, claim: _Claim, setting: Delivery | None, reason: str, *, hung: bool = False) -> None:
        """Due again after the back-off of the message's ``failures``th failure (its ``delivery_failed`` events
        with this one: inbound ``attempts`` counts claims, which a stopping node raises too). Not
        recorded (nor counted) once the message left this claim: a newer attempt's outcome stands. ``hung``:
        logged as an error at once, a hung mount being something to fix."""
        record = claim.record
        failures = await self._store.count_events(record.id, "delivery_failed") + 1
        due = self._clock.now() + retry_delay(failures, self._lease)
        detail = {"reason": reason, "attempt": failures}
        recorded = await self._store.note_claimed(
            record.id,
            "delivery_failed",
            detail,
            owner=self._node_id,
            claimed=claim.claimed,
            next_attempt_at=due,
            last_error=reason,
        )
        context = {"message_id": record.message_id, "partner": record.partner_id, "attempt": failures}
        if not recorded:
            log.warning(
                "failure of a stale delivery attempt not recorded: its claim ran out", reason=reason, **context
            )
            return
        method = setting.method.value if setting is not None else "unknown"
        DELIVERY_ATTEMPTS.labels(partner=record.partner_id, method=method, outcome="failed").inc()
        if hung:
            log.error(
                "delivery hung and given up: this node's destination does not answer; fix what reason names (it "
                "is tried again at next_attempt_at, by any node)",
                reason=reason,
                next_attempt_at=due.isoformat(),
                **context,
            )
            return
        if failures < ALERT_AFTER:
            log.warning("delivery failed", reason=reason, next_attempt_at=due.isoformat(), **context)
            return
        log.error(
            "delivery keeps failing: the national system does not have this permit; fix the delivery setting in "
            "the partner's profile or the destination it names (it is tried again at next_attempt_at)",
            reason=reason,
            waiting_since=record.created_at.isoformat(),
            next_attempt_at=due.isoformat(),
            **context,
        )

    async def _push(self, claim: _Claim, setting: Delivery) -> dict[str, Any]:
        record = claim.record
        if setting.method is DeliveryMethod.WEBHOOK and setting.url is not None:
            self._check_claim(claim)
            return await self._post(record, setting.url)
        if setting.method is DeliveryMethod.SOAP and setting.url is not None:
            data = self._payloads.get(record.payload_sha256)
            self._check_claim(claim)
            try:
                reference = await self._soap.deliver(setting.url, record, data, setting.soap_contract)
            except SoapDeliveryFailed as exc:
                raise DeliveryFailed(scrubbed(str(exc), setting.url)) from None
            return {"soap": shown_url(setting.url), "national_reference": reference}
        if setting.method is not DeliveryMethod.FOLDER:
            raise DeliveryFailed(f"delivery method {setting.method.value} is not supported yet")
        self._check_folder(record.partner_id, setting.folder)
        return await self._in_folder_thread(
            claim, functools.partial(self._write, claim, setting.folder or self._inbox)
        )

    async def _in_folder_thread(self, claim: _Claim, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``write`` on a folder-delivery thread (fsyncs off the loop), holding one of the partner's slots until
        the thread is done, even when this task is cancelled: a thread cannot be."""
        slots = self._slots.setdefault(claim.record.partner_id, asyncio.Semaphore(FOLDER_WRITES_PER_PARTNER))
        await slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            thread = claim.thread = self._threads.submit(write)
        except BaseException:
            slots.release()
            raise
        thread.add_done_callback(lambda _: _call_soon(loop, slots.release))
        return await asyncio.wrap_future(thread)

    def _check_folder(self, partner_id: str, folder: Path | None) -> None:
        """A profile's delivery folder (written on disk, where no edit rule applied) may not be a folder the
        gateway reads from or keeps its own files in, nor inside one but the inbox: a permit delivered into the
        outbox would be sent on, or refused there and never reach the national system, and one delivered into the
        keystore or the profile folder would land among the gateway's keys or profiles. The delivery waits, and is
        retried, until it is fixed. A folder outside all of them is the operator's choice, made on disk."""
        if folder is None:
            return
        owner = guarding(folder, self._guarded)
        if owner is None or owner.key == INBOX_KEY:
            return
        held = real_path(owner.path)
        name = owner.label if real_path(folder) == held else f"inside {owner.label} ({held})"
        raise DeliveryFailed(
            f"the delivery folder of partner {partner_id!r} ({folder}) is {name}, where received permits must not "
            "go; set delivery.folder in that profile to the inbox or a folder inside it, or leave it out (received "
            "permits then go to the inbox)"
        )

    def _write(self, claim: _Claim, inbox: Path) -> dict[str, Any]:
        """Attachments first, then the metadata, then the permit: the permit's file appearing means complete.
        The claim is checked before each file, so an attempt whose claim ran out stops writing."""
        record = claim.record
        name = inbox_name(record)
        self._check_claim(claim)
        inbox.mkdir(parents=True, exist_ok=True)
        if record.attachments:
            folder = inbox / f"{name}.attachments"
            folder.mkdir(exist_ok=True)
            for attachment in attachments_of(record.attachments):
                target = folder / f"{attachment.position}-{attachment.filename}"
                chunks = self._payloads.chunks(attachment.sha256)
                self._check_claim(claim)
                write_chunks_atomically(target, chunks, prefix=TEMPORARY_PREFIX, mode=self._file_mode)
        data = self._payloads.get(record.payload_sha256)
        meta = json.dumps(metadata(record), indent=2).encode()
        self._check_claim(claim)
        write_atomically(inbox / f"{name}.json", meta, prefix=TEMPORARY_PREFIX, mode=self._file_mode)
        self._check_claim(claim)
        write_atomically(inbox / f"{name}.xml", data, prefix=TEMPORARY_PREFIX, mode=self._file_mode)
        self._faults.hit("deliver.after_write")
        return {"file": f"{name}.xml"}

    def _sweep_folders(self) -> None:
        """At most hourly per delivery folder, in the background: delete the temporary files a crash left
        there (``TEMPORARY_PREFIX``, over ``LEFTOVER_SECONDS`` old). One sweep per folder at a time, on a
        folder-delivery thread, so a folder that hangs holds one thread and nothing else."""
        folders = {self._inbox}
        for profile in () if self._profiles is None else self._profiles:
            if profile.delivery.method is DeliveryMethod.FOLDER and profile.delivery.folder is not None:
                folders.add(profile.delivery.folder)
        now = time.monotonic()
        for folder in folders:
            if now - self._swept.get(folder, -LEFTOVER_SECONDS) < LEFTOVER_SECONDS:
                continue
            self._swept[folder] = now
            task = asyncio.create_task(self._sweep(folder), name=f"sweep {folder}")
            self._sweeps.add(task)
            task.add_done_callback(self._sweeps.discard)

    async def _sweep(self, folder: Path) -> None:
        sweep = functools.partial(remove_leftovers, folder, TEMPORARY_PREFIX, older_than=LEFTOVER_SECONDS)
        try:
            removed = await asyncio.wrap_future(self._threads.submit(sweep))
        except OSError as exc:
            log.warning("delivery folder not swept of temporary files", folder=str(folder), reason=str(exc))
            return
        if removed:
            log.info(
                "temporary files of interrupted deliveries deleted",
                folder=str(folder),
                files=[str(path.relative_to(folder)) for path in removed],
            )

    async def _post(self, record: MessageRecord, url: str) -> dict[str, Any]:
        if self._session is None:
            raise DeliveryFailed("webhook delivery needs an HTTP session")
        data = self._payloads.get(record.payload_sha256)
        try:
            async with self._session.post(
                url, data=data, headers=webhook_headers(record), timeout=self._timeout, allow_redirects=False
            ) as response:
                status, location = response.status, response.headers.get("Location")
                answer = b"" if 200 <= status < 400 else await _read_start(response.content, 4 * ANSWER_SHOWN)
        except TimeoutError:  # aiohttp's own time-outs are TimeoutErrors too, with no message
            raise DeliveryFailed(
                f"webhook {shown_url(url)}: no answer within {self._http_timeout:g} s "
                "([outbound] http_timeout_seconds); check that the national system's webhook is up, or raise "
                "the setting if it takes longer"
            ) from None
        except aiohttp.ClientError as exc:
            failure = scrubbed(str(exc), url)
            raise DeliveryFailed(
                f"webhook {shown_url(url)}: {type(exc).__name__}: {failure}".rstrip(": ")
            ) from None
        if 300 <= status < 400:
            raise DeliveryFailed(
                f"webhook {shown_url(url)} answered HTTP {status} redirecting to "
                f"{shown_url(location) if location else '(no Location header)'}: "
                "redirects are not followed, since a redirected POST loses the permit; set delivery.url in "
                f"partner profile {record.partner_id!r} to the final URL"
            )
        if not 200 <= status < 300:
            raise DeliveryFailed(f"webhook {shown_url(url)} answered HTTP {status}: {_shown_answer(answer)}")
        return {"webhook": shown_url(url), "status": status}


async def _read_start(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The first ``limit`` bytes of an answer's body (all of it when shorter); the rest is never read."""
    start = b""
    while len(start) < limit and (block := await content.read(limit - len(start))):
        start += block
    return start


def _shown_answer(body: bytes) -> str:
    """The start of an answer's body fit for a log line and the timeline: ``ANSWER_SHOWN`` characters at most,
    control and non-ASCII characters escaped."""
    if not body.strip():
        return "(no body)"
    text = body.decode("utf-8", errors="replace")
    shown = text[:ANSWER_SHOWN].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > ANSWER_SHOWN else "")


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """``callback`` on ``loop`` from another thread; nothing once the loop is closed (the process is ending)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
