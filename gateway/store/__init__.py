"""The message store: messages, their event log, evidence, and content-addressed payload files; and the permit
registry: the permit documents sent and received, their lifecycle and remaining quantities."""

from gateway.store.attachments import Attachment, NewAttachment, attachments_of
from gateway.store.lifecycle import (
    FINAL,
    TRANSITIONS,
    Direction,
    Event,
    IllegalTransition,
    StaleClaim,
    State,
    direction_named,
    state_named,
    transition,
)
from gateway.store.migrate import upgrade
from gateway.store.payloads import PayloadStore
from gateway.store.permits import (
    PermitContext,
    PermitDetail,
    PermitEvent,
    PermitLineRecord,
    PermitRecord,
    PermitRefused,
    PermitRegistry,
    PermitState,
)
from gateway.store.store import (
    EventRecord,
    Evidence,
    MessageRecord,
    MessageStore,
    NewMessage,
    PurgedBatch,
    create_engine,
    is_unavailable,
)
from gateway.store.unit import UnitOfWork, unit_of_work

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "Attachment",
    "Direction",
    "Event",
    "EventRecord",
    "Evidence",
    "IllegalTransition",
    "MessageRecord",
    "MessageStore",
    "NewAttachment",
    "NewMessage",
    "PayloadStore",
    "PermitContext",
    "PermitDetail",
    "PermitEvent",
    "PermitLineRecord",
    "PermitRecord",
    "PermitRefused",
    "PermitRegistry",
    "PermitState",
    "PurgedBatch",
    "StaleClaim",
    "State",
    "UnitOfWork",
    "attachments_of",
    "create_engine",
    "direction_named",
    "is_unavailable",
    "state_named",
    "transition",
    "unit_of_work",
    "upgrade",
]
