"""The permit document types and how they travel in AS4 (Service/Action)."""

from __future__ import annotations

from enum import StrEnum

PERMITS_NAMESPACE = "urn:permit-gateway:cs-permits:1"
PERMITS_SERVICE = "urn:permit-gateway:services:controlled-substances-trade"


class DocumentType(StrEnum):
    """Root element name of each permit document; also its AS4 ``eb:Action``."""

    IMPORT_AUTHORIZATION = "ImportAuthorization"
    EXPORT_AUTHORIZATION = "ExportAuthorization"


def service_action(document_type: DocumentType) -> tuple[str, str]:
    """The ``eb:Service`` and ``eb:Action`` a document of this type travels under."""
    return PERMITS_SERVICE, document_type.value


def document_type_for(service: str, action: str) -> DocumentType | None:
    """The document type carried under ``service``/``action``, or None when it is not a permit exchange."""
    if service != PERMITS_SERVICE:
        return None
    try:
        return DocumentType(action)
    except ValueError:
        return None
