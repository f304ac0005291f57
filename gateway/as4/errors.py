"""ebMS error codes (ebMS 3.0 section 6.7, AS4 section 3.6) and the one error the AS4 core raises for bad input."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from gateway.errors import GatewayError

Fault = Literal["Sender", "Receiver"]
"""Whose problem an error is, as the SOAP Fault Code says it: the sender's (do not resend unchanged) or ours."""


class EbmsCode(Enum):
    """Each member carries (code, short description, severity, category, description).

    The description is the meaning of the code in our own words (the ``eb:Description`` of an error signal);
    the ``EbmsError.detail`` says what exactly was wrong with one message (the ``eb:ErrorDetail``).
    """

    VALUE_NOT_RECOGNIZED = (
        "EBMS:0001",
        "ValueNotRecognized",
        "failure",
        "Content",
        "A header element or attribute holds a value this MSH does not recognize.",
    )
    FEATURE_NOT_SUPPORTED = (
        "EBMS:0002",
        "FeatureNotSupported",
        "warning",
        "Content",
        "The message asks for an optional feature this MSH does not support.",
    )
    VALUE_INCONSISTENT = (
        "EBMS:0003",
        "ValueInconsistent",
        "failure",
        "Content",
        "Header values are inconsistent with each other, with the message content or with the P-Mode.",
    )
    OTHER = ("EBMS:0004", "Other", "failure", "Content", "An error that no other ebMS code describes.")
    CONNECTION_FAILURE = (
        "EBMS:0005",
        "ConnectionFailure",
        "failure",
        "Communication",
        "The transport could not be established or failed temporarily.",
    )
    EMPTY_MPC = (
        "EBMS:0006",
        "EmptyMessagePartitionChannel",
        "warning",
        "Communication",
        "The pulled message partition channel holds no message.",
    )
    MIME_INCONSISTENCY = (
        "EBMS:0007",
        "MimeInconsistency",
        "failure",
        "Unpackaging",
        "The MIME packaging is broken or does not match the ebMS header.",
    )
    FEATURE_NOT_SUPPORTED_UNPACKAGING = (
        "EBMS:0008",
        "FeatureNotSupported",
        "failure",
        "Unpackaging",
        "The packaging uses a feature this MSH does not support.",
    )
    INVALID_HEADER = (
        "EBMS:0009",
        "InvalidHeader",
        "failure",
        "Unpackaging",
        "The SOAP envelope or ebMS header is not well-formed or does not validate.",
    )
    PROCESSING_MODE_MISMATCH = (
        "EBMS:0010",
        "ProcessingModeMismatch",
        "failure",
        "Processing",
        "The message does not match the P-Mode agreed with the sender.",
    )
    EXTERNAL_PAYLOAD_ERROR = (
        "EBMS:0011",
        "ExternalPayloadError",
        "failure",
        "Content",
        "A payload the header refers to cannot be resolved.",
    )
    FAILED_AUTHENTICATION = (
        "EBMS:0101",
        "FailedAuthentication",
        "failure",
        "Processing",
        "The signature or the signer's certificate did not verify.",
    )
    FAILED_DECRYPTION = (
        "EBMS:0102",
        "FailedDecryption",
        "failure",
        "Processing",
        "Encrypted content could not be decrypted.",
    )
    POLICY_NONCOMPLIANCE = (
        "EBMS:0103",
        "PolicyNoncompliance",
        "failure",
        "Processing",
        "The security of the message does not meet the P-Mode's security policy.",
    )
    DYSFUNCTIONAL_RELIABILITY = (
        "EBMS:0201",
        "DysfunctionalReliability",
        "failure",
        "Processing",
        "The reliability function failed.",
    )
    DELIVERY_FAILURE = (
        "EBMS:0202",
        "DeliveryFailure",
        "failure",
        "Communication",
        "The message could not be delivered to or processed for the consumer.",
    )
    MISSING_RECEIPT = (
        "EBMS:0301",
        "MissingReceipt",
        "failure",
        "Communication",
        "No receipt arrived for the message after all retries.",
    )
    INVALID_RECEIPT = (
        "EBMS:0302",
        "InvalidReceipt",
        "failure",
        "Communication",
        "A receipt arrived but is not valid for the message sent.",
    )
    DECOMPRESSION_FAILURE = (
        "EBMS:0303",
        "DecompressionFailure",
        "failure",
        "Communication",
        "A compressed payload could not be decompressed.",
    )

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def short_description(self) -> str:
        return self.value[1]

    @property
    def severity(self) -> str:
        return self.value[2]

    @property
    def category(self) -> str:
        return self.value[3]

    @property
    def description(self) -> str:
        return self.value[4]

    @property
    def origin(self) -> str:
        """``eb:Error/@origin``: "security" for the 01xx codes (WS-Security), "ebMS" for the others."""
        return "security" if self.code.startswith("EBMS:01") else "ebMS"

    def describe(self, detail: str) -> str:
        """``detail`` in the terms of this code: "EBMS:0301 MissingReceipt: ...". Also how a sending MSH reports
        to its own side what no signal carries (EBMS:0005 ConnectionFailure, EBMS:0301 MissingReceipt)."""
        return f"{self.code} {self.short_description}: {detail}"

    @classmethod
    def from_code(cls, code: str) -> EbmsCode | None:
        for member in cls:
            if member.code == code:
                return member
        return None


class EbmsError(GatewayError):
    """An error to answer with an ebMS error signal: the code, and a detail that names exactly what was wrong.

    ``fault`` says whose problem it is (the SOAP Fault Code and the HTTP status follow it): "Sender" for bad
    input, "Receiver" for a failure on our side that the same message may get past later (our key missing).
    None (the raise site does not say) leaves it to the code: ``signals.fault_of``.

    ``not_understood`` names (in Clark notation) header blocks addressed to us with mustUnderstand that we do not
    process: the SOAP Fault Code is then env:MustUnderstand (SOAP 1.2 Part 1 section 2.6).

    ``envelope_unreadable`` marks errors found before a SOAP envelope could be read (broken MIME, XML that is
    not well-formed, no SOAP Envelope): the answer is then a SOAP Fault carrying the ebMS error, since there
    is no ebMS header to answer.
    """

    def __init__(
        self,
        code: EbmsCode,
        detail: str,
        *,
        ref_to_message_id: str | None = None,
        envelope_unreadable: bool = False,
        fault: Fault | None = None,
        not_understood: tuple[str, ...] = (),
    ) -> None:
        super().__init__(code.describe(detail))
        self.code = code
        self.detail = detail
        self.ref_to_message_id = ref_to_message_id
        self.envelope_unreadable = envelope_unreadable
        self.fault = fault
        self.not_understood = not_understood

    def with_ref(self, message_id: str | None) -> EbmsError:
        """The same error, now pointing at the message it concerns (known only after the header parsed)."""
        if self.ref_to_message_id is not None or message_id is None:
            return self
        return self._copy(message_id, self.envelope_unreadable)

    def unreadable(self) -> EbmsError:
        """The same error, marked as found before any envelope could be read."""
        if self.envelope_unreadable:
            return self
        return self._copy(self.ref_to_message_id, True)

    def _copy(self, ref_to_message_id: str | None, envelope_unreadable: bool) -> EbmsError:
        return EbmsError(
            self.code,
            self.detail,
            ref_to_message_id=ref_to_message_id,
            envelope_unreadable=envelope_unreadable,
            fault=self.fault,
            not_understood=self.not_understood,
        )
