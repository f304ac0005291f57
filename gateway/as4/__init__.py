"""The AS4 protocol core (ebMS 3.0, AS4, eDelivery AS4 1.15), sans-IO.

Bytes and values in, bytes and events out: this package never touches sockets, the database, the clock or
the filesystem; the caller passes the time, the message ids, the key material and (for large messages) a
spool factory.

Sending: ``build_user_message`` -> ``Outgoing`` (``build_user_message_streamed`` -> ``StreamedOutgoing`` for
payloads in files); answers: ``build_receipt``, ``build_error_signal``, ``build_pull_request``,
``build_empty_mpc``. Receiving: ``parse_incoming`` (user messages) or ``parse_request`` (user messages and
PullRequests) -> an event, or ``EbmsError``; ``parse_response`` checks the partner's synchronous answer.
One-Way/Pull: ``peek_signal`` routes a signal arriving as a request, ``parse_pull`` authorizes a PullRequest
by its signer, ``parse_pull_answer`` reads the answer to ours.

Large messages are received incrementally, without the core doing I/O::

    assembler = PackageAssembler(content_type, spool=temp_file_factory, spool_threshold=8 << 20)
    for chunk in request_body_chunks:
        assembler.feed(chunk)
    event = parse_request(content_type, assembler.close(), policy_for=..., keys=..., now=...,
                          spool=temp_file_factory, spool_threshold=8 << 20)

``MimeReader`` underneath is h11-style: ``feed(chunk) -> [PartStarted | PartData | PartEnded]``, ``close()``.
"""

from gateway.as4._ns import DEFAULT_MPC, ROLE_INITIATOR, ROLE_RESPONDER, TEST_ACTION, TEST_SERVICE, SoapVersion
from gateway.as4.algorithms import Suite
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import ErrorReceived, Event, PullRequestReceived, ReceiptReceived, UserMessageReceived
from gateway.as4.mime import (
    MimeReader,
    Package,
    PackageAssembler,
    PartData,
    PartEnded,
    PartStarted,
    in_memory_spool,
)
from gateway.as4.model import (
    ErrorDetail,
    PartInfo,
    PartSchema,
    Party,
    PartyId,
    Payload,
    Property,
    PullRequest,
    SignedReference,
    UserMessage,
    is_message_id,
    message_id_for,
)
from gateway.as4.msh import build_user_message, build_user_message_streamed, parse_incoming, parse_request
from gateway.as4.policy import KeyPair, SecurityPolicy
from gateway.as4.pull import (
    MAX_SIGNAL_BYTES,
    SignalPeek,
    build_empty_mpc,
    is_empty_mpc,
    parse_pull,
    parse_pull_answer,
    peek_signal,
)
from gateway.as4.signals import (
    Outgoing,
    StreamedOutgoing,
    build_error_signal,
    build_pull_request,
    build_receipt,
    parse_response,
)
from gateway.as4.wss import readable_certificate

__all__ = [
    "DEFAULT_MPC",
    "MAX_SIGNAL_BYTES",
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
    "MimeReader",
    "Outgoing",
    "Package",
    "PackageAssembler",
    "PartData",
    "PartEnded",
    "PartInfo",
    "PartSchema",
    "PartStarted",
    "Party",
    "PartyId",
    "Payload",
    "Property",
    "PullRequest",
    "PullRequestReceived",
    "ReceiptReceived",
    "SecurityPolicy",
    "SignalPeek",
    "SignedReference",
    "SoapVersion",
    "StreamedOutgoing",
    "Suite",
    "UserMessage",
    "UserMessageReceived",
    "build_empty_mpc",
    "build_error_signal",
    "build_pull_request",
    "build_receipt",
    "build_user_message",
    "build_user_message_streamed",
    "in_memory_spool",
    "is_empty_mpc",
    "is_message_id",
    "message_id_for",
    "parse_incoming",
    "parse_pull",
    "parse_pull_answer",
    "parse_request",
    "parse_response",
    "peek_signal",
    "readable_certificate",
]
