"""Read a schema-valid permit tree into a ``Draft``: typed values that remember their element.

Runs only after XSD validation, so required elements are present and lexically valid; the rules in
``rules.py`` read the draft, and findings point at the element each value came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Generic, TypeVar

from lxml import etree

from gateway.documents._findings import Finding
from gateway.documents._model import DocumentReference, PermitDocument, PermitLine
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.errors import GatewayError

T = TypeVar("T")
_NS = f"{{{PERMITS_NAMESPACE}}}"


@dataclass(frozen=True, slots=True)
class At(Generic[T]):
    value: T
    element: etree._Element


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyDraft:
    element: etree._Element
    role: str
    country: At[str]
    licence: str | None
    category: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceDraft:
    number: str
    issue_date: At[date]
    country: At[str]
    authority: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LineDraft:
    number: int
    substance_id: At[str]
    inn: At[str] | None
    treaty: At[str]
    schedule: At[str]
    gross: At[Decimal]
    unit: str
    factor: Decimal
    base_grams: At[Decimal]


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    document_type: DocumentType
    number: str
    issue_date: At[date]
    issuing_country: At[str]
    issuing_authority: str
    importing_country: At[str]
    exporting_country: At[str]
    importer: PartyDraft
    exporter: PartyDraft
    consignee: PartyDraft | None
    valid_from: At[date]
    valid_until: At[date]
    import_authorization_ref: ReferenceDraft | None
    lines: tuple[LineDraft, ...]

    def parties(self) -> tuple[PartyDraft, ...]:
        return (self.importer, self.exporter) + ((self.consignee,) if self.consignee else ())


def extract(root: etree._Element, document_type: DocumentType) -> Draft:
    doc = _Children(root)
    authority = _Children(doc.element("IssuingAuthority"))
    validity = _Children(doc.element("Validity"))
    ref = doc.optional("ImportAuthorizationReference")
    consignee = doc.optional("Consignee")
    return Draft(
        document_type=document_type,
        number=doc.text("DocumentNumber"),
        issue_date=doc.date("IssueDate"),
        issuing_country=authority.token("CountryCode"),
        issuing_authority=authority.text("AuthorityId"),
        importing_country=doc.token("ImportingCountry"),
        exporting_country=doc.token("ExportingCountry"),
        importer=_party(doc.element("Importer")),
        exporter=_party(doc.element("Exporter")),
        consignee=_party(consignee) if consignee is not None else None,
        valid_from=validity.date("ValidFrom"),
        valid_until=validity.date("ValidUntil"),
        import_authorization_ref=_reference(ref) if ref is not None else None,
        lines=tuple(_line(el) for el in root.iterchildren(_NS + "SubstanceLine")),
    )


def to_document(draft: Draft, findings: tuple[Finding, ...]) -> PermitDocument:
    ref = draft.import_authorization_ref
    return PermitDocument(
        document_type=draft.document_type,
        number=draft.number,
        issue_date=draft.issue_date.value,
        issuing_country=draft.issuing_country.value,
        issuing_authority=draft.issuing_authority,
        importing_country=draft.importing_country.value,
        exporting_country=draft.exporting_country.value,
        valid_from=draft.valid_from.value,
        valid_until=draft.valid_until.value,
        import_authorization_ref=DocumentReference(
            number=ref.number,
            issue_date=ref.issue_date.value,
            issuing_country=ref.country.value,
            issuing_authority=ref.authority,
        )
        if ref
        else None,
        lines=tuple(
            PermitLine(
                line_number=line.number,
                substance_id=line.substance_id.value,
                inn=line.inn.value if line.inn else None,
                base_quantity_grams=line.base_grams.value,
            )
            for line in draft.lines
        ),
        findings=findings,
    )


def _party(element: etree._Element) -> PartyDraft:
    party = _Children(element)
    return PartyDraft(
        element=element,
        role=etree.QName(element).localname,
        country=_Children(party.element("Address")).token("CountryCode"),
        licence=party.optional_text("NationalLicenceNumber"),
        category=party.text("Category"),
    )


def _reference(element: etree._Element) -> ReferenceDraft:
    ref = _Children(element)
    authority = _Children(ref.element("IssuingAuthority"))
    return ReferenceDraft(
        number=ref.text("DocumentNumber"),
        issue_date=ref.date("IssueDate"),
        country=authority.token("CountryCode"),
        authority=authority.text("AuthorityId"),
    )


def _line(element: etree._Element) -> LineDraft:
    line = _Children(element)
    inn = line.optional("INN")
    gross = line.decimal("GrossQuantity")
    return LineDraft(
        number=int(line.text("LineNumber")),
        substance_id=line.token("SubstanceId"),
        inn=At(_value(inn), inn) if inn is not None else None,
        treaty=line.token("Treaty"),
        schedule=line.token("Schedule"),
        gross=gross,
        unit=(gross.element.get("unitCode") or "").strip(),
        factor=line.decimal("BaseConversionFactor").value,
        base_grams=line.decimal("BaseQuantityGrams"),
    )


class _Children:
    """The child elements of one element by tag, read in one pass: a ``find`` per field was the slowest
    step of validation."""

    __slots__ = ("_by_tag", "_parent")

    def __init__(self, parent: etree._Element) -> None:
        self._parent = parent
        self._by_tag = {str(child.tag): child for child in parent.iterchildren(etree.Element)}

    def optional(self, name: str) -> etree._Element | None:
        return self._by_tag.get(_NS + name)

    def optional_text(self, name: str) -> str | None:
        element = self.optional(name)
        if element is None:
            return None
        return _value(element).strip() or None

    def element(self, name: str) -> etree._Element:
        element = self._by_tag.get(_NS + name)
        if element is None:
            raise GatewayError(f"schema and extractor disagree: {etree.QName(self._parent).text} has no {name}")
        return element

    def text(self, name: str) -> str:
        return _value(self.element(name)).strip()

    def token(self, name: str) -> At[str]:
        element = self.element(name)
        return At(" ".join(_value(element).split()), element)

    def date(self, name: str) -> At[date]:
        element = self.element(name)
        return At(date.fromisoformat(_value(element).strip()), element)

    def decimal(self, name: str) -> At[Decimal]:
        element = self.element(name)
        return At(Decimal(_value(element).strip()), element)


def _value(element: etree._Element) -> str:
    """The text the schema validated: ``.text`` alone stops at the first comment or processing instruction."""
    if len(element) == 0:
        return element.text or ""
    return "".join(element.itertext())
