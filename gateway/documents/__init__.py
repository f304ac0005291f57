"""What a permit is: the permit document types, their schemas, reference data and business rules.

``validate_document(data, as_of=...)`` turns the bytes of an ImportAuthorization or ExportAuthorization
into a ``PermitDocument``, or raises ``PermitDocumentRejected`` whose ``findings`` say what is wrong, where,
under which rule, and how to fix it.
"""

from gateway.documents._findings import Finding, PermitDocumentRejected, Severity
from gateway.documents._model import DocumentReference, PermitDocument, PermitLine
from gateway.documents._validate import validate_document
from gateway.documents.reference import Substance, is_country, substance
from gateway.documents.rules import RULES, Rule
from gateway.documents.types import PERMITS_NAMESPACE, PERMITS_SERVICE, DocumentType

__all__ = [
    "PERMITS_NAMESPACE",
    "PERMITS_SERVICE",
    "RULES",
    "DocumentReference",
    "DocumentType",
    "Finding",
    "PermitDocument",
    "PermitDocumentRejected",
    "PermitLine",
    "Rule",
    "Severity",
    "Substance",
    "is_country",
    "substance",
    "validate_document",
]
