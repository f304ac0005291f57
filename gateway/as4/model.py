"""ebMS 3.0 message content as frozen values, named as in the ebMS header schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.as4._ns import DEFAULT_MPC


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

    @property
    def primary(self) -> PartyId:
        return self.party_ids[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Property:
    name: str
    value: str
    type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PartInfo:
    """One payload reference; ``href`` is ``cid:...`` for an attachment, None for the SOAP Body."""

    href: str | None
    properties: tuple[Property, ...] = ()

    def get_property(self, name: str) -> str | None:
        return next((p.value for p in self.properties if p.name == name), None)

    @property
    def content_id(self) -> str | None:
        return self.href[4:] if self.href and self.href.startswith("cid:") else None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A business document as the producer gave it (uncompressed), and how it travels."""

    content_id: str
    mime_type: str
    data: bytes = field(repr=False)
    character_set: str | None = None


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
