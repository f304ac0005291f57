"""ebMS 3.0 message content as frozen values, named as in the ebMS header schema.

Values check their own invariants when built (``ValueError``): a ``UserMessage`` whose MessageId is not an
RFC 2822 ``msg-id`` cannot exist. The header parser checks the same rules first and answers EBMS:0009, so
a partner's mistake never surfaces as a ``ValueError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from gateway.as4._ns import DEFAULT_MPC, TEST_ACTION, TEST_SERVICE
from gateway.as4.mime import cid_of_url

# RFC 2822 section 3.6.4 msg-id without the angle brackets: dot-atom-text "@" (dot-atom-text / no-fold-literal).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM_TEXT = rf"{_ATEXT}(?:\.{_ATEXT})*"
_NO_FOLD_LITERAL = r"\[(?:[\x21-\x5a\x5e-\x7e]|\\[\x21-\x7e])*\]"
MSG_ID = re.compile(rf"{_DOT_ATOM_TEXT}@(?:{_DOT_ATOM_TEXT}|{_NO_FOLD_LITERAL})")
# RFC 2822 allows 998; Domibus refuses ids over 255 characters, and so does every database column holding one
MAX_MESSAGE_ID_LENGTH = 255
MAX_CONVERSATION_ID_LENGTH = 255
MAX_MIME_TYPE_LENGTH = 100  # RFC 6838: a type and a subtype of at most 127 characters each; 100 in practice
_CONTENT_ID = re.compile(r"[^\s<>\"\x00-\x1f\x7f]+")
_NO_CONTROL = re.compile(r"[^\x00-\x1f\x7f]*")

# Part properties the MSH itself writes; a producer does not set them as extra properties.
MIME_TYPE = "MimeType"
CHARACTER_SET = "CharacterSet"
COMPRESSION_TYPE = "CompressionType"
RESERVED_PART_PROPERTIES = frozenset({MIME_TYPE, CHARACTER_SET, COMPRESSION_TYPE})
ORIGINAL_SENDER = "originalSender"
FINAL_RECIPIENT = "finalRecipient"


def is_message_id(value: str) -> bool:
    """True for an RFC 2822 msg-id without angle brackets (``left@right``), as ebMS 3.0 5.2.2.1 requires."""
    return len(value) <= MAX_MESSAGE_ID_LENGTH and MSG_ID.fullmatch(value) is not None


def check_message_id(value: str, what: str = "MessageId") -> None:
    if len(value) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(
            f"{what} {value[:60]!r}... has {len(value)} characters; at most {MAX_MESSAGE_ID_LENGTH} are accepted "
            "(as by Domibus): use a shorter id"
        )
    if not is_message_id(value):
        raise ValueError(
            f"{what} {value!r} is not an RFC 2822 msg-id (left@right, no angle brackets, no spaces), "
            "as ebMS 3.0 section 5.2.2.1 requires"
        )


_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")


def message_id_for(party_id: str, unique: str) -> str:
    """A MessageId of ours, ``unique@<our PartyId>.permit-gateway``, with the PartyId made a dot-atom: eDelivery
    PartyIds such as ``0088:5798000000001`` hold characters a msg-id may not (the ':' here)."""
    labels = (_NOT_ATEXT.sub("-", label) for label in party_id.lower().split("."))
    domain = ".".join(label for label in labels if label)[:150].strip(".")
    return f"{unique}@{domain}.permit-gateway" if domain else f"{unique}@permit-gateway"


def _check_length(value: str, what: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{what} {value[:60]!r}... has {len(value)} characters; at most {limit} are accepted")


def _check_text(value: str, what: str, *, allow_empty: bool = False) -> None:
    if not allow_empty and not value.strip():
        raise ValueError(f"{what} must not be empty")
    if _NO_CONTROL.fullmatch(value.strip()) is None:
        raise ValueError(f"{what} {value!r} contains control characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyId:
    value: str
    type: str | None = None

    def __post_init__(self) -> None:
        if not self.value.strip():
            raise ValueError("PartyId value must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    party_ids: tuple[PartyId, ...]
    role: str

    def __post_init__(self) -> None:
        if not self.party_ids:
            raise ValueError("a Party needs at least one PartyId")
        if not self.role.strip():
            raise ValueError("a Party needs a Role")

    @property
    def primary(self) -> PartyId:
        return self.party_ids[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Property:
    """An ``eb:Property``; ``type`` is the eDelivery four-corner attribute (errata schema)."""

    name: str
    value: str
    type: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a Property needs a name")


@dataclass(frozen=True, slots=True, kw_only=True)
class PartSchema:
    """``eb:PartInfo/eb:Schema``: the schema a payload conforms to."""

    location: str
    version: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PartInfo:
    """One payload reference; ``href`` is ``cid:...`` for an attachment, None for the SOAP Body."""

    href: str | None
    properties: tuple[Property, ...] = ()
    schemas: tuple[PartSchema, ...] = ()
    description: str | None = None
    description_lang: str | None = None

    def get_property(self, name: str) -> str | None:
        return next((p.value for p in self.properties if p.name == name), None)

    @property
    def content_id(self) -> str | None:
        """The Content-ID the href names: ``cid:`` URLs are URL-encoded (RFC 2392), so this is decoded."""
        return cid_of_url(self.href) if self.href is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage:
    message_id: str
    timestamp: datetime
    from_party: Party
    to_party: Party
    service: str
    action: str
    conversation_id: str
    ref_to_message_id: str | None = None
    service_type: str | None = None
    agreement_ref: str | None = None
    agreement_ref_type: str | None = None
    agreement_ref_pmode: str | None = None
    mpc: str = DEFAULT_MPC
    properties: tuple[Property, ...] = ()
    parts: tuple[PartInfo, ...] = ()

    def __post_init__(self) -> None:
        check_message_id(self.message_id)
        if self.ref_to_message_id is not None:
            check_message_id(self.ref_to_message_id, "RefToMessageId")
        if self.timestamp.tzinfo is None:
            raise ValueError("Timestamp must carry a time zone (ebMS timestamps are UTC)")
        for value, what in ((self.service, "Service"), (self.action, "Action"), (self.mpc, "mpc")):
            _check_text(value, what)
        _check_text(self.conversation_id, "ConversationId", allow_empty=True)
        _check_length(self.conversation_id, "ConversationId", MAX_CONVERSATION_ID_LENGTH)
        if self.agreement_ref is None and (self.agreement_ref_type or self.agreement_ref_pmode):
            raise ValueError("AgreementRef type or pmode given without an AgreementRef")

    def get_property(self, name: str) -> Property | None:
        return next((p for p in self.properties if p.name == name), None)

    @property
    def is_test(self) -> bool:
        """The ebMS test service and action: receipted, never delivered (eDelivery AS4 1.15 section 1.4.2.4)."""
        return self.service == TEST_SERVICE and self.action == TEST_ACTION

    @property
    def original_sender(self) -> Property | None:
        """The eDelivery four-corner ``originalSender`` message property (C1), if any."""
        return self.get_property(ORIGINAL_SENDER)

    @property
    def final_recipient(self) -> Property | None:
        """The eDelivery four-corner ``finalRecipient`` message property (C4), if any."""
        return self.get_property(FINAL_RECIPIENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequest:
    """An ``eb:PullRequest`` signal: the sender asks for the next user message on ``mpc``."""

    message_id: str
    timestamp: datetime
    mpc: str = DEFAULT_MPC
    ref_to_message_id: str | None = None

    def __post_init__(self) -> None:
        check_message_id(self.message_id)
        if self.ref_to_message_id is not None:
            check_message_id(self.ref_to_message_id, "RefToMessageId")
        _check_text(self.mpc, "mpc")


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A business document as the producer gave it (uncompressed), and how it travels.

    Small payloads carry their bytes in ``data``. A payload that a receiver spooled (``parse_incoming`` with
    a ``spool_threshold``) has ``data == b""`` and its content in ``file`` (positioned at 0); use
    ``read()`` or ``file`` for those. Senders always use ``data``.
    """

    content_id: str
    mime_type: str
    data: bytes = field(default=b"", repr=False)
    character_set: str | None = None
    properties: tuple[Property, ...] = ()
    schemas: tuple[PartSchema, ...] = ()
    description: str | None = None
    file: BinaryIO | None = field(default=None, repr=False, compare=False)
    size: int = -1

    def __post_init__(self) -> None:
        if _CONTENT_ID.fullmatch(self.content_id) is None:
            raise ValueError(
                f"Content-ID {self.content_id!r} must be non-empty without spaces, quotes, angle brackets or "
                "control characters"
            )
        if "/" not in self.mime_type or _NO_CONTROL.fullmatch(self.mime_type) is None:
            raise ValueError(f"MIME type {self.mime_type!r} is not a type/subtype without control characters")
        _check_length(self.mime_type, "MIME type", MAX_MIME_TYPE_LENGTH)
        if self.character_set is not None and _NO_CONTROL.fullmatch(self.character_set) is None:
            raise ValueError(f"CharacterSet {self.character_set!r} contains control characters")
        reserved = sorted({p.name for p in self.properties} & RESERVED_PART_PROPERTIES)
        if reserved:
            raise ValueError(
                f"part property {reserved[0]!r} is set by the MSH (mime_type, character_set, compression); "
                "it cannot be given as an extra property"
            )
        if self.file is not None and self.data:
            raise ValueError("a Payload holds its content either in data or in file, not both")
        if self.size < 0:
            object.__setattr__(self, "size", len(self.data) if self.file is None else -1)

    def read(self) -> bytes:
        """The whole content: ``data``, or everything in ``file``."""
        if self.file is None:
            return self.data
        self.file.seek(0)
        return self.file.read()


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedReference:
    """One ``ds:Reference`` of a signature: what was signed and its digest, plus its XML for receipts' NRI."""

    uri: str
    digest_method: str
    digest_value: str
    xml: bytes = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorDetail:
    """One ``eb:Error`` of an error signal."""

    code: str
    severity: str
    short_description: str | None
    category: str | None
    ref_to_message_in_error: str | None
    origin: str | None
    description: str | None
    detail: str | None
