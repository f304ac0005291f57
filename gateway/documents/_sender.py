"""Whether a received permit document may come from the partner that sent it, under the Action it came with."""

from __future__ import annotations

from gateway.documents._findings import Finding, path_prefix
from gateway.documents._model import PermitDocument
from gateway.documents.types import DocumentType


def sender_findings(
    document: PermitDocument, *, sender_country: str, action_type: DocumentType | None, own_country: str
) -> tuple[Finding, ...]:
    """Errors when the sending partner is not the issuing authority's country (only the issuer sends its
    document), when the AS4 Action names another document type, or when the document goes to another country."""
    found = (
        _issuer(document, sender_country),
        _action(document, action_type),
        _counterpart(document, own_country),
    )
    return tuple(finding for finding in found if finding is not None)


def _path(document: PermitDocument, *elements: str) -> str:
    prefix = path_prefix(document.document_type)
    return "/" + "/".join(f"{prefix}:{name}" for name in (document.document_type.value, *elements))


def _issuer(document: PermitDocument, sender_country: str) -> Finding | None:
    if document.issuing_country == sender_country:
        return None
    return Finding(
        rule="IN-001",
        severity="error",
        message=f"the document was issued by {document.issuing_country} (IssuingAuthority/CountryCode) but sent "
        f"by the partner of {sender_country}; only the issuing authority sends its document",
        path=_path(document, "IssuingAuthority", "CountryCode"),
        hint=f"Send only documents issued by {sender_country}; a document of {document.issuing_country} comes "
        f"from {document.issuing_country}'s competent authority.",
    )


def _action(document: PermitDocument, action_type: DocumentType | None) -> Finding | None:
    if document.document_type == action_type:
        return None
    action = action_type.value if action_type is not None else "none"
    return Finding(
        rule="IN-002",
        severity="error",
        message=f"the payload is a {document.document_type.value} but the AS4 Action is {action}",
        path=_path(document),
        hint=f"Send it under the Action {document.document_type.value}: the Action names the type of the "
        "document the message carries.",
    )


def _counterpart(document: PermitDocument, own_country: str) -> Finding | None:
    if document.counterpart_country == own_country:
        return None
    element = "ExportingCountry" if document.issuing_country == document.importing_country else "ImportingCountry"
    return Finding(
        rule="IN-003",
        severity="error",
        message=f"the document goes to {document.counterpart_country} ({element}) but was sent to this "
        f"gateway, the authority of {own_country}",
        path=_path(document, element),
        hint=f"Send the document to {document.counterpart_country}'s competent authority, or correct {element} "
        f"to {own_country} if the trade is with {own_country}.",
    )
