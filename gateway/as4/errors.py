"""ebMS error codes (ebMS 3.0 section 6.7, AS4 section 3.6) and the one error the AS4 core raises for bad input."""

from __future__ import annotations

from enum import Enum

from gateway.errors import GatewayError


class EbmsCode(Enum):
    """Each member carries (code, short description, severity, category)."""

    VALUE_NOT_RECOGNIZED = ("EBMS:0001", "ValueNotRecognized", "failure", "Content")
    FEATURE_NOT_SUPPORTED = ("EBMS:0002", "FeatureNotSupported", "warning", "Content")
    VALUE_INCONSISTENT = ("EBMS:0003", "ValueInconsistent", "failure", "Content")
    OTHER = ("EBMS:0004", "Other", "failure", "Content")
    CONNECTION_FAILURE = ("EBMS:0005", "ConnectionFailure", "failure", "Communication")
    EMPTY_MPC = ("EBMS:0006", "EmptyMessagePartitionChannel", "warning", "Communication")
    MIME_INCONSISTENCY = ("EBMS:0007", "MimeInconsistency", "failure", "Unpackaging")
    FEATURE_NOT_SUPPORTED_UNPACKAGING = ("EBMS:0008", "FeatureNotSupported", "failure", "Unpackaging")
    INVALID_HEADER = ("EBMS:0009", "InvalidHeader", "failure", "Unpackaging")
    PROCESSING_MODE_MISMATCH = ("EBMS:0010", "ProcessingModeMismatch", "failure", "Processing")
    EXTERNAL_PAYLOAD_ERROR = ("EBMS:0011", "ExternalPayloadError", "failure", "Content")
    FAILED_AUTHENTICATION = ("EBMS:0101", "FailedAuthentication", "failure", "Processing")
    FAILED_DECRYPTION = ("EBMS:0102", "FailedDecryption", "failure", "Processing")
    POLICY_NONCOMPLIANCE = ("EBMS:0103", "PolicyNoncompliance", "failure", "Processing")
    DYSFUNCTIONAL_RELIABILITY = ("EBMS:0201", "DysfunctionalReliability", "failure", "Processing")
    DELIVERY_FAILURE = ("EBMS:0202", "DeliveryFailure", "failure", "Communication")
    MISSING_RECEIPT = ("EBMS:0301", "MissingReceipt", "failure", "Communication")
    INVALID_RECEIPT = ("EBMS:0302", "InvalidReceipt", "failure", "Communication")
    DECOMPRESSION_FAILURE = ("EBMS:0303", "DecompressionFailure", "failure", "Communication")

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

    @classmethod
    def from_code(cls, code: str) -> EbmsCode | None:
        for member in cls:
            if member.code == code:
                return member
        return None


class EbmsError(GatewayError):
    """Bad input from a partner, with the ebMS code to answer and a detail that names exactly what was wrong."""

    def __init__(self, code: EbmsCode, detail: str, *, ref_to_message_id: str | None = None) -> None:
        super().__init__(f"{code.code} {code.short_description}: {detail}")
        self.code = code
        self.detail = detail
        self.ref_to_message_id = ref_to_message_id

    def with_ref(self, message_id: str | None) -> EbmsError:
        """The same error, now pointing at the message it concerns (known only after the header parsed)."""
        if self.ref_to_message_id is not None or message_id is None:
            return self
        return EbmsError(self.code, self.detail, ref_to_message_id=message_id)
