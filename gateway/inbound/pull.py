"""REST pull: received permits wait ACCEPTED until the national system fetches and acknowledges them.

The API names a message by MessageId alone, but the store's key is (MessageId, sender): a fetch or an ack looks
only among the messages of rest-pull partners, so another partner's message with the same MessageId is never
taken for it, and refuses a MessageId that two rest-pull partners used rather than guess which one is meant."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from gateway.errors import GatewayError
from gateway.metrics import DELIVERY_ATTEMPTS, DELIVERY_LATENCY
from gateway.profiles import ProfileRegistry
from gateway.profiles.model import DeliveryMethod
from gateway.store import Direction, Event, IllegalTransition, MessageRecord, MessageStore, PayloadStore, State

log = structlog.get_logger("gateway.inbound")


class NotPullable(GatewayError):
    """The message is unknown here, or its partner does not deliver by REST pull."""


class AmbiguousMessageId(NotPullable):
    """Two rest-pull partners sent a message with this MessageId: it does not name one message."""


@dataclass(frozen=True)
class Acked:
    record: MessageRecord
    moved: bool


class PullInbox:
    def __init__(self, *, store: MessageStore, payloads: PayloadStore, profiles: ProfileRegistry) -> None:
        self._store = store
        self._payloads = payloads
        self._profiles = profiles

    def pull_partners(self) -> list[str]:
        return [p.id for p in self._profiles if p.delivery.method is DeliveryMethod.REST_PULL]

    async def waiting(
        self, *, partner: str | None = None, limit: int = 50, after: int | None = None
    ) -> list[MessageRecord]:
        """Received messages of rest-pull partners not yet acknowledged, oldest first; with ``after`` (the row id
        the page before ended at), those that came after it."""
        partners = [p for p in self.pull_partners() if partner is None or p == partner]
        return await self._store.oldest(
            Direction.INBOUND, State.ACCEPTED, partners=partners, limit=limit, after=after
        )

    async def find(self, message_id: str) -> MessageRecord:
        """The one message of a rest-pull partner with this MessageId."""
        found = await self._candidates(message_id)
        if not found:
            raise NotPullable(f"no received message with MessageId {message_id!r} awaits REST pull")
        if len(found) > 1:
            senders = ", ".join(sorted(f"{r.partner_id} ({r.from_party})" for r in found))
            raise AmbiguousMessageId(
                f"MessageId {message_id!r} names more than one REST-pull message: partners {senders} each sent "
                "one, and a MessageId must name one message to be fetched or acknowledged; set another delivery "
                "method (folder, webhook or soap) in all but one of these partners' profiles, so their copies "
                "are pushed, and pull the remaining one"
            )
        record = found[0]
        if record.state not in (State.ACCEPTED, State.DELIVERED):
            raise NotPullable(f"message {message_id!r} is {record.state.value}, not deliverable")
        return record

    async def _candidates(self, message_id: str) -> list[MessageRecord]:
        """Among every sender's messages of that id, those of rest-pull partners: the partner, as ``waiting``
        lists them, not its current PartyId, which a profile edit may have changed since."""
        partners = set(self.pull_partners())
        return [r for r in await self._store.find_all(Direction.INBOUND, message_id) if r.partner_id in partners]

    async def fetch(self, message_id: str) -> tuple[MessageRecord, bytes]:
        record = await self.find(message_id)
        return record, self._payloads.get(record.payload_sha256)

    async def ack(self, message_id: str) -> Acked:
        """ACCEPTED -> DELIVERED; acknowledging a delivered message again changes nothing."""
        record = await self.find(message_id)
        if record.state is State.DELIVERED:
            return Acked(record, moved=False)
        try:
            moved = await self._store.move(record.id, Event.DELIVER, detail={"pulled": True}, lease_owner=None)
        except IllegalTransition:
            return Acked(await self._store.get(record.id), moved=False)
        method = DeliveryMethod.REST_PULL.value
        DELIVERY_ATTEMPTS.labels(partner=moved.partner_id, method=method, outcome="delivered").inc()
        DELIVERY_LATENCY.labels(partner=moved.partner_id).observe(
            (moved.updated_at - moved.created_at).total_seconds()
        )
        log.info("delivered", message_id=moved.message_id, partner=moved.partner_id, pulled=True)
        return Acked(moved, moved=True)
