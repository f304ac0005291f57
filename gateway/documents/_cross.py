"""Checks across documents: they ask a ``DocumentContext`` what the gateway has sent and received.

Each returns at once without a context (the engine does not call them then, and reports that it did not).
A check that needs the referenced document stays silent when it is unknown: X-023 reports that once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from gateway.documents._checks import BASE_QUANTITY_TOLERANCE_GRAMS, FACTOR_TOLERANCE, under_estimate
from gateway.documents._engine import Env, Hit, at
from gateway.documents._extract import RE_EXPORT, Draft, LineDraft, PartyDraft, ReferenceDraft
from gateway.documents._model import DocumentKey, Party, PermitDocument, PermitLine
from gateway.documents.context import DocumentContext, DocumentStatus
from gateway.documents.types import DocumentType

_NOT_OPEN = {DocumentStatus.EXPIRED: "expired", DocumentStatus.CLOSED: "closed (used up or endorsed)"}
OVER_RECEIPT = "overReceipt"
_SIZE = {"mass": "grams per unit", "volume": "millilitres per unit", "count": "pieces per unit"}


# Any document type


def number_not_taken(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None or d.is_replacement:
        return
    # a document kept before the registry hashed canonical forms holds the hash of its bytes: either may match
    hashes = [h for h in (d.content_sha256, d.raw_sha256) if h]
    if all(ctx.is_duplicate(d.key, h) for h in hashes):
        yield at(d.number, type=d.document_type.value, number=d.number.value, country=d.issuing_country.value)


def reference_known(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None:
        return
    for ref in d.references():
        if ctx.find(ref.key) is None:
            yield at(ref.number, type=ref.document_type.value, number=ref.number.value, country=ref.country.value)


def reference_agrees(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None:
        return
    for ref in d.references():
        found = ctx.find(ref.key)
        if found is None:
            continue
        for name, stated, known in (
            ("IssueDate", ref.issue_date, found.issue_date),
            ("AuthorityId", ref.authority, found.issuing_authority),
        ):
            if stated.value != known:
                yield at(stated, name=name, stated=stated.value, known=known, number=ref.number.value)


def reference_not_cancelled(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None:
        return
    for ref in d.references():
        if _cancelled(ctx, ref.key, d):
            yield at(ref.number, type=ref.document_type.value, number=ref.number.value, date=d.issue_date.value)


def estimate_exceeded(d: Draft, env: Env) -> Iterator[Hit]:
    if d.emergency is None:
        yield from (hit for kind, hit in _estimate_checks(d, env) if kind == "exceeded")


def estimate_exceeded_in_emergency(d: Draft, env: Env) -> Iterator[Hit]:
    if d.emergency is not None:
        yield from (hit for kind, hit in _estimate_checks(d, env) if kind == "exceeded")


def estimate_known(d: Draft, env: Env) -> Iterator[Hit]:
    yield from (hit for kind, hit in _estimate_checks(d, env) if kind == "missing")


def import_not_prohibited(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None:
        return
    for line in d.lines:
        found = ctx.prohibition(d.importing_country.value, line.substance_id.value)
        # a prohibition notified ahead of time binds documents issued from the day it takes effect
        if found is not None and (found.since is None or found.since <= d.issue_date.value):
            since = f" since {found.since}" if found.since else ""
            yield at(
                line.substance_id,
                line=line.number,
                country=found.country,
                id=found.substance_id,
                since=since,
                reference=found.reference,
            )


# ExportAuthorization against its ImportAuthorization


def import_authorization_unexpired(d: Draft, env: Env) -> Iterator[Hit]:
    ia = _find(env, d.import_ref)
    if d.import_ref and ia and ia.valid_until and ia.valid_until < d.issue_date.value:
        yield at(d.import_ref.number, number=ia.number, valid_until=ia.valid_until, issue_date=d.issue_date.value)


def export_within_import_validity(d: Draft, env: Env) -> Iterator[Hit]:
    ia = _find(env, d.import_ref)
    if not (ia and ia.valid_until and d.valid_until) or ia.valid_until < d.issue_date.value:
        return
    if d.valid_until.value > ia.valid_until:
        yield at(d.valid_until, valid_until=d.valid_until.value, number=ia.number, ia_until=ia.valid_until)


def export_within_import_start(d: Draft, env: Env) -> Iterator[Hit]:
    ia = _find(env, d.import_ref)
    if ia is None or ia.valid_from is None:
        return
    for name, field in (("IssueDate", d.issue_date), ("ValidFrom", d.valid_from)):
        if field is not None and field.value < ia.valid_from:
            yield at(field, name=name, date=field.value, number=ia.number, ia_from=ia.valid_from)


def same_parties_as_import(d: Draft, env: Env) -> Iterator[Hit]:
    ia = _find(env, d.import_ref)
    if ia is None:
        return
    for ours, theirs in ((d.importer, ia.importer), (d.exporter, ia.exporter)):
        if ours is None or theirs is None:
            continue
        for name, stated, known in _party_differences(ours, theirs):
            yield Hit(
                ours.element,
                {"role": ours.role, "name": name, "stated": stated, "known": known, "number": ia.number},
            )


def lines_match_import(d: Draft, env: Env) -> Iterator[Hit]:
    ia = _find(env, d.import_ref)
    if ia is not None:
        yield from _unmatched_lines(d, ia, env, gross=True)


def within_remaining_quantity(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.import_ref
    if ctx is None or ref is None or _cancelled(ctx, ref.key, d):
        return
    for ia_line, lines in _by_reference_line(d.lines).items():
        remaining = ctx.remaining_base_grams(ref.key, ia_line, excluding=d.key)
        total = _base(lines)
        if remaining is not None and total > remaining:
            yield at(
                lines[0].base_grams or lines[0].gross,
                lines=", ".join(str(line.number) for line in lines),
                total=total,
                remaining=max(remaining, Decimal(0)),
                ia_line=ia_line,
                number=ref.number.value,
            )


def consignments_allowed(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.import_ref
    ia = _find(env, ref)
    if ctx is None or ref is None or ia is None or ia.multiple_consignments_allowed or _cancelled(ctx, ref.key, d):
        return
    others = ctx.exports_against(ref.key, excluding=d.key)
    if others:
        yield at(ref.number, number=ia.number, others=", ".join(k.number for k in others))


# ExportExecution and ImportEndorsement against the ExportAuthorization


def lines_match_export(d: Draft, env: Env) -> Iterator[Hit]:
    ea = _find(env, d.export_ref)
    if ea is not None:
        yield from _unmatched_lines(d, ea, env, gross=False)


def shipped_within_authorized(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ea = env.context, _find(env, d.export_ref)
    if ctx is None or ea is None:
        return
    authorized = {line.line_number: line.base_quantity_grams for line in ea.lines}
    for ea_line, lines in _by_reference_line(d.lines).items():
        limit = authorized.get(ea_line)
        before = ctx.executed_base_grams(ea.key, ea_line, excluding=d.key)
        if limit is not None and before + _base(lines) > limit:
            yield at(
                lines[0].base_grams or lines[0].gross,
                before=before,
                **_over_params(lines, ea_line, limit, ea.number),
            )


def dispatched_within_export_validity(d: Draft, env: Env) -> Iterator[Hit]:
    ea = _find(env, d.export_ref)
    if not (ea and ea.valid_from and ea.valid_until and d.event_date):
        return
    if not ea.valid_from <= d.event_date.value <= ea.valid_until:
        yield at(d.event_date, date=d.event_date.value, number=ea.number, start=ea.valid_from, end=ea.valid_until)


def received_after_dispatch(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref, received = env.context, d.export_ref, d.event_date
    dispatched = ctx.dispatch_date(ref.key) if ctx and ref else None
    if ref and received and dispatched and received.value < dispatched:
        yield at(received, date=received.value, number=ref.number.value, dispatch_date=dispatched)


def endorsed_within_exported(d: Draft, env: Env) -> Iterator[Hit]:
    if OVER_RECEIPT not in d.discrepancies:
        yield from _over_received(d, env)


def over_receipt_declared(d: Draft, env: Env) -> Iterator[Hit]:
    if OVER_RECEIPT in d.discrepancies:
        yield from _over_received(d, env)


def _over_received(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.export_ref
    if ctx is None or ref is None or ctx.find(ref.key) is None:
        return
    for ea_line, lines in _by_reference_line(d.lines).items():
        exported = ctx.exported_base_grams(ref.key, ea_line)
        if exported is not None and _base(lines) > exported:
            yield _over(lines, ea_line, exported, ref.number.value)


def endorsed_once(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.export_ref
    if ctx is None or ref is None:
        return
    others = ctx.endorsements_of(ref.key, excluding=d.key)
    if others:
        yield at(ref.number, number=ref.number.value, others=", ".join(k.number for k in others))


def endorsement_names_the_export_import(d: Draft, env: Env) -> Iterator[Hit]:
    ea = _find(env, d.export_ref)
    ours = d.import_ref
    theirs = ea.import_authorization_ref if ea else None
    if ea and ours and theirs and ours.key != theirs.key:
        yield at(ours.number, stated=ours.number.value, number=ea.number, known=theirs.number)


def endorsement_names_an_import_when_the_export_did(d: Draft, env: Env) -> Iterator[Hit]:
    """An endorsement may leave its ImportAuthorizationReference out only when the export it endorses had none
    (an emergency delivery, or one under a letter of exemption): the schema cannot tell which it endorses."""
    ea = _find(env, d.export_ref)
    theirs = ea.import_authorization_ref if ea else None
    if d.export_ref is not None and d.import_ref is None and ea is not None and theirs is not None:
        yield at(
            d.export_ref.number,
            number=ea.number,
            known=theirs.number,
            country=theirs.issuing_country,
            date=theirs.issue_date,
            authority=theirs.issuing_authority,
        )


# Amendment and Cancellation


def amended_document_open(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.subject_ref
    status = ctx.status(ref.key, as_of=d.issue_date.value) if ctx and ref else None
    if ref is not None and status in _NOT_OPEN:
        yield at(ref.number, number=ref.number.value, status=_NOT_OPEN[status], date=d.issue_date.value)


def replacement_keeps_the_amended_trade(d: Draft, env: Env) -> Iterator[Hit]:
    new, target = d.replacement, _find(env, d.subject_ref)
    if new is None or target is None:
        return
    for name, theirs, amended in (
        ("ImportingCountry", new.importing_country, target.importing_country),
        ("ExportingCountry", new.exporting_country, target.exporting_country),
    ):
        if theirs.value != amended:
            yield at(theirs, name=name, replacement=theirs.value, amended=amended, number=target.number)


def amendment_keeps_what_was_exported(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, new, target = env.context, d.replacement, _find(env, d.subject_ref)
    if (
        ctx is None
        or new is None
        or target is None
        or target.document_type is not DocumentType.IMPORT_AUTHORIZATION
    ):
        return
    amended = {line.number: line for line in new.lines}
    for line in target.lines:
        drawn = _drawn(ctx, target, line)
        replacement = amended.get(line.line_number)
        kept = replacement.base_grams.value if replacement and replacement.base_grams else Decimal(0)
        if drawn > 0 and kept < drawn:
            element = (replacement.base_grams or replacement.gross) if replacement else new.number
            yield at(element, line=line.line_number, kept=kept, drawn=drawn, number=target.number)


def version_increases(d: Draft, env: Env) -> Iterator[Hit]:
    target = _find(env, d.subject_ref)
    if d.version and target and d.version.value <= target.version:
        yield at(
            d.version,
            version=d.version.value,
            current=target.version,
            next=target.version + 1,
            number=target.number,
        )


def cancelled_without_live_exports(d: Draft, env: Env) -> Iterator[Hit]:
    ctx, ref = env.context, d.subject_ref
    if ctx is None or ref is None or ref.document_type.value is not DocumentType.IMPORT_AUTHORIZATION:
        return
    exports = ctx.exports_against(ref.key)
    if exports:
        yield at(
            ref.number,
            number=ref.number.value,
            exports=", ".join(f"{k.number} ({k.issuing_country})" for k in exports),
        )


# ExportDeclaration


def declaration_allowed_by_importing_country(d: Draft, env: Env) -> Iterator[Hit]:
    ctx = env.context
    if ctx is None:
        return
    for line in d.lines:
        treaty, schedule = line.treaty, line.schedule
        if (
            treaty
            and schedule
            and ctx.import_authorization_required(d.importing_country.value, treaty.value, schedule.value)
        ):
            yield at(
                schedule,
                line=line.number,
                country=d.importing_country.value,
                treaty=treaty.value,
                schedule=schedule.value,
            )


# Helpers


def _find(env: Env, ref: ReferenceDraft | None) -> PermitDocument | None:
    if env.context is None or ref is None:
        return None
    return env.context.find(ref.key)


def _cancelled(ctx: DocumentContext, key: DocumentKey, d: Draft) -> bool:
    return ctx.status(key, as_of=d.issue_date.value) is DocumentStatus.CANCELLED


def _estimate_checks(d: Draft, env: Env) -> list[tuple[str, Hit]]:
    if id(d) not in env.estimates:
        env.estimates[id(d)] = list(_estimate_hits(d, env))
    return env.estimates[id(d)]


def _estimate_hits(d: Draft, env: Env) -> Iterator[tuple[str, Hit]]:
    ctx = env.context
    if ctx is None:
        return
    country, year = d.importing_country.value, d.year
    for substance_id, lines in _by_substance(d, env).items():
        estimate = ctx.estimate(country, substance_id, year)
        first = lines[0].substance_id
        if estimate is None:
            yield "missing", at(first, country=country, id=substance_id, year=year)
            continue
        before = ctx.authorized_base_grams(d.document_type, country, substance_id, year, excluding=d.key)
        this = _base(lines)
        if before + this > estimate.base_grams:
            yield (
                "exceeded",
                at(
                    first,
                    kind=estimate.kind,
                    country=country,
                    id=substance_id,
                    year=year,
                    estimate=estimate.base_grams,
                    before=before,
                    this=this,
                    type=d.document_type.value,
                    reason=d.emergency.value if d.emergency else "",
                ),
            )


def _by_substance(d: Draft, env: Env) -> dict[str, list[LineDraft]]:
    """Lines of substances under an estimate (1961) or assessment (1971 Schedules II-IV), by substance."""
    grouped: dict[str, list[LineDraft]] = defaultdict(list)
    for line in d.lines:
        found = env.reference.substance(line.substance_id.value)
        if (
            found
            and found.id == line.substance_id.value
            and line.base_grams is not None
            and under_estimate(found)
            and line.purpose != RE_EXPORT
        ):
            grouped[found.id].append(line)
    return grouped


def _by_reference_line(lines: tuple[LineDraft, ...]) -> dict[int, list[LineDraft]]:
    grouped: dict[int, list[LineDraft]] = defaultdict(list)
    for line in lines:
        if line.reference_line is not None:
            grouped[line.reference_line.value].append(line)
    return grouped


def _base(lines: list[LineDraft]) -> Decimal:
    return sum((line.base_grams.value for line in lines if line.base_grams is not None), Decimal(0))


def _over(lines: list[LineDraft], reference_line: int, limit: Decimal, number: str) -> Hit:
    return at(lines[0].base_grams or lines[0].gross, **_over_params(lines, reference_line, limit, number))


def _over_params(lines: list[LineDraft], reference_line: int, limit: Decimal, number: str) -> dict[str, object]:
    return {
        "lines": ", ".join(str(line.number) for line in lines),
        "total": _base(lines),
        "limit": limit,
        "ref_line": reference_line,
        "number": number,
    }


def _unmatched_lines(d: Draft, other: PermitDocument, env: Env, *, gross: bool) -> Iterator[Hit]:
    theirs = {line.line_number: line for line in other.lines}
    for line in d.lines:
        if line.reference_line is None:
            continue
        match = theirs.get(line.reference_line.value)
        problem = _line_problem(line, match)
        if match is not None and not problem:
            problem = (
                _unit_problem(line, match, env)
                or _factor_problem(line, match, env)
                or _ratio_problem(line, match, env)
                or (_gross_problems(d, line, other, match, env) if gross else "")
            )
        if problem:
            yield at(
                line.reference_line,
                line=line.number,
                ref_line=line.reference_line.value,
                type=other.document_type.value,
                number=other.number,
                problem=problem,
            )


def _line_problem(line: LineDraft, match: PermitLine | None) -> str:
    if match is None:
        return "has no such line"
    if match.substance_id != line.substance_id.value:
        return f"has {match.substance_id} on that line, not {line.substance_id.value}"
    form = line.pharmaceutical_form.value if line.pharmaceutical_form else None
    theirs = match.pharmaceutical_form
    if line.treaty is None or line.treaty.value != "1971":
        return ""
    if form and theirs and form.casefold() != theirs.casefold():
        return f"authorizes it as {theirs}, not {form}"
    name, authorized = line.preparation_name, match.preparation_name
    if name and authorized and _normal(name) != _normal(authorized):
        return f"authorizes preparation {authorized}, not {name}"
    return ""


def _factor_problem(line: LineDraft, match: PermitLine, env: Env) -> str:
    """The factor the other line implies (its base over its gross), when this line's departs from it: the
    same salt or preparation has one factor, and a smaller one would let a larger gross quantity through."""
    grams = _in_grams(match.gross_quantity, match.unit_code, env)
    if line.factor is None or match.base_quantity_grams is None or not grams:
        return ""
    implied = match.base_quantity_grams / grams
    if abs(implied - line.factor.value) <= FACTOR_TOLERANCE + BASE_QUANTITY_TOLERANCE_GRAMS / grams:
        return ""
    return (
        f"gives {match.base_quantity_grams} g base for {match.gross_quantity} {match.unit_code} (factor "
        f"{implied:.4f}), not the factor {line.factor.value} of this line"
    )


def _gross_problem(line: LineDraft, match: PermitLine, env: Env) -> str:
    ours = _in_unit_of(line.gross.value, line.unit, match.unit_code, env)
    if ours is None or ours <= match.gross_quantity:
        return ""
    return f"authorizes {match.gross_quantity} {match.unit_code} gross, less than {line.gross.value} {line.unit}"


def _unit_problem(line: LineDraft, match: PermitLine, env: Env) -> str:
    """Quantities in a volume or count unit cannot be turned into grams: held to the other line's kind of
    unit, converted where the units table gives both sizes, they can be checked against it (its gross
    quantity, and the base grams it gives per unit)."""
    if _in_unit_of(Decimal(1), line.unit, match.unit_code, env) is not None:
        return ""
    ours, theirs = env.reference.unit(line.unit), env.reference.unit(match.unit_code)
    if ours is not None and theirs is not None and ours.kind != theirs.kind:
        why = f"{line.unit} is a {ours.kind} unit and {match.unit_code} a {theirs.kind} unit, which do not convert"
    else:
        unsized = [code for code, u in ((line.unit, ours), (match.unit_code, theirs)) if u is None or not u.size]
        why = (
            f"the units table (units.csv) gives no {_SIZE[theirs.kind] if theirs else 'size'} for "
            f"{' or '.join(unsized)}, so {line.unit} cannot be converted into {match.unit_code}"
        )
    return (
        f"authorizes it in {match.unit_code}, not {line.unit}; state the quantity in {match.unit_code}, the "
        f"unit of that line ({why})"
    )


def _ratio_problem(line: LineDraft, match: PermitLine, env: Env) -> str:
    """For a volume or count unit, the base grams per unit the other line gives; X-007 cannot recompute the
    base quantity of such a line, and a smaller one would let more units through the quantity checks."""
    if _grams_per(line.unit, env) or line.base_grams is None or match.base_quantity_grams is None:
        return ""
    gross = _in_unit_of(line.gross.value, line.unit, match.unit_code, env)
    if gross is None or not match.gross_quantity:
        return ""
    expected = gross * match.base_quantity_grams / match.gross_quantity
    # the other line's base quantity is rounded too: its error grows with this line's share of it
    tolerance = BASE_QUANTITY_TOLERANCE_GRAMS * (1 + gross / match.gross_quantity)
    if abs(expected - line.base_grams.value) <= tolerance:
        return ""
    return (
        f"gives {match.base_quantity_grams} g base for {match.gross_quantity} {match.unit_code}, so "
        f"{line.gross.value} {line.unit} hold {expected.quantize(BASE_QUANTITY_TOLERANCE_GRAMS)} g, not the "
        f"{line.base_grams.value} g of this line"
    )


def _gross_problems(d: Draft, line: LineDraft, ia: PermitDocument, match: PermitLine, env: Env) -> str:
    return _gross_problem(line, match, env) or _drawn_gross_problem(d, line, ia, match, env)


def _drawn_gross_problem(d: Draft, line: LineDraft, ia: PermitDocument, match: PermitLine, env: Env) -> str:
    """For a volume or count unit, the units the other ExportAuthorizations already take from the import line
    (what was endorsed, once endorsed), with what this one's lines on it take."""
    ctx = env.context
    if ctx is None or _grams_per(match.unit_code, env):
        return ""
    ours = sum(
        (
            _in_unit_of(o.gross.value, o.unit, match.unit_code, env) or Decimal(0)
            for o in d.lines
            if o.reference_line and o.reference_line.value == match.line_number
        ),
        Decimal(0),
    )
    others = ctx.exports_against(ia.key, excluding=d.key)
    before = sum((_gross_taken(ctx, key, match, env) for key in others), Decimal(0))
    if before + ours <= match.gross_quantity:
        return ""
    return (
        f"authorizes {match.gross_quantity} {match.unit_code} gross; {', '.join(k.number for k in others)} "
        f"already take {before} {match.unit_code}, which leaves {max(match.gross_quantity - before, Decimal(0))}, "
        f"less than the {ours} {match.unit_code} of this document's lines on it"
    )


def _gross_taken(ctx: DocumentContext, key: DocumentKey, ia_line: PermitLine, env: Env) -> Decimal:
    """What one export takes from the import line, in that line's unit; lines in a unit that does not
    convert into it were refused, or kept before units converted, and count for nothing."""
    ea = ctx.find(key)
    if ea is None:
        return Decimal(0)
    lines = {line.line_number for line in ea.lines if line.reference_line_number == ia_line.line_number}
    endorsed = [en for en in map(ctx.find, ctx.endorsements_of(key)) if en is not None]
    taken = (
        [line for en in endorsed for line in en.lines if line.reference_line_number in lines]
        if endorsed
        else [line for line in ea.lines if line.line_number in lines]
    )
    return sum(
        (_in_unit_of(line.gross_quantity, line.unit_code, ia_line.unit_code, env) or Decimal(0) for line in taken),
        Decimal(0),
    )


def _grams_per(unit_code: str, env: Env) -> Decimal | None:
    unit = env.reference.unit(unit_code)
    return unit.grams if unit is not None else None


def _in_unit_of(quantity: Decimal, unit_code: str, target: str, env: Env) -> Decimal | None:
    """``quantity`` of ``unit_code`` in units of ``target``: the same code, or a unit of the same kind when
    the units table gives both sizes (MLT and LTR; H87 and a dozen); None when they do not convert."""
    if unit_code == target:
        return quantity
    ours, theirs = env.reference.unit(unit_code), env.reference.unit(target)
    if ours is None or theirs is None or ours.kind != theirs.kind or not ours.size or not theirs.size:
        return None
    return quantity * ours.size / theirs.size


def _in_grams(quantity: Decimal, unit_code: str, env: Env) -> Decimal | None:
    unit = env.reference.unit(unit_code)
    return quantity * unit.grams if unit is not None and unit.grams is not None else None


def _party_differences(ours: PartyDraft, theirs: Party) -> Iterator[tuple[str, str, str]]:
    if _normal(ours.name) != _normal(theirs.name):
        yield "Name", ours.name, theirs.name
    if ours.country.value != theirs.country:
        yield "Address/CountryCode", ours.country.value, theirs.country
    if theirs.licence and _normal(ours.licence or "") != _normal(theirs.licence):
        yield "NationalLicenceNumber", ours.licence or "(none)", theirs.licence


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _drawn(ctx: DocumentContext, ia: PermitDocument, line: PermitLine) -> Decimal:
    remaining = ctx.remaining_base_grams(ia.key, line.line_number)
    if remaining is None or line.base_quantity_grams is None:
        return Decimal(0)
    return line.base_quantity_grams - remaining
