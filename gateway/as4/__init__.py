"""The AS4 protocol core (ebMS 3.0, AS4, eDelivery AS4 1.15), sans-IO.

Bytes and values in, bytes and events out: this package never touches sockets, the database, the clock or
the filesystem; the caller passes the time, the message ids and the key material.
"""

from gateway.as4._ns import DEFAULT_MPC, ROLE_INITIATOR, ROLE_RESPONDER, TEST_ACTION, TEST_SERVICE
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import ErrorReceived, Event, ReceiptReceived, UserMessageReceived
from gateway.as4.model import (
    ErrorDetail,
    PartInfo,
    Party,
    PartyId,
    Payload,
    Property,
    SignedReference,
    UserMessage,
)
from gateway.as4.msh import build_user_message, parse_incoming
from gateway.as4.policy import KeyPair, SecurityPolicy
from gateway.as4.signals import Outgoing, build_error_signal, build_receipt, parse_response

__all__ = [
    "DEFAULT_MPC",
    "ROLE_INITIATOR",
    "ROLE_RESPONDER",
    "TEST_ACTION",
    "TEST_SERVICE",
    "EbmsCode",
    "EbmsError",
    "ErrorDetail",
    "ErrorReceived",
    "Event",
    "KeyPair",
    "Outgoing",
    "PartInfo",
    "Party",
    "PartyId",
    "Payload",
    "Property",
    "ReceiptReceived",
    "SecurityPolicy",
    "SignedReference",
    "UserMessage",
    "UserMessageReceived",
    "build_error_signal",
    "build_receipt",
    "build_user_message",
    "parse_incoming",
    "parse_response",
]
