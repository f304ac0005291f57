"""``validate_document``: bytes in, a ``PermitDocument`` or ``PermitDocumentRejected`` out."""

from __future__ import annotations

from datetime import date

from lxml import etree

from gateway.documents._extract import extract, to_document
from gateway.documents._findings import Finding, PermitDocumentRejected
from gateway.documents._model import PermitDocument
from gateway.documents._schema import schema_findings
from gateway.documents.rules import check_document
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.xmlsafe import XmlInputError, parse_xml

_BY_ROOT = {t.value: t for t in DocumentType}
_KNOWN_TYPES = ", ".join(_BY_ROOT)


def validate_document(data: bytes, *, as_of: date | None = None) -> PermitDocument:
    """Parse, XSD-validate and rule-check a permit document.

    ``as_of`` is the receiving day; without it the date-dependent rules (X-014, X-015) are not run, so
    pass the gateway clock's date for live traffic. Raises ``PermitDocumentRejected`` listing every
    finding when any finding is an error; warnings come back on the document.
    """
    root = _parse(data)
    document_type = _document_type(root)
    _reject_if_errors(schema_findings(root, document_type))
    draft = extract(root, document_type)
    findings = check_document(draft, as_of)
    _reject_if_errors(findings)
    return to_document(draft, findings)


def _parse(data: bytes) -> etree._Element:
    try:
        return parse_xml(data, what="permit document")
    except XmlInputError as exc:
        hint = (
            "Fix the XML syntax at this position; the document must be well-formed XML."
            if exc.line is not None
            else "Send the document without a DOCTYPE (DTDs and entity declarations are refused) and "
            "within the size limit."
        )
        raise PermitDocumentRejected(
            [
                Finding(
                    rule="XML",
                    severity="error",
                    message=str(exc),
                    line=exc.line,
                    column=exc.column,
                    hint=hint,
                )
            ]
        ) from None


def _document_type(root: etree._Element) -> DocumentType:
    qname = etree.QName(root)
    known = _BY_ROOT.get(qname.localname)
    if qname.namespace == PERMITS_NAMESPACE and known:
        return known
    if qname.namespace == PERMITS_NAMESPACE:
        message = f"root element {qname.localname} is not a permit document type this gateway knows"
    else:
        message = (
            f"root element {qname.localname} is in namespace {qname.namespace or '(none)'}; permit documents "
            f"use {PERMITS_NAMESPACE}"
        )
    raise PermitDocumentRejected(
        [
            Finding(
                rule="ROOT",
                severity="error",
                message=message,
                line=root.sourceline,
                path=f"/{qname.localname}",
                hint=f'Send one of {_KNOWN_TYPES}, with xmlns="{PERMITS_NAMESPACE}" on the root element.',
            )
        ]
    )


def _reject_if_errors(findings: tuple[Finding, ...]) -> None:
    if any(f.severity == "error" for f in findings):
        raise PermitDocumentRejected(findings)
