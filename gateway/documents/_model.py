"""A validated permit document, as the rest of the gateway sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from gateway.documents._findings import Finding
from gateway.documents.types import DocumentType


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentReference:
    """Identity of another permit document (on an ExportAuthorization: its ImportAuthorization)."""

    number: str
    issue_date: date
    issuing_country: str
    issuing_authority: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitLine:
    line_number: int
    substance_id: str
    inn: str | None
    base_quantity_grams: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitDocument:
    """A permit document that passed its schema and every error-severity rule; ``findings`` are warnings."""

    document_type: DocumentType
    number: str
    issue_date: date
    issuing_country: str
    issuing_authority: str
    importing_country: str
    exporting_country: str
    valid_from: date
    valid_until: date
    import_authorization_ref: DocumentReference | None
    lines: tuple[PermitLine, ...]
    findings: tuple[Finding, ...]
