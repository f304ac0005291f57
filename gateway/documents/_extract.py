"""Read a schema-valid permit tree into a ``Draft``: typed values that remember their element.

Runs only after XSD validation, so required elements are present and lexically valid; the rules read the
draft, and findings point at the element each value came from. One reader serves every document type: what
a type lacks (validity on a cancellation, parties on an endorsement) is simply None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Generic, TypeVar

from lxml import etree

from gateway.documents._csv import digest
from gateway.documents._findings import Finding
from gateway.documents._model import DocumentKey, DocumentReference, Party, PermitDocument, PermitLine
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType

T = TypeVar("T")
_NS = f"{{{PERMITS_NAMESPACE}}}"
_REFERENCES = {
    "ImportAuthorizationReference": DocumentType.IMPORT_AUTHORIZATION,
    "ExportAuthorizationReference": DocumentType.EXPORT_AUTHORIZATION,
    "NotificationReference": DocumentType.PRE_EXPORT_NOTIFICATION,
}
_SUBJECTS = ("AmendedDocument", "CancelledDocument", "AcknowledgedDocument", "NotificationReference")
_EVENT_DATES = ("DispatchDate", "DateOfReceipt", "DateOfDespatch", "ExpectedDispatchDate", "EffectiveDate")
_ACTUAL = frozenset({DocumentType.EXPORT_EXECUTION, DocumentType.IMPORT_ENDORSEMENT})
_TAKES_EFFECT = frozenset({DocumentType.CANCELLATION, DocumentType.EXPORT_EXECUTION})
RE_EXPORT = "reExport"


# Drafts live for one validation and are never changed; they are not frozen because frozen dataclasses
# take twice as long to build, and a document builds some sixty of them.


@dataclass(slots=True)
class At(Generic[T]):
    value: T
    element: etree._Element


@dataclass(slots=True, kw_only=True)
class PartyDraft:
    element: etree._Element
    role: str
    name: str
    country: At[str]
    licence: str | None
    category: str

    def to_party(self) -> Party:
        return Party(name=self.name, country=self.country.value, licence=self.licence, category=self.category)


@dataclass(slots=True, kw_only=True)
class ReferenceDraft:
    element: etree._Element
    document_type: At[DocumentType]
    number: At[str]
    issue_date: At[date]
    country: At[str]
    authority: At[str]

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.document_type.value, self.country.value, self.number.value)

    def to_reference(self) -> DocumentReference:
        return DocumentReference(
            document_type=self.document_type.value,
            number=self.number.value,
            issue_date=self.issue_date.value,
            issuing_country=self.country.value,
            issuing_authority=self.authority.value,
        )


@dataclass(slots=True, kw_only=True)
class LineDraft:
    """One SubstanceLine. ``actual`` lines (executions, endorsements) report what happened, so zero is a
    valid quantity there; precursor lines have a name and CAS number but no base quantity."""

    element: etree._Element
    number: int
    substance_id: At[str]
    inn: At[str] | None
    name: At[str] | None
    cas: At[str] | None
    treaty: At[str] | None
    schedule: At[str] | None
    form: str | None
    salt: str | None
    preparation_name: str | None
    pharmaceutical_form: At[str] | None
    gross: At[Decimal]
    unit: str
    factor: At[Decimal] | None
    base_grams: At[Decimal] | None
    reference_line: At[int] | None
    actual: bool
    purpose: str | None = None


@dataclass(slots=True, kw_only=True)
class Draft:
    document_type: DocumentType
    root: etree._Element
    number: At[str]
    issue_date: At[date]
    issuing_country: At[str]
    issuing_authority: At[str]
    importing_country: At[str]
    exporting_country: At[str]
    importer: PartyDraft | None
    exporter: PartyDraft | None
    consignee: PartyDraft | None
    valid_from: At[date] | None
    valid_until: At[date] | None
    import_ref: ReferenceDraft | None
    export_ref: ReferenceDraft | None
    subject_ref: ReferenceDraft | None
    lines: tuple[LineDraft, ...]
    multiple_consignments: bool
    estimate_year: At[int] | None
    emergency: At[str] | None
    event_date: At[date] | None
    decision: At[str] | None
    reason: At[str] | None
    finding_severities: tuple[str, ...]
    discrepancies: tuple[str, ...]
    version: At[int] | None
    replacement: Draft | None
    content_sha256: str
    is_replacement: bool
    raw_sha256: str = ""
    exemption: At[str] | None = None
    """The DocumentNumber of an ExportAuthorization's ExemptionReference: the importing country's statement
    that the import needs no authorization, in place of an ImportAuthorizationReference."""
    exemption_date: At[date] | None = None
    """That letter's IssueDate."""

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.document_type, self.issuing_country.value, self.number.value)

    @property
    def year(self) -> int:
        """The estimate or assessment year the document counts against."""
        return self.estimate_year.value if self.estimate_year else self.issue_date.value.year

    def parties(self) -> tuple[PartyDraft, ...]:
        return tuple(p for p in (self.importer, self.exporter, self.consignee) if p is not None)

    def references(self) -> tuple[ReferenceDraft, ...]:
        return tuple(r for r in (self.import_ref, self.export_ref, self.subject_ref) if r is not None)


def extract(
    root: etree._Element,
    document_type: DocumentType,
    content_sha256: str,
    *,
    version: At[int] | None = None,
    raw_sha256: str = "",
) -> Draft:
    """The draft of a schema-valid document; ``version`` is given for an amendment's replacement."""
    doc = _children(root)
    get = doc.get
    authority = _children(doc[_T["IssuingAuthority"]])
    validity = _children(get(_T["Validity"]))
    emergency = _children(get(_T["EmergencyDelivery"]))
    return Draft(
        document_type=document_type,
        root=root,
        number=_token(doc[_T["DocumentNumber"]]),
        issue_date=_date(doc[_T["IssueDate"]]),
        issuing_country=_token(authority[_T["CountryCode"]]),
        issuing_authority=_token(authority[_T["AuthorityId"]]),
        importing_country=_token(doc[_T["ImportingCountry"]]),
        exporting_country=_token(doc[_T["ExportingCountry"]]),
        importer=_party(get(_T["Importer"])),
        exporter=_party(get(_T["Exporter"])),
        consignee=_party(get(_T["Consignee"])),
        valid_from=_maybe(_date, validity.get(_T["ValidFrom"])),
        valid_until=_maybe(_date, validity.get(_T["ValidUntil"])),
        import_ref=_reference(get(_T["ImportAuthorizationReference"])),
        export_ref=_reference(get(_T["ExportAuthorizationReference"])),
        subject_ref=_reference(_first(doc, _SUBJECTS)),
        lines=tuple(_line(el, document_type in _ACTUAL) for el in root.iterchildren(_T["SubstanceLine"])),
        multiple_consignments=_text(get(_T["MultipleConsignmentsAllowed"])) in ("true", "1"),
        estimate_year=_maybe(_integer, get(_T["EstimateYear"])),
        emergency=_maybe(_token, emergency.get(_T["Reason"])),
        event_date=_maybe(_date, _first(doc, _EVENT_DATES)),
        decision=_maybe(_token, get(_T["Decision"], get(_T["Status"]))),
        reason=_maybe(_token, get(_T["Reason"])),
        finding_severities=tuple(
            _text(_children(el).get(_T["Severity"])) for el in root.iterchildren(_T["Finding"])
        ),
        discrepancies=tuple(_text(_children(el).get(_T["Code"])) for el in root.iterchildren(_T["Discrepancy"])),
        version=version or _maybe(_integer, get(_T["Version"])),
        replacement=_replacement(get(_T["Replacement"]), get(_T["Version"])),
        content_sha256=content_sha256,
        is_replacement=version is not None,
        raw_sha256=raw_sha256,
        exemption=_maybe(_token, _children(get(_T["ExemptionReference"])).get(_T["DocumentNumber"])),
        exemption_date=_maybe(_date, _children(get(_T["ExemptionReference"])).get(_T["IssueDate"])),
    )


def to_document(draft: Draft, findings: tuple[Finding, ...]) -> PermitDocument:
    return PermitDocument(
        document_type=draft.document_type,
        number=draft.number.value,
        issue_date=draft.issue_date.value,
        issuing_country=draft.issuing_country.value,
        issuing_authority=draft.issuing_authority.value,
        importing_country=draft.importing_country.value,
        exporting_country=draft.exporting_country.value,
        valid_from=draft.valid_from.value if draft.valid_from else None,
        valid_until=draft.valid_until.value if draft.valid_until else None,
        import_authorization_ref=draft.import_ref.to_reference() if draft.import_ref else None,
        export_authorization_ref=draft.export_ref.to_reference() if draft.export_ref else None,
        subject_ref=draft.subject_ref.to_reference() if draft.subject_ref else None,
        importer=draft.importer.to_party() if draft.importer else None,
        exporter=draft.exporter.to_party() if draft.exporter else None,
        lines=tuple(_permit_line(line) for line in draft.lines),
        findings=findings,
        version=draft.version.value if draft.version else 1,
        multiple_consignments_allowed=draft.multiple_consignments,
        estimate_year=draft.estimate_year.value if draft.estimate_year else None,
        emergency_reason=draft.emergency.value if draft.emergency else None,
        effective_date=draft.event_date.value
        if draft.event_date and draft.document_type in _TAKES_EFFECT
        else None,
        replacement=to_document(draft.replacement, ()) if draft.replacement else None,
        content_sha256=draft.content_sha256,
        raw_sha256=draft.raw_sha256,
    )


def _permit_line(line: LineDraft) -> PermitLine:
    return PermitLine(
        line_number=line.number,
        substance_id=line.substance_id.value,
        inn=line.inn.value if line.inn else None,
        base_quantity_grams=line.base_grams.value if line.base_grams else None,
        gross_quantity=line.gross.value,
        unit_code=line.unit,
        reference_line_number=line.reference_line.value if line.reference_line else None,
        pharmaceutical_form=line.pharmaceutical_form.value if line.pharmaceutical_form else None,
        preparation_name=line.preparation_name,
        re_export=line.purpose == RE_EXPORT,
    )


def _replacement(holder: etree._Element | None, version: etree._Element | None) -> Draft | None:
    if holder is None or version is None:
        return None
    element = next(holder.iterchildren(etree.Element))
    document_type = DocumentType(etree.QName(element).localname)
    return extract(element, document_type, digest(etree.tostring(element)), version=_integer(version))


def _party(element: etree._Element | None) -> PartyDraft | None:
    if element is None:
        return None
    party = _children(element)
    return PartyDraft(
        element=element,
        role=etree.QName(element).localname,
        name=_text(party[_T["Name"]]),
        country=_token(_children(party[_T["Address"]])[_T["CountryCode"]]),
        licence=_text(party.get(_T["NationalLicenceNumber"])) or None,
        category=_text(party[_T["Category"]]),
    )


def _reference(element: etree._Element | None) -> ReferenceDraft | None:
    if element is None:
        return None
    ref = _children(element)
    authority = _children(ref[_T["IssuingAuthority"]])
    typed = ref.get(_T["DocumentType"])
    return ReferenceDraft(
        element=element,
        document_type=At(DocumentType(_token(typed).value), typed)
        if typed is not None
        else At(_REFERENCES[etree.QName(element).localname], element),
        number=_token(ref[_T["DocumentNumber"]]),
        issue_date=_date(ref[_T["IssueDate"]]),
        country=_token(authority[_T["CountryCode"]]),
        authority=_token(authority[_T["AuthorityId"]]),
    )


def _line(element: etree._Element, actual: bool) -> LineDraft:
    line = _children(element)
    get = line.get
    gross = _decimal(line[_T["GrossQuantity"]])
    reference = get(_T["ImportLineNumber"], get(_T["ExportLineNumber"]))
    return LineDraft(
        element=element,
        number=int(_text(line[_T["LineNumber"]])),
        substance_id=_token(line[_T["SubstanceId"]]),
        inn=_maybe(_token, get(_T["INN"])),
        name=_maybe(_token, get(_T["SubstanceName"])),
        cas=_maybe(_token, get(_T["CASNumber"])),
        treaty=_maybe(_token, get(_T["Treaty"])),
        schedule=_maybe(_token, get(_T["Schedule"])),
        form=_text(get(_T["Form"])) or None,
        salt=_text(get(_T["SaltOrBaseForm"])) or None,
        preparation_name=_text(get(_T["PreparationName"])) or None,
        pharmaceutical_form=_maybe(_token, get(_T["PharmaceuticalForm"])),
        gross=gross,
        unit=" ".join((gross.element.get("unitCode") or "").split()),
        factor=_maybe(_decimal, get(_T["BaseConversionFactor"])),
        base_grams=_maybe(_decimal, get(_T["BaseQuantityGrams"])),
        reference_line=_maybe(_integer, reference),
        actual=actual,
        purpose=_text(get(_T["Purpose"])) or None,
    )


# Reading values. A dict of the children by tag, built in one pass, then one lookup per field: a ``find``
# per field was the slowest step of validation.

_NAMES = (
    "Address AmendedDocument AuthorityId BaseConversionFactor BaseQuantityGrams CASNumber Category Code Discrepancy "
    "CountryCode Decision DocumentNumber DocumentType EmergencyDelivery EstimateYear ExemptionReference "
    "ExportAuthorizationReference "
    "ExportLineNumber ExportingCountry Exporter Finding Form GrossQuantity INN Importer ImportAuthorizationReference "
    "ImportLineNumber ImportingCountry IssueDate IssuingAuthority LineNumber MultipleConsignmentsAllowed Name "
    "NationalLicenceNumber PharmaceuticalForm PreparationName Purpose Reason Replacement SaltOrBaseForm Schedule Severity "
    "Status SubstanceId SubstanceLine SubstanceName Treaty Consignee Validity ValidFrom ValidUntil Version"
)
_T = {name: _NS + name for name in (*_NAMES.split(), *_SUBJECTS, *_EVENT_DATES)}
_NOTHING: dict[object, etree._Element] = {}


def _children(element: etree._Element | None) -> dict[object, etree._Element]:
    """Child elements by tag; comments and processing instructions come along, but no name finds them."""
    if element is None:
        return _NOTHING
    return {child.tag: child for child in element.iterchildren()}


def _first(children: dict[object, etree._Element], names: tuple[str, ...]) -> etree._Element | None:
    return next((children[_T[n]] for n in names if _T[n] in children), None)


def _maybe(read: Callable[[etree._Element], At[T]], element: etree._Element | None) -> At[T] | None:
    return None if element is None else read(element)


def _value(element: etree._Element) -> str:
    """The text the schema validated: ``.text`` alone stops at the first comment or processing instruction."""
    if len(element) == 0:
        return element.text or ""
    return "".join(element.itertext())


def _text(element: etree._Element | None) -> str:
    return "" if element is None else _value(element).strip()


def _token(element: etree._Element) -> At[str]:
    return At(" ".join(_value(element).split()), element)


def _date(element: etree._Element) -> At[date]:
    return At(date.fromisoformat(_value(element).strip()), element)


def _decimal(element: etree._Element) -> At[Decimal]:
    return At(Decimal(_value(element).strip()), element)


def _integer(element: etree._Element) -> At[int]:
    return At(int(_value(element).strip()), element)
