"""The message lifecycle: one table of legal moves. Anything not in it is an ``IllegalTransition``.

The store applies a move as ``UPDATE ... WHERE id = :id AND state = :expected``, so the database enforces
this table even with several gateway nodes on one database.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import StoreError


class Direction(StrEnum):
    OUTBOUND = "out"
    INBOUND = "in"


class State(StrEnum):
    # outbound
    SUBMITTED = "SUBMITTED"
    SENDING = "SENDING"
    RETRY_WAIT = "RETRY_WAIT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    FAILED = "FAILED"
    # inbound
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    DELIVERED = "DELIVERED"
    DUPLICATE = "DUPLICATE"  # receipted, not delivered: its permit document came before in another message


class Event(StrEnum):
    CLAIM = "claim"
    RECEIPT_OK = "receipt_ok"
    SEND_FAILED = "send_failed"
    FINAL_ERROR = "final_error"
    GIVE_UP = "give_up"
    LEASE_EXPIRED = "lease_expired"
    OPERATOR_RETRY = "operator_retry"
    RESUBMITTED = "resubmitted"
    ACCEPT = "accept"
    REJECT = "reject"
    DELIVER = "deliver"
    DUPLICATE_DOCUMENT = "duplicate_document"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.SUBMITTED, Event.CLAIM): State.SENDING,
    (State.RETRY_WAIT, Event.CLAIM): State.SENDING,
    (State.SENDING, Event.RECEIPT_OK): State.ACKNOWLEDGED,
    # a receipt that verifies proves delivery, also one that comes after the message's lease ran out, or after
    # another claim gave up on it: the partner's signed receipt is the evidence, and it must be kept
    (State.RETRY_WAIT, Event.RECEIPT_OK): State.ACKNOWLEDGED,
    (State.FAILED, Event.RECEIPT_OK): State.ACKNOWLEDGED,
    (State.SENDING, Event.SEND_FAILED): State.RETRY_WAIT,
    (State.SENDING, Event.FINAL_ERROR): State.FAILED,
    # a partner's signed refusal of a pulled message that came after its lease ran out still refuses it
    (State.RETRY_WAIT, Event.FINAL_ERROR): State.FAILED,
    (State.SENDING, Event.GIVE_UP): State.FAILED,
    (State.RETRY_WAIT, Event.GIVE_UP): State.FAILED,
    # a message waiting for a partner's PullRequest that never comes fails at its time to live unsent
    (State.SUBMITTED, Event.GIVE_UP): State.FAILED,
    (State.SENDING, Event.LEASE_EXPIRED): State.RETRY_WAIT,
    (State.FAILED, Event.OPERATOR_RETRY): State.RETRY_WAIT,
    # the national system submitted a FAILED message's document again: it goes again under its MessageId
    (State.FAILED, Event.RESUBMITTED): State.RETRY_WAIT,
    (State.RECEIVED, Event.ACCEPT): State.ACCEPTED,
    (State.RECEIVED, Event.REJECT): State.REJECTED,
    (State.ACCEPTED, Event.DELIVER): State.DELIVERED,
    # a partner resent a permit under a new MessageId: the national system has it (or will) from the first
    (State.RECEIVED, Event.DUPLICATE_DOCUMENT): State.DUPLICATE,
}

INITIAL = {Direction.OUTBOUND: State.SUBMITTED, Direction.INBOUND: State.RECEIVED}
_DIRECTION_NAMES = {"outbound": Direction.OUTBOUND, "inbound": Direction.INBOUND}


def direction_named(text: str) -> Direction:
    """``outbound`` or ``inbound``, as the REST API and the CLI name a direction; ValueError saying what is."""
    found = _DIRECTION_NAMES.get(text)
    if found is None:
        raise ValueError(f"must be outbound or inbound (or left out for both), not {text[:40]!r}")
    return found


def state_named(text: str) -> State:
    """A state by its name, in any case; ValueError listing the states."""
    try:
        return State(text.upper())
    except ValueError:
        states = ", ".join(s.value for s in State)
        raise ValueError(f"must be one of {states} (or left out for all), not {text[:40]!r}") from None


FINAL = frozenset({State.ACKNOWLEDGED, State.FAILED, State.REJECTED, State.DELIVERED, State.DUPLICATE})


class IllegalTransition(StoreError):
    def __init__(self, state: State, event: Event, message_id: str | None = None) -> None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        subject = f"message {message_id!r} " if message_id else ""
        super().__init__(
            f"{subject}cannot take event {event.value!r} in state {state.value}; "
            f"allowed there: {', '.join(allowed) or 'nothing (final state)'}"
        )
        self.state = state
        self.event = event


class StaleClaim(IllegalTransition):
    """The outcome of an attempt whose claim the message has left: its lease ran out while it was being sent,
    and it was taken back, claimed again or sent again by an operator. The outcome is not applied, so it never
    overwrites a newer one. Claims are numbered over the message's life (``claim_seq``), never reset, so an
    operator's retry, which starts the attempts again from 0, cannot make an old claim's number come round."""

    def __init__(
        self, state: State, event: Event, message_id: str, *, claimed: int, current: int, attempts: int
    ) -> None:
        StoreError.__init__(
            self,
            f"message {message_id!r} left the claim of attempt {claimed} while it was being sent (its lease ran "
            f"out, or it was sent again since): it is {state.value} at attempt {current}, and that attempt's "
            f"{event.value} is not applied. Attempts are counted here over the message's life, operator retries "
            f"included (it is at attempt {attempts} of its current round); the newer attempt's outcome stands, "
            "nothing needs doing",
        )
        self.state = state
        self.event = event


SENT_AGAIN = frozenset({Event.OPERATOR_RETRY, Event.RESUBMITTED})
"""The events that send a FAILED message again under its MessageId: refused once a message built anew
superseded it, which carries its document now."""


class Superseded(IllegalTransition):
    """A FAILED message superseded by one built anew is not sent again: the document would go out under two
    MessageIds."""

    def __init__(self, event: Event, message_id: str, successor: str) -> None:
        StoreError.__init__(
            self,
            f"message {message_id!r} was superseded by message {successor!r}, built anew from its document, so it "
            f"is not sent again ({event.value} refused: the document would go out under two MessageIds); retry "
            f"{successor!r} instead (its timeline says why it was built anew)",
        )
        self.state = State.FAILED
        self.event = event
        self.successor = successor


def transition(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def sources(event: Event) -> tuple[State, ...]:
    """The states from which ``event`` is legal (for conditional updates that accept any of them)."""
    return tuple(s for (s, e) in TRANSITIONS if e is event)
