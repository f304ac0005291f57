"""The partner profile: one PMode agreement with one partner authority, as read from one YAML file.

Every default lives here, once, so a profile file states only what differs. Field names are the YAML keys.
Direction words are ours: ``documents.send`` is what we send to the partner, ``documents.receive`` what we
accept from it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateway.as4 import DEFAULT_MPC
from gateway.documents.types import DocumentType
from gateway.errors import ProfileError
from gateway.settings import PARTY_ID_TYPE_UNREGISTERED

EBMS_DEFAULT_INITIATOR_ROLE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator"
EBMS_DEFAULT_RESPONDER_ROLE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder"

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


_BARE_DOT = re.compile(r"(?<!\\)\.(?![*+?{])")
"""A ``.`` neither escaped nor quantified (``.*``): in a subject, a dot meant literally."""

_ANY_SUBJECTS = (
    "",
    "CN=permit-gateway-probe",
    "CN=permit-gateway-probe,O=No Such Authority,C=ZZ",
    "C=ZZ,O=No Such Authority,CN=permit-gateway-probe",
)
"""Subjects no partner holds: a pattern matching one of them admits whatever its trust anchor issues."""


class FieldError(ValueError):
    """A cross-field error that belongs at one key: ``loc`` is that key, relative to the model that raised it,
    so the loader reports its line rather than the line of the model's first key."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class SecuritySuite(StrEnum):
    """The eDelivery AS4 security profile used with a partner: ``edelivery-as4-<version>[-<variant>]``.

    A suite fixes the algorithms and therefore the key type the partner's certificates must carry. The
    eDelivery AS4 2.0 suites are experimental (not yet exchanged with another implementation): Ed25519
    signatures with X25519 key agreement, and the ECDSA/ECDH-ES P-256 alternative. Their encryption
    certificate carries the X25519 (or P-256) key, so such a profile names ``encryption_certificate``.
    """

    EDELIVERY_AS4_1_15 = "edelivery-as4-1.15"
    EDELIVERY_AS4_2_0 = "edelivery-as4-2.0"
    EDELIVERY_AS4_2_0_ECC = "edelivery-as4-2.0-ecc"

    @property
    def experimental(self) -> bool:
        """Not yet exchanged with another implementation (eDelivery AS4 2.0)."""
        return self is not SecuritySuite.EDELIVERY_AS4_1_15


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roles(_Section):
    initiator: str = Field(
        default=EBMS_DEFAULT_INITIATOR_ROLE, min_length=1, description="eb:Role of the sending party"
    )
    responder: str = Field(
        default=EBMS_DEFAULT_RESPONDER_ROLE, min_length=1, description="eb:Role of the receiving party"
    )


class Agreement(_Section):
    """The eb:AgreementRef both sides put on their messages, when their agreement names one (a Domibus process's
    agreement, a phase4 or Holodeck B2B PMode's AgreementRef): we send it, and refuse a message without it."""

    value: str = Field(min_length=1, description="eb:AgreementRef, e.g. urn:fdc:incb.org:i2es:agreement")
    type: str | None = Field(
        default=None, min_length=1, description="its type attribute, when the agreement has one"
    )
    pmode: str | None = Field(
        default=None, min_length=1, description="the pmode attribute we send (the partner's PMode id); not matched"
    )


class Security(_Section):
    """Whom we trust for the partner's signatures, and the certificate we encrypt for.

    Signatures verify against the pinned certificates (``signing_certificate`` and ``signing_certificates``,
    both accepted, so a rollover lists the old and the new one side by side), or against any certificate
    issued by ``trust_anchor`` whose subject matches ``subject``.
    """

    suite: SecuritySuite = Field(
        default=SecuritySuite.EDELIVERY_AS4_1_15,
        description=(
            "the eDelivery AS4 security suite: edelivery-as4-1.15 (RSA, the default); edelivery-as4-2.0 (Ed25519 "
            "signatures, X25519 key agreement) and edelivery-as4-2.0-ecc (ECDSA/ECDH-ES P-256) are EXPERIMENTAL, "
            "not yet exchanged with another implementation, and need encryption_certificate"
        ),
    )
    signing_certificate: Path | None = Field(
        default=None, description="the partner's certificate that verifies its signatures (PEM or DER)"
    )
    signing_certificates: tuple[Path, ...] = Field(
        default=(),
        description="more pinned signing certificates, e.g. the old and the new one during a rollover",
    )
    trust_anchor: Path | None = Field(
        default=None, description="a CA certificate: trust signing certificates it issued whose subject matches"
    )
    subject: str | None = Field(
        default=None,
        description="a regular expression the whole RFC 4514 subject of a certificate from trust_anchor must match",
    )
    revocation_list: Path | None = Field(
        default=None,
        description=(
            "trust_anchor's certificate revocation list (PEM or DER), which the administrator replaces with the CA's "
            "current one before its nextUpdate: a certificate it lists is refused, and past its nextUpdate every "
            "certificate of that CA is (a stale list cannot tell)"
        ),
    )
    encryption_certificate: Path | None = Field(
        default=None,
        validate_default=True,
        description=(
            "the partner's certificate we encrypt for; default (edelivery-as4-1.15 only): the newest valid signing "
            "certificate. Required for the 2.0 suites: their agreement key (X25519 or ECDH P-256) is not the "
            "signing key"
        ),
    )

    @field_validator("encryption_certificate")
    @classmethod
    def _agreement_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        suite = info.data.get("suite")
        if value is None and isinstance(suite, SecuritySuite) and suite.experimental:
            raise ValueError(
                f"required for suite {suite.value}: name the partner's key agreement certificate "
                f"({'X25519' if suite is SecuritySuite.EDELIVERY_AS4_2_0 else 'EC P-256'}), which is separate "
                "from its signing certificate in eDelivery AS4 2.0"
            )
        return value

    @field_validator("subject")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expected a regular expression ({exc})") from None
            _refuse_any_subject(value)
        return value

    @model_validator(mode="after")
    def _someone_to_trust(self) -> Security:
        if not self.pinned_certificates and self.trust_anchor is None:
            raise ValueError(
                "expected signing_certificate, signing_certificates, or trust_anchor with subject: "
                "without one, no signature of the partner can be verified"
            )
        if (self.trust_anchor is None) != (self.subject is None):
            raise ValueError("expected trust_anchor and subject together: a CA is trusted only for one subject")
        if self.revocation_list is not None and self.trust_anchor is None:
            raise ValueError("expected trust_anchor with revocation_list: the list is the anchor's, signed by it")
        if not self.pinned_certificates and self.encryption_certificate is None:
            raise ValueError(
                "expected encryption_certificate: with only a trust_anchor there is nothing to encrypt for"
            )
        return self

    def subject_warning(self) -> str | None:
        """A subject pattern with a bare ``.`` (any character) where a literal dot was surely meant."""
        if self.subject is None or not _BARE_DOT.search(self.subject):
            return None
        escaped = _BARE_DOT.sub(r"\\.", self.subject)
        return (
            f"security.subject {self.subject!r} is a regular expression: its '.' matches any character, so "
            f"subjects the partner does not hold match too; write subject: '{escaped}' for literal dots"
        )

    @property
    def pinned_certificates(self) -> tuple[Path, ...]:
        """Every pinned signing certificate, ``signing_certificate`` first, each once."""
        single = () if self.signing_certificate is None else (self.signing_certificate,)
        return tuple(dict.fromkeys(single + self.signing_certificates))

    @property
    def encryption_candidates(self) -> tuple[Path, ...]:
        """The certificates we may encrypt for: the explicit one, else every pinned signing certificate."""
        if self.encryption_certificate is not None:
            return (self.encryption_certificate,)
        return self.pinned_certificates


class Transport(StrEnum):
    """Who opens the connection: we push to the partner's endpoint, or the partner pulls from us."""

    PUSH = "push"
    PULL = "pull"


class Pull(_Section):
    """One-Way/Pull with this partner: the MPC it pulls our messages from, and whether we pull its messages.

    ``transport: pull`` makes the partner fetch what we send it with signed PullRequests to our endpoint, on
    ``mpc``; ``receive_by_pulling`` makes us fetch what it sends us from its endpoint, on the same ``mpc``, for
    a partner that cannot reach an endpoint of ours. Several partners may share one MPC: a PullRequest gets
    only the messages for the partner that signed it.
    """

    mpc: str = Field(
        default=DEFAULT_MPC,
        min_length=1,
        description="the message partition channel (a URI) of this partner's pulls; default: the ebMS default MPC",
    )
    receive_by_pulling: bool = Field(
        default=False,
        description="we send PullRequests to the partner's endpoint for the messages it has for us",
    )
    interval_seconds: float = Field(
        default=30.0,
        ge=1,
        allow_inf_nan=False,
        description="how often we pull (receive_by_pulling); we pull again at once while messages keep coming",
    )

    @field_validator("mpc")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", value):
            raise ValueError(f"expected an absolute URI such as {DEFAULT_MPC!r}, got {value!r}")
        return value


class Tls(_Section):
    """TLS towards the partner's endpoint (https:// only); defaults use the system CA store and no client cert."""

    ca_bundle: Path | None = Field(
        default=None, description="CA certificates (PEM) that verify the partner's TLS server certificate"
    )
    client_certificate: Path | None = Field(
        default=None, description="our TLS client certificate (PEM) for mutual TLS"
    )
    client_key: Path | None = Field(
        default=None,
        description="the private key of client_certificate (PEM, encrypted with the [keys] passphrase)",
    )

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("expected client_certificate and client_key together (mutual TLS needs both)")
        return self

    @property
    def configured(self) -> bool:
        return any(value is not None for value in (self.ca_bundle, self.client_certificate, self.client_key))


class DeliveryMethod(StrEnum):
    FOLDER = "folder"
    WEBHOOK = "webhook"
    SOAP = "soap"
    REST_PULL = "rest-pull"


class SoapContract(StrEnum):
    """The version of ``national-delivery.wsdl`` a national SOAP service was built on (the XSD's ``version``).

    1.2 added ``Metadata/DeliveryId`` in the same namespace; a service validating against 1.1 refuses it (a
    SOAP Fault), so the gateway leaves it out for a ``"1.1"`` service, which keys on FromParty + MessageId.
    1.3 added the optional ``Metadata/Findings``, which a service validating against 1.2 refuses the same way:
    it goes only to a ``"1.3"`` service. The default stays 1.2, so a profile without the setting gets what it
    got before."""

    V1_1 = "1.1"
    V1_2 = "1.2"
    V1_3 = "1.3"


class Delivery(_Section):
    """Where documents received from the partner go: a folder (default), a webhook or SOAP URL, or REST pull."""

    method: DeliveryMethod = DeliveryMethod.FOLDER
    folder: Path | None = Field(
        default=None, description="the inbox folder for this partner; default: [folders].inbox"
    )
    url: str | None = Field(default=None, description="the national system's URL (webhook and soap only)")
    soap_contract: SoapContract = Field(
        default=SoapContract.V1_2,
        description=(
            'the national-delivery.wsdl version the national SOAP service validates against (soap only): "1.3" '
            'also sends Metadata/Findings, the warnings the permit was accepted with; "1.2" sends '
            'Metadata/DeliveryId; "1.1" leaves it out, for a service built on the 1.1 WSDL, which then keys on '
            "FromParty + MessageId"
        ),
    )

    @model_validator(mode="after")
    def _target(self) -> Delivery:
        needs_url = self.method in (DeliveryMethod.WEBHOOK, DeliveryMethod.SOAP)
        if needs_url and self.url is None:
            raise ValueError(f"expected url: delivery method {self.method.value} posts to a URL")
        if not needs_url and self.url is not None:
            raise ValueError(f"expected no url: delivery method {self.method.value} does not post anywhere")
        if self.folder is not None and self.method is not DeliveryMethod.FOLDER:
            raise ValueError(f"expected no folder: delivery method is {self.method.value}, not folder")
        # the default is let through, so an effective profile (``profiles show --effective``) loads again
        if self.soap_contract is not SoapContract.V1_2 and self.method is not DeliveryMethod.SOAP:
            raise FieldError(
                ("soap_contract",),
                f"expected no soap_contract: delivery method is {self.method.value}, not soap",
            )
        return self

    @field_validator("soap_contract", mode="before")
    @classmethod
    def _version_as_written(cls, value: Any) -> Any:
        # unquoted in YAML, 1.1 is read as a number
        return str(value) if isinstance(value, float) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)


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
            max_length=200,  # it names the profile's file and history folder (history.MAX_PROFILE_ID_LENGTH)
            description="a lowercase slug such as 'ch-swissmedic' (letters, digits, single hyphens)",
        ),
    ]
    authority_name: Annotated[str, Field(min_length=1)]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="an ISO 3166-1 alpha-2 country code")]
    party_id: Annotated[str, Field(min_length=1, description="the partner's ebMS PartyId")]
    party_id_type: Annotated[str, Field(min_length=1)] = PARTY_ID_TYPE_UNREGISTERED
    roles: Roles = Roles()
    agreement: Agreement | None = Field(
        default=None,
        description="the eb:AgreementRef of the partners' agreement; none (the default): messages carry none",
    )
    endpoint: str | None = Field(
        default=None,
        description="the partner's AS4 endpoint URL; only a partner that pulls (transport: pull) and that we do "
        "not pull from may have none",
    )
    transport: Transport = Field(
        default=Transport.PUSH,
        description="push: we POST our messages to endpoint; pull: the partner pulls them from our endpoint",
    )
    pull: Pull = Pull()
    tls: Tls = Tls()
    security: Security
    documents: Documents = Documents()
    compression: bool = Field(default=True, description="gzip payloads (AS4 compression feature)")
    max_payload_bytes: Annotated[int, Field(gt=0, description="the largest payload we send or accept")] = (
        DEFAULT_MAX_PAYLOAD_BYTES
    )
    delivery: Delivery = Delivery()
    reception_awareness: ReceptionAwareness = ReceptionAwareness()
    enabled: bool = True
    contacts: tuple[Contact, ...] = ()

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @model_validator(mode="after")
    def _endpoint_when_used(self) -> PartnerProfile:
        if self.endpoint is None and self.transport is Transport.PUSH:
            raise FieldError(
                ("endpoint",), "expected endpoint: with transport: push (the default) we POST our messages to it"
            )
        if self.endpoint is None and self.pull.receive_by_pulling:
            raise FieldError(
                ("pull", "receive_by_pulling"),
                "expected endpoint: pull.receive_by_pulling sends our PullRequests to it",
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_https(self) -> PartnerProfile:
        if self.tls.configured and not (self.endpoint or "").lower().startswith("https://"):
            raise FieldError(
                ("tls",) if self.endpoint is None else ("endpoint",),
                f"expected an https:// endpoint: tls settings apply to https only, got {self.endpoint!r}",
            )
        return self

    @property
    def endpoint_url(self) -> str:
        """The endpoint we connect to; a partner without one is refused naming why it has none."""
        if self.endpoint is None:
            raise ProfileError(
                f"partner {self.id!r} has no endpoint: it pulls our messages (transport: pull); add endpoint to "
                "its profile to reach it"
            )
        return self.endpoint


def _refuse_any_subject(pattern: str) -> None:
    """A subject pattern must name the partner: one that matches the empty subject, or a subject no partner
    holds, lets the trust anchor vouch for any certificate it issues, another partner's too."""
    for probe in _ANY_SUBJECTS:
        if re.fullmatch(pattern, probe) is not None:
            matched = "the empty subject" if probe == "" else f"{probe!r}, a subject no partner holds"
            raise ValueError(
                f"expected the partner's own subject, but this pattern matches {matched}, so the trust anchor "
                "would vouch for any certificate it issues, another partner's too; write the partner's subject, "
                "e.g. 'C=BE,O=FAMHP,CN=BE-FAMHP' (or '.*CN=BE-FAMHP' for any subject ending in its CN)"
            )


def _check_http_url(value: str) -> str:
    expected = "expected an http:// or https:// URL with a host, such as https://as4.example.org/as4"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(expected)
    return value


SCHEMA_ID = "https://permit-gateway.example/schemas/partner-profile.json"


def agreement_ref(profile: PartnerProfile) -> tuple[str | None, str | None, str | None]:
    """The AgreementRef, its type and pmode attribute of a UserMessage to the partner, as its profile says."""
    agreement = profile.agreement
    return (None, None, None) if agreement is None else (agreement.value, agreement.type, agreement.pmode)


def profile_json_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file (``permit-gateway profiles schema``), for editors that check YAML."""
    schema = PartnerProfile.model_json_schema()
    schema["title"] = "Permit Gateway partner profile"
    schema["description"] = (
        "One YAML file per partner authority (its PMode). Only what differs from the defaults needs to be written."
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
