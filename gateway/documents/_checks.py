"""Checks that need nothing but the document, the reference tables and the receiving day.

One function per rule; ``rules.py`` holds the table that gives each its id, severity, basis and texts.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

from lxml import etree

from gateway.documents._engine import Env, Hit, at
from gateway.documents._extract import RE_EXPORT, At, Draft, LineDraft, _token
from gateway.documents.reference import Substance
from gateway.documents.types import ISSUED_BY, PERMITS_NAMESPACE, DocumentType

BASE_QUANTITY_TOLERANCE_GRAMS = Decimal("0.001")
FACTOR_TOLERANCE = Decimal("0.00005")
# An unverified row is computed from molecular weights; INCB's figure may differ in the third decimal, not more.
UNVERIFIED_FACTOR_TOLERANCE = Decimal("0.005")
EXPORT_DECLARATION_DAYS = 90
_SCHEDULE_I_PARTIES = frozenset({"authority", "laboratory"})
# 1971 schedules under an assessment; every 1961 drug is under an estimate
_ASSESSED = frozenset({("1971", "II"), ("1971", "III"), ("1971", "IV")})
BASE_ITSELF = Decimal(1)  # a line that names no salt is the anhydrous base: its base content is 1 by definition
_NS = f"{{{PERMITS_NAMESPACE}}}"
_COMPOSED = {"preparation": "preparation's composition", "rawMaterial": "raw material's assay"}
_NAMED = tuple(
    f"{{{PERMITS_NAMESPACE}}}{name}"
    for name in ("Name", "AuthorityName", "SubstanceName", "PreparationName", "MixtureName", "INN", "City")
)


# Issuers and countries


def importing_country_is_issuer(d: Draft, env: Env) -> Iterator[Hit]:
    if d.importing_country.value != d.issuing_country.value:
        yield at(d.importing_country, importing=d.importing_country.value, issuing=d.issuing_country.value)


def exporting_country_is_issuer(d: Draft, env: Env) -> Iterator[Hit]:
    if d.exporting_country.value != d.issuing_country.value:
        yield at(d.exporting_country, exporting=d.exporting_country.value, issuing=d.issuing_country.value)


def issuer_on_its_side(d: Draft, env: Env) -> Iterator[Hit]:
    side = ISSUED_BY[d.document_type]
    issuing = d.issuing_country.value
    importing, exporting = d.importing_country.value, d.exporting_country.value
    expected = {"importing": (importing,), "exporting": (exporting,), "either": (importing, exporting)}[side]
    if issuing not in expected:
        who = "the importing or the exporting" if side == "either" else f"the {side}"
        yield at(d.issuing_country, issuing=issuing, type=d.document_type.value, who=who, expected=expected[0])


def countries_exist(d: Draft, env: Env) -> Iterator[Hit]:
    fields = [d.issuing_country, d.importing_country, d.exporting_country, *(p.country for p in d.parties())]
    fields += [ref.country for ref in d.references()]
    for field in fields:
        if not env.reference.is_country(field.value):
            yield at(field, code=field.value)


def trade_crosses_border(d: Draft, env: Env) -> Iterator[Hit]:
    if d.importing_country.value == d.exporting_country.value:
        yield at(d.exporting_country, country=d.exporting_country.value)


def parties_in_their_countries(d: Draft, env: Env) -> Iterator[Hit]:
    for party, expected in ((d.importer, d.importing_country), (d.exporter, d.exporting_country)):
        if party is not None and party.country.value != expected.value:
            yield at(party.country, role=party.role, country=party.country.value, expected=expected.value)


def licence_present(d: Draft, env: Env) -> Iterator[Hit]:
    for party in (d.importer, d.exporter):
        if party is not None and party.category == "enterprise" and party.licence is None:
            yield Hit(party.element, {"role": party.role})


def schedule_i_between_authorized_parties(d: Draft, env: Env) -> Iterator[Hit]:
    """1971 Art. 7(f): Schedule I trade only between competent authorities and the parties they specially
    authorize, which the Category laboratory stands for."""
    lines = [line for line in d.lines if _schedule_i(line)]
    if not lines:
        return
    for party in (d.importer, d.exporter):
        if party is not None and party.category not in _SCHEDULE_I_PARTIES:
            category = party.element.find(f"{{{PERMITS_NAMESPACE}}}Category")
            yield Hit(
                party.element if category is None else category,
                {
                    "role": party.role,
                    "category": party.category,
                    "lines": ", ".join(str(line.number) for line in lines),
                    "ids": ", ".join(sorted({line.substance_id.value for line in lines})),
                },
            )


# Dates


def validity_ordered(d: Draft, env: Env) -> Iterator[Hit]:
    if d.valid_from and d.valid_until and d.valid_from.value > d.valid_until.value:
        yield at(d.valid_until, valid_from=d.valid_from.value, valid_until=d.valid_until.value)


def issued_before_validity_ends(d: Draft, env: Env) -> Iterator[Hit]:
    if d.valid_until and d.issue_date.value > d.valid_until.value:
        yield at(d.issue_date, issue_date=d.issue_date.value, valid_until=d.valid_until.value)


def validity_within_national_limit(d: Draft, env: Env) -> Iterator[Hit]:
    limit = env.reference.validity_limit(d.issuing_country.value, d.document_type)
    if not (limit and d.valid_from and d.valid_until) or d.valid_from.value > d.valid_until.value:
        return
    latest = last_day_within(d.valid_from.value, limit.max_months)
    if d.valid_until.value > latest:
        yield at(
            d.valid_until,
            valid_until=d.valid_until.value,
            valid_from=d.valid_from.value,
            months=limit.max_months,
            latest=latest,
            country=limit.country,
            basis=limit.basis,
        )


def not_issued_in_future(d: Draft, env: Env) -> Iterator[Hit]:
    # as_of is the UTC date; the issuer's local date runs up to a day ahead of it (UTC+14 at the most)
    if env.as_of and d.issue_date.value > env.as_of + timedelta(days=1):
        yield at(
            d.issue_date, issue_date=d.issue_date.value, as_of=env.as_of, latest=env.as_of + timedelta(days=1)
        )


def not_expired(d: Draft, env: Env) -> Iterator[Hit]:
    born_expired = d.valid_until and d.issue_date.value > d.valid_until.value  # X-004 says it already
    if env.as_of and d.valid_until and d.valid_until.value < env.as_of and not born_expired:
        yield at(d.valid_until, valid_until=d.valid_until.value, as_of=env.as_of)


def event_not_after_issue(d: Draft, env: Env) -> Iterator[Hit]:
    if d.event_date and d.event_date.value > d.issue_date.value:
        yield at(
            d.event_date, name=_local(d.event_date.element), date=d.event_date.value, issue_date=d.issue_date.value
        )


def received_after_export_issue(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.export_ref
    if ref and d.event_date and d.event_date.value < ref.issue_date.value:
        yield at(d.event_date, date=d.event_date.value, number=ref.number.value, ea_date=ref.issue_date.value)


def estimate_year_near_issue(d: Draft, env: Env) -> Iterator[Hit]:
    issued = d.issue_date.value.year
    if d.estimate_year is not None and d.estimate_year.value not in (issued, issued + 1):
        yield at(d.estimate_year, year=d.estimate_year.value, first=issued, second=issued + 1)


def declared_within_90_days(d: Draft, env: Env) -> Iterator[Hit]:
    if d.event_date and (d.issue_date.value - d.event_date.value).days > EXPORT_DECLARATION_DAYS:
        days = (d.issue_date.value - d.event_date.value).days
        yield at(d.issue_date, issue_date=d.issue_date.value, despatch=d.event_date.value, days=days)


def notified_before_dispatch(d: Draft, env: Env) -> Iterator[Hit]:
    if d.event_date and d.event_date.value < d.issue_date.value:
        yield at(d.event_date, dispatch=d.event_date.value, issue_date=d.issue_date.value)


# Quantities and substances


def quantities_positive(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        for name, field in (("GrossQuantity", line.gross), ("BaseQuantityGrams", line.base_grams)):
            if field is None:
                continue
            if field.value < 0 or (field.value == 0 and not line.actual):
                least = "zero or more" if line.actual else "greater than zero"
                yield at(field, line=line.number, name=name, value=field.value, least=least)


def unit_known(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        if env.reference.unit(line.unit) is None:
            yield at(line.gross, line=line.number, unit=line.unit, known=", ".join(env.reference.units))


def base_quantity_matches(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        expected = _expected_base_grams(line, env)
        if expected is None or line.base_grams is None or line.factor is None:
            continue
        if abs(expected - line.base_grams.value) > BASE_QUANTITY_TOLERANCE_GRAMS:
            yield at(
                line.base_grams,
                line=line.number,
                declared=line.base_grams.value,
                expected=expected.quantize(BASE_QUANTITY_TOLERANCE_GRAMS),
                gross=line.gross.value,
                unit=line.unit,
                factor=line.factor.value,
            )


def base_quantity_not_recomputable(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        unit = env.reference.unit(line.unit)
        if line.base_grams is not None and unit is not None and unit.grams is None:
            yield at(line.gross, line=line.number, unit=line.unit, kind=unit.kind)


def factor_matches_reference(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        reference = _verified_factor(line, env)
        if reference is not None and line.factor and abs(reference - line.factor.value) > FACTOR_TOLERANCE:
            yield at(
                line.factor,
                line=line.number,
                declared=line.factor.value,
                expected=reference,
                form=line.salt or "the base",
                id=line.substance_id.value,
            )


def factor_departs_from_unverified_row(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        row = _unverified_departure(line, env)
        if row is not None and line.factor is not None:
            yield at(line.factor, line=line.number, declared=line.factor.value, expected=row, form=line.salt)


def factor_not_checked(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        if line.factor is None or _known_substance(line, env) is None or _verified_factor(line, env) is not None:
            continue
        if _unverified_departure(line, env) is not None:
            continue  # X-031 says more
        found = env.reference.base_factor(line.substance_id.value, line.salt)
        why = "is not verified" if found else "is not in the reference table"
        if line.form in _COMPOSED:
            why = f"comes from the {_COMPOSED[line.form]}, which no table holds"
        yield at(line.factor, line=line.number, factor=line.factor.value, form=line.salt or "the base", why=why)


def names_have_letters(d: Draft, env: Env) -> Iterator[Hit]:
    for element in d.root.iter(*_NAMED):
        text = "".join(element.itertext())
        if not any(ch.isalnum() for ch in text):
            yield Hit(element, {"name": _local(element), "text": ascii(text)})


def substance_known(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        found = env.reference.substance(line.substance_id.value)
        if found is None or found.id != line.substance_id.value:
            suggestion = f" ('{found.id}' for {found.name})" if found else ""
            yield at(line.substance_id, line=line.number, id=line.substance_id.value, suggestion=suggestion)


def substance_data_agrees(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        found = _known_substance(line, env)
        if found is not None:
            yield from _disagreements(line, found)


def substance_fits_document(d: Draft, env: Env) -> Iterator[Hit]:
    allowed, covers, instead = _FITS[d.document_type]
    for line in d.lines:
        found = _known_substance(line, env)
        if found is None or _fits(found, allowed):
            continue
        yield at(
            line.substance_id,
            line=line.number,
            name=found.name,
            treaty=found.treaty,
            schedule=" and ".join(
                s if s.startswith("Table") else f"Schedule {s}" for s in sorted(found.schedules)
            ),
            type=d.document_type.value,
            covers=covers,
            instead=instead,
        )


def pharmaceutical_form_given(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        if line.treaty and line.treaty.value == "1971" and line.pharmaceutical_form is None:
            yield Hit(line.gross.element, {"line": line.number})


def preparation_named(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        if (
            line.treaty
            and line.treaty.value == "1971"
            and line.form == "preparation"
            and not line.preparation_name
        ):
            yield Hit(line.gross.element, {"line": line.number})


def re_export_not_counted(d: Draft, env: Env) -> Iterator[Hit]:
    for line in d.lines:
        found = env.reference.substance(line.substance_id.value)
        if (
            line.purpose == RE_EXPORT
            and line.base_grams is not None
            and found is not None
            and under_estimate(found)
        ):
            yield at(
                line.base_grams,
                line=line.number,
                grams=line.base_grams.value,
                id=found.id,
                country=d.importing_country.value,
            )


# References to other documents, as the document states them


def exported_without_import_authorization(d: Draft, env: Env) -> Iterator[Hit]:
    if d.import_ref is not None:
        return
    importing = d.importing_country.value
    if d.exemption is not None and _foreign_exemption(d) is None and not _letter_after(d):  # EA-013's, EA-014's
        what = f"letter of exemption {d.exemption.value}"
        yield at(d.exemption, path=f"against the {what}", what=what, importing=importing)
    elif d.exemption is None and d.emergency is not None:
        path = f"as an emergency delivery ({d.emergency.value})"
        yield at(d.emergency, path=path, what="emergency delivery", importing=importing)


def exemption_from_importing_authority(d: Draft, env: Env) -> Iterator[Hit]:
    """A letter of exemption stands in for the importing country's ImportAuthorization, and every check of
    one is skipped on its strength: only that country's authority can issue it."""
    foreign = _foreign_exemption(d)
    if d.exemption is not None and foreign is not None:
        country, authority = foreign
        yield at(
            country if country.value != d.importing_country.value else authority,
            number=d.exemption.value,
            authority=_authority(country, authority),
            importing=d.importing_country.value,
        )


def exemption_dated_before_export(d: Draft, env: Env) -> Iterator[Hit]:
    letter, dated = d.exemption, d.exemption_date
    if letter is not None and dated is not None and _letter_after(d):
        yield at(dated, number=letter.value, letter_date=dated.value, ea_date=d.issue_date.value)


def _letter_after(d: Draft) -> bool:
    """The letter of exemption is dated after the export it is meant to allow."""
    return d.exemption_date is not None and d.exemption_date.value > d.issue_date.value


def _foreign_exemption(d: Draft) -> tuple[At[str], At[str]] | None:
    """The ExemptionReference's issuing CountryCode and AuthorityId when they are not the importing
    country's: the Draft keeps only the reference's number, whose element sits in the reference."""
    reference = d.exemption.element.getparent() if d.exemption is not None else None
    if reference is None:
        return None
    issuer = f"{_NS}IssuingAuthority/{_NS}"
    country, authority = reference.find(f"{issuer}CountryCode"), reference.find(f"{issuer}AuthorityId")
    if country is None or authority is None:  # the schema requires both
        return None
    stated = _token(country), _token(authority)
    importing = d.importing_country.value
    if stated[0].value == importing and stated[1].value.startswith(f"{importing}-"):
        return None
    return stated


def import_authorization_from_importing_country(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.import_ref
    if ref and ref.country.value != d.importing_country.value:
        yield at(
            ref.country, number=ref.number.value, country=ref.country.value, importing=d.importing_country.value
        )


def import_authorization_dated_before_export(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.import_ref
    if ref and ref.issue_date.value > d.issue_date.value:
        yield at(ref.issue_date, number=ref.number.value, ia_date=ref.issue_date.value, ea_date=d.issue_date.value)


def export_valid_from_after_import_issue(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.import_ref
    if ref and d.valid_from and d.valid_from.value < ref.issue_date.value:
        yield at(
            d.valid_from, valid_from=d.valid_from.value, number=ref.number.value, ia_date=ref.issue_date.value
        )


def execution_of_own_export(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.export_ref
    if ref and ref.country.value != d.issuing_country.value:
        yield at(ref.country, number=ref.number.value, country=ref.country.value, issuing=d.issuing_country.value)


def endorsement_references_match_countries(d: Draft, env: Env) -> Iterator[Hit]:
    for ref, expected, side in (
        (d.export_ref, d.exporting_country, "exporting"),
        (d.import_ref, d.importing_country, "importing"),
    ):
        if ref and ref.country.value != expected.value:
            yield at(
                ref.country,
                role=_local(ref.element),
                number=ref.number.value,
                country=ref.country.value,
                side=side,
                expected=expected.value,
            )


def replacement_is_the_amended_document(d: Draft, env: Env) -> Iterator[Hit]:
    new, ref = d.replacement, d.subject_ref
    if new is None or ref is None:
        return
    if (new.document_type, new.number.value) != (ref.document_type.value, ref.number.value):
        yield at(
            new.number,
            type=new.document_type.value,
            number=new.number.value,
            ref_type=ref.document_type.value,
            ref_number=ref.number.value,
        )


def replacement_keeps_the_issue_date(d: Draft, env: Env) -> Iterator[Hit]:
    new, ref = d.replacement, d.subject_ref
    if new is not None and ref is not None and new.issue_date.value != ref.issue_date.value:
        yield at(new.issue_date, replacement=new.issue_date.value, amended=ref.issue_date.value)


def amended_by_its_issuer(d: Draft, env: Env) -> Iterator[Hit]:
    issuer = _authority(d.issuing_country, d.issuing_authority)
    new, ref = d.replacement, d.subject_ref
    stated = [("the amended document", (ref.country, ref.authority) if ref else None)]
    stated.append(("the replacement", (new.issuing_country, new.issuing_authority) if new else None))
    for what, pair in stated:
        if pair is not None and _authority(*pair) != issuer:
            yield at(pair[1], what=what, authority=_authority(*pair), issuer=issuer)


def _authority(country: At[str], authority: At[str]) -> str:
    """An authority as its country and id: the country is what counts, as the id is only declared."""
    return f"{authority.value} ({country.value})"


def authority_ids_name_their_country(d: Draft, env: Env) -> Iterator[Hit]:
    stated = [(d.issuing_country, d.issuing_authority), *((r.country, r.authority) for r in d.references())]
    for country, authority in stated:
        if not authority.value.startswith(f"{country.value}-"):
            yield at(authority, authority=authority.value, country=country.value)


def replacement_keeps_the_trade(d: Draft, env: Env) -> Iterator[Hit]:
    new = d.replacement
    if new is None:
        return
    for name, ours, theirs in (
        ("ImportingCountry", d.importing_country, new.importing_country),
        ("ExportingCountry", d.exporting_country, new.exporting_country),
    ):
        if ours.value != theirs.value:
            yield at(theirs, name=name, replacement=theirs.value, amendment=ours.value)


def cancelled_by_its_issuer(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.subject_ref
    if ref is None:
        return
    authority, issuer = _authority(ref.country, ref.authority), _authority(d.issuing_country, d.issuing_authority)
    if authority != issuer:
        yield at(ref.authority, number=ref.number.value, authority=authority, issuer=issuer)


def objection_has_reason(d: Draft, env: Env) -> Iterator[Hit]:
    if d.decision and d.decision.value in ("objection", "requestInformation") and d.reason is None:
        yield at(d.decision, decision=d.decision.value)


def response_to_exporting_country(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.subject_ref
    if ref and ref.country.value != d.exporting_country.value:
        yield at(
            ref.country, number=ref.number.value, country=ref.country.value, exporting=d.exporting_country.value
        )


def status_agrees_with_findings(d: Draft, env: Env) -> Iterator[Hit]:
    if d.decision is None:
        return
    severities = set(d.finding_severities)
    expected = (
        "rejected" if "error" in severities else "acceptedWithWarnings" if "warning" in severities else "accepted"
    )
    if d.decision.value != expected:
        counts = ", ".join(f"{d.finding_severities.count(s)} {s}" for s in ("error", "warning", "info"))
        yield at(d.decision, status=d.decision.value, expected=expected, counts=counts)


def acknowledges_a_foreign_document(d: Draft, env: Env) -> Iterator[Hit]:
    ref = d.subject_ref
    if ref and ref.country.value == d.issuing_country.value:
        yield at(ref.country, number=ref.number.value, country=ref.country.value)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or that month's last day when it is shorter (31 Jan + 1 = 28 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    if year > date.max.year:
        return date.max
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def last_day_within(day: date, months: int) -> date:
    """The last day of a validity of ``months`` that begins on ``day``, both ends counted: the day before the
    same day ``months`` later (16 Nov + 3 months: 15 Feb), or that month's last day when it has no such day
    (31 Jan + 1 month: 28 Feb)."""
    end = add_months(day, months)
    if end == date.max or end.day < day.day:
        return end
    return end - timedelta(days=1)


def under_estimate(found: Substance) -> bool:
    """Whether a substance counts against an estimate (1961) or an assessment (1971 Schedules II-IV)."""
    return found.treaty == "1961" or any((found.treaty, s) in _ASSESSED for s in found.schedules)


def _schedule_i(line: LineDraft) -> bool:
    return bool(line.treaty and line.schedule and (line.treaty.value, line.schedule.value) == ("1971", "I"))


def _expected_base_grams(line: LineDraft, env: Env) -> Decimal | None:
    unit = env.reference.unit(line.unit)
    if unit is None or unit.grams is None or line.factor is None or line.gross.value < 0:
        return None
    return line.gross.value * unit.grams * line.factor.value


def _known_substance(line: LineDraft, env: Env) -> Substance | None:
    found = env.reference.substance(line.substance_id.value)
    return found if found is not None and found.id == line.substance_id.value else None


def _verified_factor(line: LineDraft, env: Env) -> Decimal | None:
    """The factor the line must use, if one is certain: a verified table row, or 1 for the base itself."""
    if line.form in _COMPOSED:
        return None
    found = env.reference.base_factor(line.substance_id.value, line.salt)
    if found is not None and found.verified:
        return found.factor
    return BASE_ITSELF if _is_base(line, env) else None


def _is_base(line: LineDraft, env: Env) -> bool:
    """No salt named, or the substance's own name (with or without 'base'): the anhydrous base itself."""
    if line.salt is None:
        return True
    found = _known_substance(line, env)
    named = " ".join(line.salt.casefold().split()).removesuffix(" base")
    return found is not None and named in found.names


def _unverified_departure(line: LineDraft, env: Env) -> Decimal | None:
    """The unverified table factor for the line's salt, when the line's factor is far from it."""
    if line.form in _COMPOSED or line.factor is None or _is_base(line, env):
        return None
    found = env.reference.base_factor(line.substance_id.value, line.salt)
    if found is None or found.verified or abs(found.factor - line.factor.value) <= UNVERIFIED_FACTOR_TOLERANCE:
        return None
    return found.factor


def _disagreements(line: LineDraft, found: Substance) -> Iterator[Hit]:
    common = {"line": line.number, "id": found.id}
    if line.inn and line.inn.value.casefold() not in found.names:
        yield at(line.inn, name="INN", declared=line.inn.value, expected=found.inn, **common)
    if line.name and line.name.value.casefold() not in found.names:
        yield at(line.name, name="SubstanceName", declared=line.name.value, expected=found.name, **common)
    if line.cas and found.cas_number and line.cas.value != found.cas_number:
        yield at(line.cas, name="CASNumber", declared=line.cas.value, expected=found.cas_number, **common)
    if line.treaty and line.treaty.value != found.treaty:
        yield at(line.treaty, name="Treaty", declared=line.treaty.value, expected=found.treaty, **common)
    if line.schedule and line.schedule.value not in found.schedules:
        expected = " or ".join(sorted(found.schedules))
        yield at(line.schedule, name="Schedule", declared=line.schedule.value, expected=expected, **common)


def _fits(found: Substance, allowed: frozenset[tuple[str, str]]) -> bool:
    return (found.treaty, "*") in allowed or any((found.treaty, s) in allowed for s in found.schedules)


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


_NARCOTICS_AND_PSYCHOTROPICS = (
    frozenset({("1961", "*"), ("1971", "*")}),
    "narcotic drugs (1961) and psychotropic substances (1971)",
    "send precursors (1988) as a PreExportNotification",
)
# Which treaty schedules each document type may carry: (allowed, what it covers, what to send instead).
_FITS: dict[DocumentType, tuple[frozenset[tuple[str, str]], str, str]] = {
    DocumentType.IMPORT_AUTHORIZATION: _NARCOTICS_AND_PSYCHOTROPICS,
    DocumentType.EXPORT_AUTHORIZATION: _NARCOTICS_AND_PSYCHOTROPICS,
    DocumentType.EXPORT_EXECUTION: _NARCOTICS_AND_PSYCHOTROPICS,
    DocumentType.IMPORT_ENDORSEMENT: _NARCOTICS_AND_PSYCHOTROPICS,
    DocumentType.EXPORT_DECLARATION: (
        frozenset({("1971", "III")}),
        "psychotropic substances of 1971 Schedule III",
        "send an ExportAuthorization against the importing country's ImportAuthorization (1961 and 1971 "
        "Schedules I and II)",
    ),
    DocumentType.PRE_EXPORT_NOTIFICATION: (
        frozenset({("1988", "*")}),
        "precursors of 1988 Tables I and II",
        "send an ExportAuthorization for narcotic drugs and psychotropic substances",
    ),
}
