"""The permit document types, which side of a trade issues each, and how they travel in AS4 (Service/Action)."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Literal

PERMITS_NAMESPACE = "urn:permit-gateway:cs-permits:1"
PERMITS_SERVICE = "urn:permit-gateway:services:controlled-substances-trade"

Side = Literal["importing", "exporting", "either"]


class DocumentType(StrEnum):
    """Root element name of each permit document; also its AS4 ``eb:Action``."""

    IMPORT_AUTHORIZATION = "ImportAuthorization"
    EXPORT_AUTHORIZATION = "ExportAuthorization"
    EXPORT_EXECUTION = "ExportExecution"
    IMPORT_ENDORSEMENT = "ImportEndorsement"
    AMENDMENT = "Amendment"
    CANCELLATION = "Cancellation"
    EXPORT_DECLARATION = "ExportDeclaration"
    PRE_EXPORT_NOTIFICATION = "PreExportNotification"
    PRE_EXPORT_NOTIFICATION_RESPONSE = "PreExportNotificationResponse"
    ACKNOWLEDGEMENT = "Acknowledgement"


# The prefix of the rule ids that guard each type; lower-cased, it is also the prefix of finding paths.
RULE_PREFIX: MappingProxyType[DocumentType, str] = MappingProxyType(
    {
        DocumentType.IMPORT_AUTHORIZATION: "IA",
        DocumentType.EXPORT_AUTHORIZATION: "EA",
        DocumentType.EXPORT_EXECUTION: "EX",
        DocumentType.IMPORT_ENDORSEMENT: "EN",
        DocumentType.AMENDMENT: "AM",
        DocumentType.CANCELLATION: "CA",
        DocumentType.EXPORT_DECLARATION: "ED",
        DocumentType.PRE_EXPORT_NOTIFICATION: "PN",
        DocumentType.PRE_EXPORT_NOTIFICATION_RESPONSE: "PR",
        DocumentType.ACKNOWLEDGEMENT: "AK",
    }
)

# Whose competent authority issues each type: amendments and cancellations come from the issuer of the
# document they change, acknowledgements from whoever received it.
ISSUED_BY: MappingProxyType[DocumentType, Side] = MappingProxyType(
    {
        DocumentType.IMPORT_AUTHORIZATION: "importing",
        DocumentType.EXPORT_AUTHORIZATION: "exporting",
        DocumentType.EXPORT_EXECUTION: "exporting",
        DocumentType.IMPORT_ENDORSEMENT: "importing",
        DocumentType.AMENDMENT: "either",
        DocumentType.CANCELLATION: "either",
        DocumentType.EXPORT_DECLARATION: "exporting",
        DocumentType.PRE_EXPORT_NOTIFICATION: "exporting",
        DocumentType.PRE_EXPORT_NOTIFICATION_RESPONSE: "importing",
        DocumentType.ACKNOWLEDGEMENT: "either",
    }
)


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
