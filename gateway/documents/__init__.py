"""What a permit is: the permit document types, their schemas, reference data and business rules.

``validate_document(data, as_of=..., context=...)`` turns the bytes of a permit document into a
``PermitDocument``, or raises ``PermitDocumentRejected`` whose ``findings`` say what is wrong, where, under
which rule, and how to fix it. ``validation_report`` returns the same findings as a ``ValidationReport``
whatever the outcome. Cross-document rules ask a ``DocumentContext`` (``InMemoryContext`` here, the store in
production). Both functions also take a ``ParsedDocument`` from ``parse_document``, whose ``outline`` names
what those rules will look up, so that the store can load it before they run. Reference data
(``ReferenceData``) and the administrator's control tables (``ControlTables``) load from CSV files that can
be replaced without a release.
"""

from gateway.documents._csv import ReferenceDataError, TableInfo
from gateway.documents._findings import Finding, PermitDocumentRejected, Severity
from gateway.documents._model import DocumentKey, DocumentReference, Party, PermitDocument, PermitLine
from gateway.documents._report import ValidationReport
from gateway.documents._sender import sender_findings
from gateway.documents._validate import (
    DocumentOutline,
    ParsedDocument,
    cross_document_findings,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.documents.context import DocumentContext, DocumentStatus, InMemoryContext
from gateway.documents.control import ControlTables, Estimate, ImportRequirement, Prohibition
from gateway.documents.reference import ReferenceData, Substance, Unit, is_country, substance
from gateway.documents.rules import RULES, Rule
from gateway.documents.types import PERMITS_NAMESPACE, PERMITS_SERVICE, DocumentType

__all__ = [
    "PERMITS_NAMESPACE",
    "PERMITS_SERVICE",
    "RULES",
    "ControlTables",
    "DocumentContext",
    "DocumentKey",
    "DocumentOutline",
    "DocumentReference",
    "DocumentStatus",
    "DocumentType",
    "Estimate",
    "Finding",
    "ImportRequirement",
    "InMemoryContext",
    "ParsedDocument",
    "Party",
    "PermitDocument",
    "PermitDocumentRejected",
    "PermitLine",
    "Prohibition",
    "ReferenceData",
    "ReferenceDataError",
    "Rule",
    "Severity",
    "Substance",
    "TableInfo",
    "Unit",
    "ValidationReport",
    "cross_document_findings",
    "is_country",
    "parse_document",
    "sender_findings",
    "substance",
    "validate_document",
    "validation_report",
]
