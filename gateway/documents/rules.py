"""The business rules a schema-valid permit document must pass: one table, one short check per rule.

Rule ids are stable (acknowledgements and partners quote them): ``IA-`` for ImportAuthorization only,
``EA-`` for ExportAuthorization only, ``X-`` for rules common to every permit document type. A check reads
a ``Draft`` and yields a ``Hit`` per violation; the hit's element gives the finding its line and path, and
its params fill the rule's message and hint. ``BR-nn`` in a basis refers to section 4.5 of the shared
PERMITS-NOTES.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from lxml import etree

from gateway.documents import reference
from gateway.documents._extract import At, Draft, LineDraft
from gateway.documents._findings import Finding, Severity, element_path, path_prefix
from gateway.documents.types import DocumentType

BASE_QUANTITY_TOLERANCE_GRAMS = Decimal("0.001")


class Hit(NamedTuple):
    element: etree._Element
    params: Mapping[str, object]


Check = Callable[[Draft, date | None], Iterator[Hit]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    severity: Severity
    basis: str
    message: str
    hint: str
    applies_to: frozenset[DocumentType]
    check: Check


def check_document(draft: Draft, as_of: date | None) -> tuple[Finding, ...]:
    """Every finding of every rule that applies to the draft's document type, in document order."""
    prefix = path_prefix(draft.document_type)
    findings = [
        _finding(rule, hit, prefix)
        for rule in RULES
        if draft.document_type in rule.applies_to
        for hit in rule.check(draft, as_of)
    ]
    return tuple(sorted(findings, key=lambda f: f.line or 0))


def _finding(rule: Rule, hit: Hit, prefix: str) -> Finding:
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        message=rule.message.format_map(hit.params),
        hint=rule.hint.format_map(hit.params),
        line=hit.element.sourceline,
        path=element_path(hit.element, prefix),
        basis=rule.basis,
    )


def _at(field: At[Any], **params: object) -> Hit:
    return Hit(field.element, params)


# Checks: one per rule, in the order of the table below.


def _importing_country_is_issuer(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if d.importing_country.value != d.issuing_country.value:
        yield _at(d.importing_country, importing=d.importing_country.value, issuing=d.issuing_country.value)


def _exporting_country_is_issuer(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if d.exporting_country.value != d.issuing_country.value:
        yield _at(d.exporting_country, exporting=d.exporting_country.value, issuing=d.issuing_country.value)


def _ia_issued_by_importing_country(d: Draft, as_of: date | None) -> Iterator[Hit]:
    ref = d.import_authorization_ref
    if ref and ref.country.value != d.importing_country.value:
        yield _at(ref.country, number=ref.number, country=ref.country.value, importing=d.importing_country.value)


def _ia_issued_before_ea(d: Draft, as_of: date | None) -> Iterator[Hit]:
    ref = d.import_authorization_ref
    if ref and ref.issue_date.value > d.issue_date.value:
        yield _at(ref.issue_date, number=ref.number, ia_date=ref.issue_date.value, ea_date=d.issue_date.value)


def _ea_valid_from_after_ia_issue(d: Draft, as_of: date | None) -> Iterator[Hit]:
    ref = d.import_authorization_ref
    if ref and d.valid_from.value < ref.issue_date.value:
        yield _at(d.valid_from, valid_from=d.valid_from.value, number=ref.number, ia_date=ref.issue_date.value)


def _countries_exist(d: Draft, as_of: date | None) -> Iterator[Hit]:
    fields = [d.issuing_country, d.importing_country, d.exporting_country, *(p.country for p in d.parties())]
    if d.import_authorization_ref:
        fields.append(d.import_authorization_ref.country)
    for field in fields:
        if not reference.is_country(field.value):
            yield _at(field, code=field.value)


def _trade_crosses_border(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if d.importing_country.value == d.exporting_country.value:
        yield _at(d.exporting_country, country=d.exporting_country.value)


def _validity_ordered(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if d.valid_from.value > d.valid_until.value:
        yield _at(d.valid_until, valid_from=d.valid_from.value, valid_until=d.valid_until.value)


def _issued_before_validity_ends(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if d.issue_date.value > d.valid_until.value:
        yield _at(d.issue_date, issue_date=d.issue_date.value, valid_until=d.valid_until.value)


def _parties_in_their_countries(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for party, expected in ((d.importer, d.importing_country), (d.exporter, d.exporting_country)):
        if party.country.value != expected.value:
            yield _at(party.country, role=party.role, country=party.country.value, expected=expected.value)


def _quantities_positive(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        for name, field in (("GrossQuantity", line.gross), ("BaseQuantityGrams", line.base_grams)):
            if field.value <= 0:
                yield _at(field, line=line.number, name=name, value=field.value)


def _base_quantity_matches(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        expected = _expected_base_grams(line)
        if expected is not None and abs(expected - line.base_grams.value) > BASE_QUANTITY_TOLERANCE_GRAMS:
            yield _at(
                line.base_grams,
                line=line.number,
                declared=line.base_grams.value,
                expected=expected.quantize(BASE_QUANTITY_TOLERANCE_GRAMS),
                gross=line.gross.value,
                unit=line.unit,
                factor=line.factor,
            )


def _base_quantity_not_recomputable(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        if line.unit in reference.UNITS and reference.grams_per_unit(line.unit) is None:
            yield _at(line.gross, line=line.number, unit=line.unit)


def _unit_known(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        if line.unit not in reference.UNITS:
            yield _at(line.gross, line=line.number, unit=line.unit, known=", ".join(reference.UNITS))


def _substance_known(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        found = reference.substance(line.substance_id.value)
        if found is None or found.id != line.substance_id.value:
            suggestion = f" ('{found.id}' for {found.name})" if found else ""
            yield _at(line.substance_id, line=line.number, id=line.substance_id.value, suggestion=suggestion)


def _substance_data_agrees(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        found = reference.substance(line.substance_id.value)
        if found is None or found.id != line.substance_id.value:
            continue
        if line.inn and line.inn.value.strip().casefold() not in found.names:
            yield _at(
                line.inn, line=line.number, name="INN", declared=line.inn.value, expected=found.inn, id=found.id
            )
        if line.treaty.value != found.treaty:
            yield _at(
                line.treaty,
                line=line.number,
                name="Treaty",
                declared=line.treaty.value,
                expected=found.treaty,
                id=found.id,
            )
        if line.schedule.value not in found.schedules:
            yield _at(
                line.schedule,
                line=line.number,
                name="Schedule",
                declared=line.schedule.value,
                expected=" or ".join(sorted(found.schedules)),
                id=found.id,
            )


def _substance_needs_authorization(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for line in d.lines:
        found = reference.substance(line.substance_id.value)
        if found and found.treaty == "1988":
            yield _at(line.substance_id, line=line.number, name=found.name, table=" or ".join(found.schedules))


def _licence_present(d: Draft, as_of: date | None) -> Iterator[Hit]:
    for party in (d.importer, d.exporter):
        if party.category == "enterprise" and party.licence is None:
            yield Hit(party.element, {"role": party.role})


def _not_issued_in_future(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if as_of and d.issue_date.value > as_of:
        yield _at(d.issue_date, issue_date=d.issue_date.value, as_of=as_of)


def _not_expired(d: Draft, as_of: date | None) -> Iterator[Hit]:
    if as_of and d.valid_until.value < as_of:
        yield _at(d.valid_until, valid_until=d.valid_until.value, as_of=as_of)


def _expected_base_grams(line: LineDraft) -> Decimal | None:
    grams = reference.grams_per_unit(line.unit)
    if grams is None or line.gross.value <= 0:
        return None
    return line.gross.value * grams * line.factor


_IA = frozenset({DocumentType.IMPORT_AUTHORIZATION})
_EA = frozenset({DocumentType.EXPORT_AUTHORIZATION})
_ALL = frozenset(DocumentType)
_LISTS = "the INCB Yellow, Green and Red Lists"

RULES: tuple[Rule, ...] = (
    Rule(
        id="IA-001",
        severity="error",
        applies_to=_IA,
        check=_importing_country_is_issuer,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c)",
        message="ImportingCountry {importing} differs from the issuing authority's country {issuing}; an "
        "ImportAuthorization is issued by the importing country's competent authority",
        hint="Set ImportingCountry to {issuing}, or have the authority of {importing} issue the document.",
    ),
    Rule(
        id="EA-001",
        severity="error",
        applies_to=_EA,
        check=_exporting_country_is_issuer,
        basis="1961 Art. 31(4)(a); 1971 Art. 12(1)(a)",
        message="ExportingCountry {exporting} differs from the issuing authority's country {issuing}; an "
        "ExportAuthorization is issued by the exporting country's competent authority",
        hint="Set ExportingCountry to {issuing}, or have the authority of {exporting} issue the document.",
    ),
    Rule(
        id="EA-002",
        severity="error",
        applies_to=_EA,
        check=_ia_issued_by_importing_country,
        basis="1961 Art. 31(4)(c), 31(5); 1971 Art. 12(1)(b)-(c); BR-06",
        message="the referenced ImportAuthorization {number} was issued in {country}, not in the importing "
        "country {importing}",
        hint="Reference the ImportAuthorization issued by the competent authority of {importing}, or correct "
        "ImportingCountry.",
    ),
    Rule(
        id="EA-003",
        severity="error",
        applies_to=_EA,
        check=_ia_issued_before_ea,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c)",
        message="the referenced ImportAuthorization {number} is dated {ia_date}, after this "
        "ExportAuthorization's issue date {ea_date}",
        hint="Correct the reference's IssueDate to the ImportAuthorization's real date; an "
        "ExportAuthorization can only be issued once the ImportAuthorization exists.",
    ),
    Rule(
        id="EA-004",
        severity="error",
        applies_to=_EA,
        check=_ea_valid_from_after_ia_issue,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); BR-09",
        message="ValidFrom {valid_from} is before the referenced ImportAuthorization {number} was issued "
        "({ia_date})",
        hint="Start the ExportAuthorization's validity on or after {ia_date}.",
    ),
    Rule(
        id="X-001",
        severity="error",
        applies_to=_ALL,
        check=_countries_exist,
        basis="ISO 3166-1; BR-18",
        message="{code} is not an ISO 3166-1 alpha-2 country code",
        hint="Use the two-letter code from gateway/documents/data/countries.csv (GB for the United Kingdom, "
        "CH for Switzerland).",
    ),
    Rule(
        id="X-002",
        severity="error",
        applies_to=_ALL,
        check=_trade_crosses_border,
        basis="1961 Art. 31(4)(a); 1971 Art. 12(1)(a); BR-18",
        message="ImportingCountry and ExportingCountry are both {country}; permits cover international trade",
        hint="Set ExportingCountry to the country the goods leave from; domestic transfers need no permit "
        "exchange.",
    ),
    Rule(
        id="X-003",
        severity="error",
        applies_to=_ALL,
        check=_validity_ordered,
        basis="1961 Art. 31(4)(b); 1971 Art. 12(1)(b)",
        message="ValidUntil {valid_until} is before ValidFrom {valid_from}",
        hint="Swap or correct the dates so that ValidFrom <= ValidUntil.",
    ),
    Rule(
        id="X-004",
        severity="error",
        applies_to=_ALL,
        check=_issued_before_validity_ends,
        basis="1961 Art. 31(4)(b); 1971 Art. 12(1)(b)",
        message="IssueDate {issue_date} is after ValidUntil {valid_until}: the document would be born expired",
        hint="Correct IssueDate, or extend ValidUntil to the period the import or export may take place in.",
    ),
    Rule(
        id="X-005",
        severity="error",
        applies_to=_ALL,
        check=_parties_in_their_countries,
        basis="1961 Art. 31(4)(b); BR-18",
        message="the {role}'s address is in {country}, but the document says the {role} trades from {expected}",
        hint="Correct the {role}'s Address/CountryCode, or the document's ImportingCountry/ExportingCountry.",
    ),
    Rule(
        id="X-006",
        severity="error",
        applies_to=_ALL,
        check=_quantities_positive,
        basis="1961 Art. 31(4)(b); 1971 Art. 12(1)(b)",
        message="line {line}: {name} is {value}; quantities must be greater than zero",
        hint="Enter the quantity authorized; remove the line if nothing of this substance is traded.",
    ),
    Rule(
        id="X-007",
        severity="error",
        applies_to=_ALL,
        check=_base_quantity_matches,
        basis="BR-13; pure base content as in the INCB Yellow and Green Lists",
        message="line {line}: BaseQuantityGrams is {declared}, but {gross} {unit} x {factor} = {expected} g",
        hint="Recompute BaseQuantityGrams as gross quantity in grams x BaseConversionFactor (tolerance "
        "0.001 g), or correct the gross quantity or factor.",
    ),
    Rule(
        id="X-008",
        severity="warning",
        applies_to=_ALL,
        check=_base_quantity_not_recomputable,
        basis="BR-13",
        message="line {line}: the gross quantity is in {unit}, not a mass unit, so BaseQuantityGrams cannot "
        "be recomputed",
        hint="State the gross quantity in KGM, GRM or MGM where possible; otherwise check BaseQuantityGrams "
        "against the strength by hand.",
    ),
    Rule(
        id="X-009",
        severity="error",
        applies_to=_ALL,
        check=_unit_known,
        basis="UN/ECE Recommendation 20",
        message="line {line}: unit code {unit} is not one the gateway accepts",
        hint="Use one of the UN/ECE Rec. 20 codes {known}.",
    ),
    Rule(
        id="X-010",
        severity="error",
        applies_to=_ALL,
        check=_substance_known,
        basis=f"BR-02; {_LISTS}",
        message="line {line}: SubstanceId '{id}' is not a substance id in the gateway's reference list",
        hint="Use the id of the substance in gateway/documents/data/substances.csv{suggestion}; ids are the "
        "names in lower case with hyphens.",
    ),
    Rule(
        id="X-011",
        severity="error",
        applies_to=_ALL,
        check=_substance_data_agrees,
        basis=f"1961 Art. 31(4)(b); 1971 Art. 12(1)(b); BR-02; {_LISTS}",
        message="line {line}: {name} is '{declared}', but the reference list has '{expected}' for {id}",
        hint="Write {name} as '{expected}', or check that SubstanceId names the intended substance.",
    ),
    Rule(
        id="X-012",
        severity="error",
        applies_to=_ALL,
        check=_substance_needs_authorization,
        basis="1988 Art. 12(10); BR-03",
        message="line {line}: {name} is a 1988 Convention precursor ({table}), not a narcotic drug or "
        "psychotropic substance",
        hint="Send precursors as a pre-export notification (PEN Online), not on an import or export "
        "authorization.",
    ),
    Rule(
        id="X-013",
        severity="warning",
        applies_to=_ALL,
        check=_licence_present,
        basis="1961 Art. 31(3)",
        message="the {role} is an enterprise but has no NationalLicenceNumber",
        hint="Add the {role}'s national licence or registration number; persons and enterprises in the "
        "trade must be licensed.",
    ),
    Rule(
        id="X-014",
        severity="error",
        applies_to=_ALL,
        check=_not_issued_in_future,
        basis="gateway policy; BR-09",
        message="IssueDate {issue_date} is after today ({as_of})",
        hint="Correct IssueDate; a competent authority cannot issue a document in the future (check the "
        "sending system's clock).",
    ),
    Rule(
        id="X-015",
        severity="warning",
        applies_to=_ALL,
        check=_not_expired,
        basis="1961 Art. 31(4)(b); 1971 Art. 12(1)(b)",
        message="the document expired on {valid_until} (today is {as_of})",
        hint="No import or export may take place under it any more; ask the issuer for a new document if "
        "the trade is still to happen.",
    ),
)
