"""The message store: messages, their event log, evidence, and content-addressed payload files."""

from gateway.store.lifecycle import FINAL, TRANSITIONS, Direction, Event, IllegalTransition, State, transition
from gateway.store.migrate import upgrade
from gateway.store.payloads import PayloadStore
from gateway.store.store import EventRecord, Evidence, MessageRecord, MessageStore, NewMessage, create_engine

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "Direction",
    "Event",
    "EventRecord",
    "Evidence",
    "IllegalTransition",
    "MessageRecord",
    "MessageStore",
    "NewMessage",
    "PayloadStore",
    "State",
    "create_engine",
    "transition",
    "upgrade",
]
