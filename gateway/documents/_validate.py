"""``validate_document``: bytes in, a ``PermitDocument`` or ``PermitDocumentRejected`` out.

``validation_report`` does the same work and returns the report whatever the outcome, for faces that show
valid and invalid documents alike (the CLI).
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import NamedTuple

from lxml import etree

from gateway.documents._engine import Env
from gateway.documents._extract import extract, to_document
from gateway.documents._findings import Finding, PermitDocumentRejected
from gateway.documents._model import PermitDocument
from gateway.documents._report import ValidationReport
from gateway.documents._schema import schema_findings
from gateway.documents.context import DocumentContext
from gateway.documents.reference import ReferenceData
from gateway.documents.rules import check_document
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.xmlsafe import XmlInputError, parse_xml

_BY_ROOT = {t.value: t for t in DocumentType}
_KNOWN_TYPES = ", ".join(_BY_ROOT)
_NUMBER = f"{{{PERMITS_NAMESPACE}}}DocumentNumber"


def validate_document(
    data: bytes,
    *,
    as_of: date | None = None,
    context: DocumentContext | None = None,
    reference: ReferenceData | None = None,
) -> PermitDocument:
    """Parse, XSD-validate and rule-check a permit document.

    ``as_of`` is the receiving day; without it the date rules are not run, so pass the gateway clock's date
    for live traffic. ``context`` answers the cross-document rules (what the gateway has sent and received);
    without it they are not run, and a ``CONTEXT`` note on the document says so. ``reference`` defaults to
    the shipped tables. Raises ``PermitDocumentRejected`` listing every finding when any is an error;
    warnings and notes come back on the document.
    """
    report = validation_report(data, as_of=as_of, context=context, reference=reference)
    if report.document is None:
        raise PermitDocumentRejected(report.findings, report=report)
    return report.document


def validation_report(
    data: bytes,
    *,
    as_of: date | None = None,
    context: DocumentContext | None = None,
    reference: ReferenceData | None = None,
    source: str | None = None,
) -> ValidationReport:
    """Validate as ``validate_document`` does, and return the report whether or not the document is valid."""
    tables = reference or ReferenceData.default()
    outcome = _validate(data, Env(as_of, context, tables))
    return ValidationReport(
        findings=outcome.findings,
        document=outcome.document,
        document_type=outcome.document_type,
        number=outcome.number,
        as_of=as_of,
        context_used=context is not None,
        reference_version=tables.version,
        source=source,
    )


class _Outcome(NamedTuple):
    findings: tuple[Finding, ...]
    document_type: DocumentType | None = None
    number: str | None = None
    document: PermitDocument | None = None


def _validate(data: bytes, env: Env) -> _Outcome:
    try:
        root = parse_xml(data, what="permit document")
    except XmlInputError as exc:
        return _Outcome((_xml_finding(exc),))
    qname = etree.QName(root)
    document_type = _BY_ROOT.get(qname.localname)
    if document_type is None or qname.namespace != PERMITS_NAMESPACE:
        return _Outcome((_root_finding(root),))
    schema = schema_findings(root, document_type)
    if schema:
        return _Outcome(schema, document_type, (root.findtext(_NUMBER) or "").strip() or None)
    draft = extract(root, document_type, hashlib.sha256(data).hexdigest())
    findings = check_document(draft, env)
    valid = not any(f.severity == "error" for f in findings)
    document = to_document(draft, findings) if valid else None
    return _Outcome(findings, document_type, draft.number.value, document)


def _xml_finding(exc: XmlInputError) -> Finding:
    hint = (
        "Fix the XML syntax at this position; the document must be well-formed XML."
        if exc.line is not None
        else "Send the document without a DOCTYPE (DTDs and entity declarations are refused) and within the "
        "size limit."
    )
    return Finding(rule="XML", severity="error", message=str(exc), line=exc.line, column=exc.column, hint=hint)


def _root_finding(root: etree._Element) -> Finding:
    qname = etree.QName(root)
    if qname.namespace == PERMITS_NAMESPACE:
        message = f"root element {qname.localname} is not a permit document type this gateway knows"
    else:
        message = (
            f"root element {qname.localname} is in namespace {qname.namespace or '(none)'}; permit documents "
            f"use {PERMITS_NAMESPACE}"
        )
    return Finding(
        rule="ROOT",
        severity="error",
        message=message,
        line=root.sourceline,
        path=f"/{qname.localname}",
        hint=f'Send one of {_KNOWN_TYPES}, with xmlns="{PERMITS_NAMESPACE}" on the root element.',
    )
