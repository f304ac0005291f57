"""``validate_document``: bytes in, a ``PermitDocument`` or ``PermitDocumentRejected`` out.

``validation_report`` does the same work and returns the report whatever the outcome, for faces that show
valid and invalid documents alike (the CLI). ``parse_document`` does the first half alone (XML, schema,
reading the values) so that a caller whose context needs I/O can load it from the ``outline`` first and then
run the rules on the parsed document, which both functions also accept: the bytes are parsed once.
``cross_document_findings`` runs the cross-document rules alone on a parsed document, with a newer context.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from lxml import etree

from gateway.documents._engine import Env
from gateway.documents._extract import Draft, extract, to_document
from gateway.documents._findings import Finding, PermitDocumentRejected
from gateway.documents._model import DocumentKey, PermitDocument
from gateway.documents._report import ValidationReport
from gateway.documents._schema import schema_findings
from gateway.documents.context import DocumentContext
from gateway.documents.reference import ReferenceData
from gateway.documents.rules import check_cross, check_document
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.xmlsafe import DEFAULT_MAX_BYTES, TreeLimits, XmlInputError, parse_xml

_BY_ROOT = {t.value: t for t in DocumentType}
_KNOWN_TYPES = ", ".join(_BY_ROOT)
_NUMBER = f"{{{PERMITS_NAMESPACE}}}DocumentNumber"
# 9,999 lines of at most 16 elements (an Amendment's replacement holds them once) and the twenty-odd other
# elements of a document stay within these.
PERMIT_LIMITS = TreeLimits(max_elements=200_000, max_attributes=100, max_children=10_050)


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentOutline:
    """What a document says about itself and the documents it names, read before its rules run: enough for
    a store to load what the cross-document rules will ask (``year`` is the estimate year it counts in)."""

    key: DocumentKey
    content_sha256: str
    importing_country: str
    year: int
    substance_ids: tuple[str, ...]
    references: tuple[DocumentKey, ...]
    replacement: DocumentOutline | None = None
    raw_sha256: str = ""
    """The hash of the bytes as they came: what the registry kept before it hashed the canonical form."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedDocument:
    """A permit document parsed and checked against its schema, its rules not yet run. ``findings`` say why
    it could not be read when ``outline`` is None; ``draft`` holds the values read, for the rules."""

    findings: tuple[Finding, ...] = ()
    document_type: DocumentType | None = None
    number: str | None = None
    draft: Draft | None = field(default=None, repr=False, compare=False)

    @property
    def outline(self) -> DocumentOutline | None:
        return _outline(self.draft) if self.draft is not None else None


def parse_document(data: bytes) -> ParsedDocument:
    """Parse, XSD-validate and read a permit document, without running its rules (never raises)."""
    try:
        # processing instructions go as comments do: one splits a text node, which the schema validator joins
        # again at a cost quadratic in the parts, and a reader of the first part (.text) reads "0" of 0<?p?>05.
        # The envelope keeps them (its parser is another): AS4 signs the payload's bytes, not this tree.
        root = parse_xml(data, what="permit document", limits=PERMIT_LIMITS, remove_pis=True)
    except XmlInputError as exc:
        return ParsedDocument(findings=(_xml_finding(exc, data),))
    qname = etree.QName(root)
    document_type = _BY_ROOT.get(qname.localname)
    if document_type is None or qname.namespace != PERMITS_NAMESPACE:
        return ParsedDocument(findings=(_root_finding(root),))
    schema = schema_findings(root, document_type)
    if schema:
        number = (root.findtext(_NUMBER) or "").strip() or None
        return ParsedDocument(findings=schema, document_type=document_type, number=number)
    draft = extract(root, document_type, canonical_sha256(root), raw_sha256=hashlib.sha256(data).hexdigest())
    return ParsedDocument(document_type=document_type, number=draft.number.value, draft=draft)


def validate_document(
    data: bytes | ParsedDocument,
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
    data: bytes | ParsedDocument,
    *,
    as_of: date | None = None,
    context: DocumentContext | None = None,
    reference: ReferenceData | None = None,
    source: str | None = None,
) -> ValidationReport:
    """Validate as ``validate_document`` does, and return the report whether or not the document is valid."""
    tables = reference or ReferenceData.default()
    parsed = parse_document(data) if isinstance(data, bytes) else data
    outcome = _validate(parsed, Env(as_of, context, tables))
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


def cross_document_findings(
    parsed: ParsedDocument,
    *,
    as_of: date | None,
    context: DocumentContext,
    reference: ReferenceData | None = None,
) -> tuple[Finding, ...]:
    """The findings of the cross-document rules alone (those that need ``context``), for a document that
    passed its own rules and is checked again on a context that has changed since (the registry, as the
    document is recorded), as ``validation_report`` would list them; the parse findings if it was not read.

    It reads the tree already parsed and never the schema, so unlike parsing it may run off the documents
    thread: the registry runs it inside the transaction that holds its locks, and must not queue it there
    behind other documents' parsing."""
    draft = parsed.draft
    if draft is None:
        return parsed.findings
    return check_cross(draft, Env(as_of, context, reference or ReferenceData.default()))


class _Outcome(NamedTuple):
    findings: tuple[Finding, ...]
    document_type: DocumentType | None = None
    number: str | None = None
    document: PermitDocument | None = None


def _validate(parsed: ParsedDocument, env: Env) -> _Outcome:
    draft = parsed.draft
    if draft is None:
        return _Outcome(parsed.findings, parsed.document_type, parsed.number)
    findings = check_document(draft, env)
    valid = not any(f.severity == "error" for f in findings)
    document = to_document(draft, findings) if valid else None
    return _Outcome(findings, draft.document_type, draft.number.value, document)


def canonical_sha256(root: etree._Element) -> str:
    """The SHA-256 of the document's canonical form (C14N 1.0, libxml2's: lxml's C14N 2.0 is written in Python
    and takes seconds on a large document): the same permit re-encoded (UTF-16), with other line ends, attribute
    order or quoting hashes alike; one with other content, or other indentation, does not."""
    return hashlib.sha256(etree.tostring(root, method="c14n")).hexdigest()


def _outline(draft: Draft) -> DocumentOutline:
    return DocumentOutline(
        key=draft.key,
        content_sha256=draft.content_sha256,
        raw_sha256=draft.raw_sha256,
        importing_country=draft.importing_country.value,
        year=draft.year,
        substance_ids=tuple(dict.fromkeys(line.substance_id.value for line in draft.lines)),
        references=tuple(ref.key for ref in draft.references()),
        replacement=_outline(draft.replacement) if draft.replacement is not None else None,
    )


_EMPTY_HINT = (
    "Send the whole permit XML: an empty body or file is usually an upload or a copy that failed or was not "
    "finished."
)


def _xml_finding(exc: XmlInputError, data: bytes) -> Finding:
    """The finding of a document the XML parser refused; a line and column only where the parser has a place
    (libxml2 says line 0 where it has none)."""
    if not data.strip():  # where the white space ends is no place to fix
        spaces = f" ({len(data)} bytes of white space)" if data else ""
        return Finding(rule="XML", severity="error", message=f"permit document is empty{spaces}", hint=_EMPTY_HINT)
    placed = bool(exc.line)
    return Finding(
        rule="XML",
        severity="error",
        message=exc.reason,
        line=exc.line if placed else None,
        column=(exc.column or None) if placed else None,
        hint=_xml_hint(exc, len(data), placed),
    )


def _xml_hint(exc: XmlInputError, size: int, placed: bool) -> str:
    if exc.fix:
        return exc.fix
    if size > DEFAULT_MAX_BYTES:
        return (
            f"Send a permit document of at most {DEFAULT_MAX_BYTES // (1024 * 1024)} MiB ({DEFAULT_MAX_BYTES} "
            "bytes); scans and other supporting documents go as attachments, not inside the XML."
        )
    if "DOCTYPE" in exc.reason:
        return "Send the document without a DOCTYPE: DTDs and entity declarations are refused."
    return f"Fix the XML syntax{' at this position' if placed else ''}; the document must be well-formed XML."


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
