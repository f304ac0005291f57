"""What ``parse_incoming`` and ``parse_response`` return: small frozen events, matched with ``match``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.as4.model import ErrorDetail, Payload, SignedReference, UserMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessageReceived:
    """A verified, decrypted, decompressed user message: only what the signature covered."""

    user_message: UserMessage
    payloads: tuple[Payload, ...]
    references: tuple[SignedReference, ...]
    signer_certificate_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptReceived:
    """A signed receipt whose NRI matches, digest for digest, what we signed."""

    message_id: str
    ref_to_message_id: str
    timestamp: datetime
    evidence: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReceived:
    """An ebMS error signal from the partner, in answer to one of our messages."""

    message_id: str
    ref_to_message_id: str | None
    errors: tuple[ErrorDetail, ...]
    signed: bool
    evidence: bytes = field(repr=False)

    @property
    def is_failure(self) -> bool:
        return any(e.severity == "failure" for e in self.errors)


Event = UserMessageReceived | ReceiptReceived | ErrorReceived
