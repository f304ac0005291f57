"""Delivery to the national system, by the method the sender's partner profile names, with its own retry.

Folder (the default): each message lands under a name derived from its sender and MessageId (the store's key:
two partners may use the same MessageId), written to a temporary file and renamed, so a delivery repeated after
a crash replaces the same file instead of adding a second one.
Webhook: the permit is POSTed to the profile's URL with the AS4 metadata as headers; 2xx means delivered. A
redirect is not followed (a POST redirected becomes a GET without the permit): it is a failed delivery.
SOAP: the national system's ``DeliverPermit`` operation (``schemas/wsdl/national-delivery.wsdl``) gets the
permit and its metadata and answers with its own reference; a Fault or an HTTP error means "try again".
Every push method is retried until it succeeds, always with the same MessageId, after the lease doubled at each
failed attempt up to ``MAX_RETRY_DELAY``; from the ``ALERT_AFTER``th failure on, each one is logged as an error.
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
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

from gateway.clock import Clock
from gateway.errors import ProfileError, StoreError
from gateway.faults import NO_FAULTS, Faults
from gateway.files import write_atomically, write_chunks_atomically
from gateway.inbound.soap import SoapDelivery, SoapDeliveryFailed
from gateway.metrics import DELIVERY_ATTEMPTS, DELIVERY_LATENCY
from gateway.profiles import ProfileRegistry
from gateway.profiles.model import Delivery, DeliveryMethod
from gateway.store import Direction, Event, MessageRecord, MessageStore, PayloadStore, attachments_of
from gateway.tasks import cancel_all

log = structlog.get_logger("gateway.inbound")
RETRY_DELAY = timedelta(seconds=30)
MAX_RETRY_DELAY = timedelta(hours=1)
ALERT_AFTER = 10
"""Failed attempts after which each further failure of a delivery is logged as an error, for operators."""
PER_PARTNER = 16
"""A partner's deliveries in flight at most. Its messages are claimed again once half of them have settled, in
batches, so that their DELIVERED moves share commits."""


class DeliveryFailed(Exception):
    """A delivery attempt that did not succeed; retried after the back-off."""


def inbox_name(record: MessageRecord) -> str:
    """``NUMBER.HASH``: the hash of sender and MessageId, so two partners' messages never share a file and a
    message delivered again gets the same name."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", record.document_number or "message")
    key = f"{record.from_party}\0{record.message_id}".encode()
    return f"{label}.{hashlib.sha256(key).hexdigest()[:12]}"


def retry_delay(failures: int, lease: timedelta = RETRY_DELAY) -> timedelta:
    """The wait after a delivery's ``failures``th failed attempt: the lease, doubled each time, at most an hour."""
    return min(lease * (1 << min(max(failures - 1, 0), 20)), max(lease, MAX_RETRY_DELAY))


def metadata(record: MessageRecord) -> dict[str, Any]:
    """What eDelivery says the consumer must get with each message, plus what the permit is."""
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


def attachment_url(record: MessageRecord, position: int | str) -> str:
    """Where the REST API serves a supporting document of ``record``: its query names the direction and the
    sender, so the URL names this message even when another one (another partner's) has the same MessageId."""
    direction = "outbound" if record.direction is Direction.OUTBOUND else "inbound"
    return (
        f"/api/v1/messages/{quote(record.message_id, safe='@')}/attachments/{position}"
        f"?direction={direction}&from={quote(record.from_party, safe='')}"
    )


def webhook_headers(record: MessageRecord) -> dict[str, str]:
    """The AS4 metadata a webhook consumer gets with the permit."""
    values = {
        "Content-Type": "application/xml",
        "X-Permit-Message-Id": record.message_id,
        "X-Permit-Conversation-Id": record.conversation_id,
        "X-Permit-From-Party": record.from_party,
        "X-Permit-Document-Type": record.document_type,
        "X-Permit-Document-Number": record.document_number,
        "X-Permit-Attachments": str(len(record.attachments)) if record.attachments else None,
        # an RFC 6570 template: {position} is 1 to X-Permit-Attachments
        "X-Permit-Attachments-Url": attachment_url(record, "{position}") if record.attachments else None,
    }
    return {name: value for name, value in values.items() if value is not None}


class FolderDelivery:
    """Delivers accepted inbound messages by each partner's ``delivery`` method (folder unless it says else)."""

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
    ) -> None:
        self._store = store
        self._payloads = payloads
        self._inbox = inbox
        self._clock = clock
        self._node_id = node_id
        self._profiles = profiles
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._soap = SoapDelivery(timeout=http_timeout)
        self._faults = faults
        self._lease = lease
        # a claim outlives the slowest push, so a message still being delivered is never claimed again
        self._claim_lease = max(lease, timedelta(seconds=http_timeout * 2))
        self._delivering: dict[asyncio.Task[int], MessageRecord] = {}
        self._wake: Callable[[], None] = lambda: None

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
        """Start delivering the due messages of every partner with room; returns how many were started.

        A partner with half of ``PER_PARTNER`` or more in flight is left out of the claim, and no claim takes
        more than the room of the fullest partner in it, so no partner ever has more than ``PER_PARTNER`` in
        flight. Deliveries run on their own; one that settles and leaves its partner room wakes the loop."""
        in_flight = Counter(record.partner_id for record in self._delivering.values())
        busy = [partner for partner, count in in_flight.items() if 2 * count >= PER_PARTNER]
        limit = PER_PARTNER - max((c for p, c in in_flight.items() if p not in busy), default=0)
        batch = await self._store.claim_due(
            self._node_id,
            limit=limit,
            lease=self._claim_lease,
            direction=Direction.INBOUND,
            exclude_partners=[*self._pulled(), *busy],
        )
        delivering = {record.id for record in self._delivering.values()}
        for record in batch:
            if record.id not in delivering:  # claimed again when its lease ran out (a hung folder write)
                task = asyncio.create_task(self._deliver(record), name=f"deliver {record.message_id}")
                self._delivering[task] = record
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
                return delivered
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            delivered += sum(task.result() for task in done)

    async def close(self) -> None:
        """Stop the deliveries in flight and give their messages back, due at once: another node, or this one
        when it starts again, delivers them now instead of when their claims run out."""
        delivering = dict(self._delivering)
        await cancel_all(list(delivering))
        self._soap.close()
        detail = {"reason": f"node {self._node_id} stopped while delivering it"}
        for record in (record for task, record in delivering.items() if task.cancelled()):
            try:
                due = {"next_attempt_at": self._clock.now(), "lease_owner": None}
                await self._store.note(record.id, "delivery_interrupted", detail, **due)
            except StoreError as exc:  # the store may be gone too: the claims run out as after a crash
                log.warning("deliveries in flight were not given back", reason=str(exc))
                return

    def _settled(self, task: asyncio.Task[int]) -> None:
        record = self._delivering.pop(task)
        if not task.cancelled() and (error := task.exception()) is not None:  # the store went away
            log.error(
                "delivery stopped; tried again when its claim runs out",
                message_id=record.message_id,
                reason=f"{type(error).__name__}: {error}",
            )
        left = sum(1 for other in self._delivering.values() if other.partner_id == record.partner_id)
        if 2 * left < PER_PARTNER <= 2 * (left + 1):  # its partner was left out of claims, and is no more
            self._wake()

    def method(self, record: MessageRecord) -> Delivery:
        """The sender's delivery setting; folder when the profile is unknown (removed since)."""
        if self._profiles is None:
            return Delivery()
        try:
            return self._profiles.get(record.partner_id).delivery
        except ProfileError:
            return Delivery()

    async def _deliver(self, record: MessageRecord) -> int:
        setting = self.method(record)
        if setting.method is DeliveryMethod.REST_PULL:  # switched to rest-pull since the claim: give it back
            await self._store.note(record.id, "awaiting_pull", next_attempt_at=self._clock.now(), lease_owner=None)
            return 0
        try:
            detail = await self._push(record, setting)
        except (OSError, StoreError, DeliveryFailed, SoapDeliveryFailed) as exc:  # StoreError: its payload file
            await self._failed(record, setting, str(exc))
            return 0
        attempts = record.attempts + 1
        await self._store.move(
            record.id, Event.DELIVER, detail=detail, lease_owner=None, attempts=attempts, last_error=None
        )
        DELIVERY_ATTEMPTS.labels(partner=record.partner_id, method=setting.method.value, outcome="delivered").inc()
        DELIVERY_LATENCY.labels(partner=record.partner_id).observe(
            (self._clock.now() - record.created_at).total_seconds()
        )
        log.info("delivered", message_id=record.message_id, **detail)
        return 1

    async def _failed(self, record: MessageRecord, setting: Delivery, reason: str) -> None:
        """Due again after the back-off; inbound ``attempts`` counts the delivery attempts made so far."""
        failures = record.attempts + 1
        due = self._clock.now() + retry_delay(failures, self._lease)
        detail = {"reason": reason, "attempt": failures}
        await self._store.note(
            record.id, "delivery_failed", detail, next_attempt_at=due, attempts=failures, last_error=reason
        )
        DELIVERY_ATTEMPTS.labels(partner=record.partner_id, method=setting.method.value, outcome="failed").inc()
        context = {"message_id": record.message_id, "partner": record.partner_id, "attempt": failures}
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

    async def _push(self, record: MessageRecord, setting: Delivery) -> dict[str, Any]:
        if setting.method is DeliveryMethod.WEBHOOK and setting.url is not None:
            return await self._post(record, setting.url)
        if setting.method is DeliveryMethod.SOAP and setting.url is not None:
            data = self._payloads.get(record.payload_sha256)
            try:
                reference = await self._soap.deliver(setting.url, record, data)
            except SoapDeliveryFailed as exc:
                raise DeliveryFailed(str(exc).replace(setting.url, shown_url(setting.url))) from None
            return {"soap": shown_url(setting.url), "national_reference": reference}
        if setting.method is not DeliveryMethod.FOLDER:
            raise DeliveryFailed(f"delivery method {setting.method.value} is not supported yet")
        return await asyncio.to_thread(self._write, record, setting.folder or self._inbox)  # fsyncs off the loop

    def _write(self, record: MessageRecord, inbox: Path) -> dict[str, Any]:
        """Attachments first, then the metadata, then the permit: the permit's file appearing means complete."""
        name = inbox_name(record)
        inbox.mkdir(parents=True, exist_ok=True)
        if record.attachments:
            folder = inbox / f"{name}.attachments"
            folder.mkdir(exist_ok=True)
            for attachment in attachments_of(record.attachments):
                target = folder / f"{attachment.position}-{attachment.filename}"
                write_chunks_atomically(target, self._payloads.chunks(attachment.sha256), prefix=".incoming-")
        data = self._payloads.get(record.payload_sha256)
        meta = json.dumps(metadata(record), indent=2).encode()
        write_atomically(inbox / f"{name}.json", meta, prefix=".incoming-")
        write_atomically(inbox / f"{name}.xml", data, prefix=".incoming-")
        self._faults.hit("deliver.after_write")
        return {"file": f"{name}.xml"}

    async def _post(self, record: MessageRecord, url: str) -> dict[str, Any]:
        if self._session is None:
            raise DeliveryFailed("webhook delivery needs an HTTP session")
        data = self._payloads.get(record.payload_sha256)
        try:
            async with self._session.post(
                url, data=data, headers=webhook_headers(record), timeout=self._timeout, allow_redirects=False
            ) as response:
                status, location = response.status, response.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = str(exc).replace(url, shown_url(url))
            raise DeliveryFailed(f"webhook {shown_url(url)}: {type(exc).__name__}: {failure}") from None
        if 300 <= status < 400:
            raise DeliveryFailed(
                f"webhook {shown_url(url)} answered HTTP {status} redirecting to "
                f"{shown_url(location) if location else '(no Location header)'}: "
                "redirects are not followed, since a redirected POST loses the permit; set delivery.url in "
                f"partner profile {record.partner_id!r} to the final URL"
            )
        if not 200 <= status < 300:
            raise DeliveryFailed(f"webhook {shown_url(url)} answered HTTP {status}")
        return {"webhook": shown_url(url), "status": status}
