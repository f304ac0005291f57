"""What ``parse_incoming``, ``parse_request`` and ``parse_response`` return: small frozen events for ``match``.

An event that exists is valid: the core emits one only after the partner's security policy was enforced
(``PullRequestReceived`` and ``UserMessageReceived`` are signed by a trusted certificate unless the policy
explicitly does not require signatures, which ``signer_certificate_sha256 == ""`` then shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.as4._ns import SoapVersion
from gateway.as4.model import ErrorDetail, Payload, PullRequest, SignedReference, UserMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessageReceived:
    """A verified, decrypted, decompressed user message: only what the signature covered."""

    user_message: UserMessage
    payloads: tuple[Payload, ...]
    references: tuple[SignedReference, ...]
    signer_certificate_sha256: str
    soap_version: SoapVersion = SoapVersion.SOAP12

    @property
    def message_id(self) -> str:
        return self.user_message.message_id


@dataclass(frozen=True, slots=True, kw_only=True)
class PullRequestReceived:
    """A verified ``eb:PullRequest``: the partner asks for the next user message waiting on ``mpc``.

    Authorizing the pull (may this signer drain this MPC?) is the caller's job, with ``signer_certificate_sha256``.
    """

    mpc: str
    message_id: str
    timestamp: datetime
    references: tuple[SignedReference, ...]
    signer_certificate_sha256: str
    soap_version: SoapVersion = SoapVersion.SOAP12

    @property
    def pull_request(self) -> PullRequest:
        return PullRequest(message_id=self.message_id, timestamp=self.timestamp, mpc=self.mpc)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptReceived:
    """A signed receipt whose NRI matches, digest for digest, what we signed."""

    message_id: str
    ref_to_message_id: str
    timestamp: datetime
    evidence: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReceived:
    """An ebMS error signal (or a SOAP Fault carrying one) from the partner, in answer to one of our messages."""

    message_id: str
    ref_to_message_id: str | None
    errors: tuple[ErrorDetail, ...]
    signed: bool
    evidence: bytes = field(repr=False)
    fault: str | None = None
    """The Code of the SOAP Fault in its Body by its SOAP 1.2 name (SOAP 1.1's Server is Receiver), or None. It
    is under the signature of a signed signal, as the Body is."""

    @property
    def is_failure(self) -> bool:
        return any(e.severity == "failure" for e in self.errors)

    @property
    def receiver_fault(self) -> bool:
        """The SOAP Fault says the problem is on the partner's side (SOAP 1.2 Part 1 section 5.4.6): it may go
        away, so the same message may be sent again."""
        return self.fault == "Receiver"


Event = UserMessageReceived | PullRequestReceived | ReceiptReceived | ErrorReceived
