"""The partner profile: one PMode agreement with one partner authority, as read from one YAML file.

Every default lives here, once, so a profile file states only what differs. Field names are the YAML keys.
Direction words are ours: ``documents.send`` is what we send to the partner, ``documents.receive`` what we
accept from it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.documents.types import DocumentType
from gateway.settings import PARTY_ID_TYPE_UNREGISTERED

EBMS_DEFAULT_INITIATOR_ROLE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator"
EBMS_DEFAULT_RESPONDER_ROLE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder"

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class SecuritySuite(StrEnum):
    """The eDelivery AS4 security profile used with a partner: ``edelivery-as4-<version>[-<variant>]``.

    A suite fixes the algorithms and therefore the key type the partner's certificates must carry. eDelivery
    AS4 2.0 suites (EdDSA/X25519 and the ECDSA alternative) become new members when ``gateway.as4`` supports
    them.
    """

    EDELIVERY_AS4_1_15 = "edelivery-as4-1.15"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roles(_Section):
    initiator: str = Field(
        default=EBMS_DEFAULT_INITIATOR_ROLE, min_length=1, description="eb:Role of the sending party"
    )
    responder: str = Field(
        default=EBMS_DEFAULT_RESPONDER_ROLE, min_length=1, description="eb:Role of the receiving party"
    )


class Security(_Section):
    suite: SecuritySuite = SecuritySuite.EDELIVERY_AS4_1_15
    signing_certificate: Path = Field(
        description="the partner's certificate that verifies its signatures (PEM or DER)"
    )
    encryption_certificate: Path | None = Field(
        default=None, description="the partner's certificate we encrypt for; default: signing_certificate"
    )

    @property
    def effective_encryption_certificate(self) -> Path:
        return self.encryption_certificate or self.signing_certificate


class Documents(_Section):
    send: tuple[DocumentType, ...] = Field(
        default=tuple(DocumentType), description="document types we send to the partner"
    )
    receive: tuple[DocumentType, ...] = Field(
        default=tuple(DocumentType), description="document types we accept from the partner"
    )


class ReceptionAwareness(_Section):
    retries: Annotated[int, Field(ge=0, description="resends of a message that got no receipt")] = 5
    retry_delays_seconds: tuple[_Positive, ...] = Field(
        default=(5.0, 30.0, 120.0, 600.0, 1800.0),
        description="wait before each resend; the last delay repeats when there are more retries",
    )
    receipt_timeout_seconds: _Positive = 60.0
    time_to_live_hours: _Positive = Field(default=72.0, description="give up on a message after this")

    @model_validator(mode="after")
    def _delays_for_retries(self) -> ReceptionAwareness:
        if self.retries > 0 and not self.retry_delays_seconds:
            raise ValueError("expected at least one retry delay when retries is above 0")
        return self

    def retry_delay(self, retry: int) -> float:
        """Seconds to wait before resend number ``retry`` (1-based)."""
        if not 1 <= retry <= self.retries:
            raise ValueError(f"retry must be between 1 and {self.retries}, got {retry}")
        return self.retry_delays_seconds[min(retry, len(self.retry_delays_seconds)) - 1]


class Contact(_Section):
    name: Annotated[str, Field(min_length=1)]
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="an e-mail address")]


class PartnerProfile(_Section):
    """The PMode agreed with one partner authority; ``security`` is the only section without defaults."""

    id: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
            description="a lowercase slug such as 'ch-swissmedic' (letters, digits, single hyphens)",
        ),
    ]
    authority_name: Annotated[str, Field(min_length=1)]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="an ISO 3166-1 alpha-2 country code")]
    party_id: Annotated[str, Field(min_length=1, description="the partner's ebMS PartyId")]
    party_id_type: Annotated[str, Field(min_length=1)] = PARTY_ID_TYPE_UNREGISTERED
    roles: Roles = Roles()
    endpoint: str = Field(description="the partner's AS4 endpoint URL")
    security: Security
    documents: Documents = Documents()
    compression: bool = Field(default=True, description="gzip payloads (AS4 compression feature)")
    reception_awareness: ReceptionAwareness = ReceptionAwareness()
    enabled: bool = True
    contacts: tuple[Contact, ...] = ()

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        expected = "expected an http:// or https:// URL with a host, such as https://as4.example.org/as4"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(expected) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError(expected)
        return value
