"""REST pull: received permits wait ACCEPTED until the national system fetches and acknowledges them."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.profiles import ProfileRegistry
from gateway.profiles.model import DeliveryMethod
from gateway.store import Direction, Event, IllegalTransition, MessageRecord, MessageStore, PayloadStore, State


class NotPullable(GatewayError):
    """The message is unknown here, or its partner does not deliver by REST pull."""


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

    async def waiting(self, *, partner: str | None = None, limit: int = 50) -> list[MessageRecord]:
        """Received messages of rest-pull partners not yet acknowledged, oldest first."""
        partners = [p for p in self.pull_partners() if partner is None or p == partner]
        return await self._store.oldest(Direction.INBOUND, State.ACCEPTED, partners=partners, limit=limit)

    async def find(self, message_id: str) -> MessageRecord:
        record = await self._store.find(Direction.INBOUND, message_id)
        if record is None or record.partner_id not in self.pull_partners():
            raise NotPullable(f"no received message with MessageId {message_id!r} awaits REST pull")
        if record.state not in (State.ACCEPTED, State.DELIVERED):
            raise NotPullable(f"message {message_id!r} is {record.state.value}, not deliverable")
        return record

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
        return Acked(moved, moved=True)
