"""An operator's retry of a FAILED outbound message: the same MessageId and the same signed bytes go out again,
with a fresh round of attempts and a fresh time to live from the partner's current profile."""

from __future__ import annotations

from datetime import timedelta

import structlog

from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.profiles.trust import Partners
from gateway.store import Direction, Event, MessageRecord, MessageStore, State

log = structlog.get_logger("gateway.outbound")


class UnknownMessage(GatewayError):
    """No outbound message has this MessageId."""


class NotRetryable(GatewayError):
    """Only a FAILED message can be retried: the others are still on their way, or done."""


async def retry_failed(
    store: MessageStore,
    partners: Partners,
    clock: Clock,
    message_id: str,
    *,
    reason: str,
    event: Event = Event.OPERATOR_RETRY,
) -> MessageRecord:
    """FAILED -> RETRY_WAIT by ``event`` (an operator's retry, or the same document submitted again)."""
    record = await store.find(Direction.OUTBOUND, message_id)
    if record is None:
        raise UnknownMessage(f"no outbound message has MessageId {message_id!r}")
    if record.state is not State.FAILED:
        raise NotRetryable(f"message {message_id!r} is {record.state.value}; only a FAILED message can be retried")
    partner = partners.get(record.partner_id)
    now = clock.now()
    until = now + timedelta(hours=partner.profile.reception_awareness.time_to_live_hours)
    moved = await store.move(
        record.id,
        event,
        detail={"reason": reason, "failed_because": record.last_error, "time_to_live_until": until.isoformat()},
        attempts=0,
        next_attempt_at=now,
        expires_at=until,
        last_error=None,
        lease_owner=None,
    )
    log.info("FAILED message sent again", message_id=message_id, by=event.value, reason=reason)
    return moved
