"""Delivery to the national system's inbox folder, with its own retry, exactly once per message.

Each message lands under a name derived from its MessageId, written to a temporary file and renamed, so a
delivery repeated after a crash replaces the same file instead of adding a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import structlog

from gateway.clock import Clock
from gateway.faults import NO_FAULTS, Faults
from gateway.files import write_atomically
from gateway.metrics import DELIVERY_LATENCY
from gateway.store import Direction, Event, MessageRecord, MessageStore, PayloadStore

log = structlog.get_logger("gateway.inbound")
RETRY_DELAY = timedelta(seconds=30)


def inbox_name(record: MessageRecord) -> str:
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", record.document_number or "message")
    return f"{label}.{hashlib.sha256(record.message_id.encode()).hexdigest()[:12]}"


def metadata(record: MessageRecord) -> dict[str, str | None]:
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
    }


class FolderDelivery:
    def __init__(
        self,
        *,
        store: MessageStore,
        payloads: PayloadStore,
        inbox: Path,
        clock: Clock,
        node_id: str,
        lease: timedelta = RETRY_DELAY,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self._store = store
        self._payloads = payloads
        self._inbox = inbox
        self._clock = clock
        self._node_id = node_id
        self._faults = faults
        self._lease = lease

    async def run_once(self, limit: int = 50) -> int:
        delivered = 0
        while batch := await self._store.claim_due(
            self._node_id, limit=limit, lease=self._lease, direction=Direction.INBOUND
        ):
            for record in batch:
                delivered += await self._deliver(record)
        return delivered

    async def _deliver(self, record: MessageRecord) -> int:
        name = inbox_name(record)
        try:
            self._inbox.mkdir(parents=True, exist_ok=True)
            data = self._payloads.get(record.payload_sha256)
            meta = json.dumps(metadata(record), indent=2).encode()
            write_atomically(self._inbox / f"{name}.json", meta, prefix=".incoming-")
            write_atomically(self._inbox / f"{name}.xml", data, prefix=".incoming-")
            self._faults.hit("deliver.after_write")
        except OSError as exc:
            due = self._clock.now() + self._lease
            await self._store.note(record.id, "delivery_failed", {"reason": str(exc)}, next_attempt_at=due)
            log.warning("delivery to inbox failed", message_id=record.message_id, reason=str(exc))
            return 0
        await self._store.move(record.id, Event.DELIVER, detail={"file": f"{name}.xml"}, lease_owner=None)
        DELIVERY_LATENCY.labels(partner=record.partner_id).observe(
            (self._clock.now() - record.created_at).total_seconds()
        )
        log.info("delivered to inbox", message_id=record.message_id, file=f"{name}.xml")
        return 1
