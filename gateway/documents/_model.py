"""A validated permit document, as the rest of the gateway sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from gateway.documents._findings import Finding
from gateway.documents.types import DocumentType


class DocumentKey(NamedTuple):
    """What makes a permit document unique: its type, the country that issued it and its number."""

    document_type: DocumentType
    issuing_country: str
    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentReference:
    """Identity of another permit document (on an ExportAuthorization: its ImportAuthorization)."""

    document_type: DocumentType
    number: str
    issue_date: date
    issuing_country: str
    issuing_authority: str

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.document_type, self.issuing_country, self.number)


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """An importer, exporter or consignee: the name and address the treaties require, and its licence."""

    name: str
    country: str
    licence: str | None
    category: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitLine:
    """One substance line. ``reference_line_number`` is the ImportAuthorization line an ExportAuthorization
    line draws on, or the ExportAuthorization line an execution or endorsement line reports on.
    ``preparation_name`` is None on lines without one (and on lines a store kept before it kept them);
    ``re_export`` is True on a line whose Purpose is reExport, which counts against no estimate."""

    line_number: int
    substance_id: str
    inn: str | None
    base_quantity_grams: Decimal | None
    gross_quantity: Decimal
    unit_code: str
    reference_line_number: int | None = None
    pharmaceutical_form: str | None = None
    preparation_name: str | None = None
    re_export: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitDocument:
    """A permit document that passed its schema and every error-severity rule.

    ``findings`` are its warnings and notes. Which optional fields are set depends on the type:
    ``valid_from``/``valid_until`` on authorizations, ``import_authorization_ref`` on export authorizations
    and endorsements, ``export_authorization_ref`` on executions and endorsements, ``subject_ref`` on
    amendments, cancellations, notification responses and acknowledgements (the document they are about),
    ``replacement`` on amendments (the new version of the amended document), ``effective_date`` on
    cancellations (their EffectiveDate) and executions (their DispatchDate: the day the export took effect).
    ``version`` is 1 for an original, the amendment's Version on a replacement (and on the Amendment, the
    version it creates).
    """

    document_type: DocumentType
    number: str
    issue_date: date
    issuing_country: str
    issuing_authority: str
    importing_country: str
    exporting_country: str
    valid_from: date | None
    valid_until: date | None
    import_authorization_ref: DocumentReference | None
    lines: tuple[PermitLine, ...]
    findings: tuple[Finding, ...]
    export_authorization_ref: DocumentReference | None = None
    subject_ref: DocumentReference | None = None
    importer: Party | None = None
    exporter: Party | None = None
    version: int = 1
    multiple_consignments_allowed: bool = False
    estimate_year: int | None = None
    emergency_reason: str | None = None
    effective_date: date | None = None
    replacement: PermitDocument | None = None
    content_sha256: str = ""
    """The SHA-256 of the document's canonical form (``canonical_sha256``): equal for the same permit
    re-encoded or with other line ends."""
    raw_sha256: str = ""
    """The SHA-256 of the bytes as they came, which is what the registry kept before it kept the canonical
    one: a record of then still matches the same bytes sent again."""

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.document_type, self.issuing_country, self.number)

    @property
    def counterpart_country(self) -> str:
        """The other country of the trade: where the document goes."""
        if self.issuing_country == self.importing_country:
            return self.exporting_country
        return self.importing_country
