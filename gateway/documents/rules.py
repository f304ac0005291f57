"""The business rules a schema-valid permit document must pass: one table, one short check per rule.

Rule ids are stable (acknowledgements and partners quote them). The prefix names the document type a rule
guards: ``IA-`` ImportAuthorization, ``EA-`` ExportAuthorization, ``EX-`` ExportExecution, ``EN-``
ImportEndorsement, ``AM-`` Amendment, ``CA-`` Cancellation, ``ED-`` ExportDeclaration, ``PN-``
PreExportNotification, ``PR-`` its response, ``AK-`` Acknowledgement; ``X-`` rules are common to several
types or look across documents. A check reads a ``Draft`` and yields a ``Hit`` per violation; the hit's
element gives the finding its line and path, and its params fill the rule's message and hint. ``BR-nn`` in a
basis refers to section 4.5 of the shared PERMITS-NOTES.md.

``needs`` says what a rule cannot run without: ``as_of`` (the receiving day) or ``context`` (what the
gateway has sent and received). Without it the rule is skipped, and the report says which were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Literal

from gateway.documents import _checks as c
from gateway.documents import _cross as x
from gateway.documents._engine import Check, Env, Hit
from gateway.documents._extract import Draft
from gateway.documents._findings import (
    MAX_FINDINGS,
    Finding,
    element_path,
    more_findings,
    most_severe,
    path_prefix,
)
from gateway.documents.types import DocumentType

RuleSeverity = Literal["error", "warning"]
Needs = Literal["document", "as_of", "context"]
BASE_QUANTITY_TOLERANCE_GRAMS = c.BASE_QUANTITY_TOLERANCE_GRAMS


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    severity: RuleSeverity
    basis: str
    message: str
    hint: str
    applies_to: frozenset[DocumentType]
    check: Check
    needs: Needs = "document"


def check_document(draft: Draft, env: Env) -> tuple[Finding, ...]:
    """Every finding of every rule that applies to the draft (and to an amendment's replacement), in
    document order, then a note per kind of rule that could not run.

    Cross-document rules run only on a document whose own rules found no error, as business rules run only
    on a schema-valid one: a document wrong in itself would mostly draw echoes of the same mistake.
    """
    prefix = path_prefix(draft.document_type)
    parts = (draft,) if draft.replacement is None else (draft, draft.replacement)
    own = [(part, rule) for part in parts for rule in rules_for(part.document_type) if rule.needs != "context"]
    cross = [(part, rule) for part in parts for rule in rules_for(part.document_type) if rule.needs == "context"]
    hits = _run(own, env)
    errors = sorted({rule.id for rule, _ in hits if rule.severity == "error"})
    blocked = bool(errors)
    if env.context is not None and not blocked:
        hits += _run(cross, env)
    findings = _findings(hits, prefix)
    skipped_as_of = sorted({rule.id for _, rule in own if rule.needs == "as_of" and env.as_of is None})
    skipped_cross = sorted({rule.id for _, rule in cross}) if env.context is None or blocked else []
    return (*findings, *_skipped_notes(skipped_cross, skipped_as_of, errors))


def check_cross(draft: Draft, env: Env) -> tuple[Finding, ...]:
    """The findings of the cross-document rules alone, in document order: for a document that passed its own
    rules and is checked again on a context that changed since (the registry, as the document is recorded)."""
    parts = (draft,) if draft.replacement is None else (draft, draft.replacement)
    cross = [(part, rule) for part in parts for rule in rules_for(part.document_type) if rule.needs == "context"]
    return tuple(_findings(_run(cross, env), path_prefix(draft.document_type)))


def _findings(hits: list[tuple[Rule, Hit]], prefix: str) -> list[Finding]:
    hits.sort(key=lambda found: found[1].element.sourceline or 0)
    # a finding's path walks the tree: only those a report shows get one (a 9,999-line document may hit a rule
    # on every line)
    findings = [_finding(rule, hit, prefix) for rule, hit in hits[:MAX_FINDINGS]]
    if len(hits) > MAX_FINDINGS:
        hidden = hits[MAX_FINDINGS:]
        findings.append(more_findings(len(hidden), most_severe(rule.severity for rule, _ in hidden), "FINDINGS"))
    return findings


def _run(pairs: list[tuple[Draft, Rule]], env: Env) -> list[tuple[Rule, Hit]]:
    return [
        (rule, hit)
        for part, rule in pairs
        if rule.needs != "as_of" or env.as_of is not None
        for hit in rule.check(part, env)
    ]


@cache
def rules_for(document_type: DocumentType) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if document_type in rule.applies_to)


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


def _skipped_notes(cross: list[str], as_of: list[str], errors: list[str]) -> Iterable[Finding]:
    """``errors``: the rules the document broke, which keep the cross-document rules from running."""
    if cross:
        why = f"the document has errors ({', '.join(errors)})" if errors else "no document context was given"
        yield Finding(
            rule="CONTEXT",
            severity="info",
            message=f"the cross-document rules were not run, because {why}; rules not run: {', '.join(cross)}",
            hint="Correct the errors first; the rules not run are checked then."
            if errors
            else "Validate with the documents the gateway has sent and received (the store; on the command "
            "line, --context FOLDER) to run them.",
        )
    if as_of:
        yield Finding(
            rule="AS-OF",
            severity="info",
            message=f"the date rules were not run, because no as-of day was given: {', '.join(as_of)}",
            hint="Pass as_of (on the command line, --as-of YYYY-MM-DD) to run them.",
        )


_T = DocumentType
_IA = frozenset({_T.IMPORT_AUTHORIZATION})
_EA = frozenset({_T.EXPORT_AUTHORIZATION})
_EX = frozenset({_T.EXPORT_EXECUTION})
_EN = frozenset({_T.IMPORT_ENDORSEMENT})
_AM = frozenset({_T.AMENDMENT})
_CA = frozenset({_T.CANCELLATION})
_ED = frozenset({_T.EXPORT_DECLARATION})
_PN = frozenset({_T.PRE_EXPORT_NOTIFICATION})
_PR = frozenset({_T.PRE_EXPORT_NOTIFICATION_RESPONSE})
_AK = frozenset({_T.ACKNOWLEDGEMENT})
_ALL = frozenset(DocumentType)
_AUTHORIZATIONS = _IA | _EA
_WITH_PARTIES = _IA | _EA | _ED | _PN
_WITH_LINES = _WITH_PARTIES | _EX | _EN
_WITH_BASE = _IA | _EA | _ED | _EX | _EN
_TREATY_LINES = _IA | _EA | _ED
_NOT_IA_OR_EA = _ALL - _AUTHORIZATIONS
_REFERRING = _EA | _EX | _EN | _AM | _CA | _PR | _AK
_LISTS = "the INCB Yellow, Green and Red Lists"
_ART_31 = "1961 Art. 31(4)(b); 1971 Art. 12(1)(b)"
_ENDORSEMENT = "1961 Art. 31(7); 1971 Art. 12(1)(e)"

RULES: tuple[Rule, ...] = (
    # ImportAuthorization
    Rule(
        id="IA-001",
        severity="error",
        applies_to=_IA,
        check=c.importing_country_is_issuer,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c)",
        message="ImportingCountry {importing} differs from the issuing authority's country {issuing}; an "
        "ImportAuthorization is issued by the importing country's competent authority",
        hint="Set ImportingCountry to {issuing}, or have the authority of {importing} issue the document.",
    ),
    # ExportAuthorization
    Rule(
        id="EA-001",
        severity="error",
        applies_to=_EA,
        check=c.exporting_country_is_issuer,
        basis="1961 Art. 31(4)(a); 1971 Art. 12(1)(a)",
        message="ExportingCountry {exporting} differs from the issuing authority's country {issuing}; an "
        "ExportAuthorization is issued by the exporting country's competent authority",
        hint="Set ExportingCountry to {issuing}, or have the authority of {exporting} issue the document.",
    ),
    Rule(
        id="EA-002",
        severity="error",
        applies_to=_EA,
        check=c.import_authorization_from_importing_country,
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
        check=c.import_authorization_dated_before_export,
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
        check=c.export_valid_from_after_import_issue,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); BR-09",
        message="ValidFrom {valid_from} is before the referenced ImportAuthorization {number} was issued "
        "({ia_date})",
        hint="Start the ExportAuthorization's validity on or after {ia_date}.",
    ),
    Rule(
        id="EA-005",
        severity="error",
        applies_to=_EA,
        check=x.import_authorization_unexpired,
        needs="context",
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); BR-05, BR-09",
        message="ImportAuthorization {number} expired on {valid_until}, before this ExportAuthorization was "
        "issued on {issue_date}",
        hint="Ask the importer for a new or extended ImportAuthorization and issue the export against it.",
    ),
    Rule(
        id="EA-006",
        severity="error",
        applies_to=_EA,
        check=x.export_within_import_validity,
        needs="context",
        basis="BR-09; UK practice (an export licence ends when the import permit does)",
        message="ValidUntil {valid_until} is after the end of ImportAuthorization {number} ({ia_until})",
        hint="End the ExportAuthorization's validity on or before {ia_until}.",
    ),
    Rule(
        id="EA-007",
        severity="error",
        applies_to=_EA,
        check=x.same_parties_as_import,
        needs="context",
        basis=f"{_ART_31}; BR-06",
        message="the {role}'s {name} is '{stated}', but ImportAuthorization {number} names '{known}'",
        hint="Copy the {role} exactly as ImportAuthorization {number} names it; a different party needs its "
        "own ImportAuthorization.",
    ),
    Rule(
        id="EA-008",
        severity="error",
        applies_to=_EA,
        check=x.lines_match_import,
        needs="context",
        basis="1971 Art. 12(1)(b); BR-07",
        message="line {line} draws on line {ref_line} of {type} {number}, which {problem}",
        hint="Set ImportLineNumber to the ImportAuthorization line that authorizes this substance in this form, "
        "with the same base conversion factor and at most its gross quantity.",
    ),
    Rule(
        id="EA-009",
        severity="error",
        applies_to=_EA,
        check=x.within_remaining_quantity,
        needs="context",
        basis="1961 Art. 31(4)(d); BR-08",
        message="line(s) {lines} export {total} g base against line {ia_line} of ImportAuthorization {number}, "
        "which has {remaining} g left",
        hint="Reduce the quantity to at most {remaining} g base, or ask the importer for a further "
        "ImportAuthorization.",
    ),
    Rule(
        id="EA-010",
        severity="error",
        applies_to=_EA,
        check=x.consignments_allowed,
        needs="context",
        basis="1961 Art. 31(4)(d); BR-08",
        message="ImportAuthorization {number} allows a single consignment, and {others} already drew on it",
        hint="Export the rest under a new ImportAuthorization, or have the importing authority amend "
        "{number} to allow several consignments.",
    ),
    Rule(
        id="EA-011",
        severity="error",
        applies_to=_EA,
        check=x.export_within_import_start,
        needs="context",
        basis="BR-09",
        message="{name} {date} is before ImportAuthorization {number} becomes valid ({ia_from})",
        hint="Issue the ExportAuthorization, and start its validity, on or after {ia_from}.",
    ),
    Rule(
        id="EA-012",
        severity="warning",
        applies_to=_EA,
        check=c.exported_without_import_authorization,
        basis="1961 Art. 31(5); INCB emergency procedure (2020); letter of exemption (UK practice); BR-05",
        message="the export is authorized without an ImportAuthorization, {path}; the ImportAuthorization "
        "checks (X-023, X-024, EA-002 to EA-011) were not run, and the gateway cannot check the {what}: the "
        "competent authority of the importing country {importing} should confirm it",
        hint="Have the competent authority of {importing} confirm the {what} before relying on this "
        "ExportAuthorization, and report an emergency delivery to INCB; when an ImportAuthorization exists, "
        "reference it instead.",
    ),
    Rule(
        id="EA-013",
        severity="error",
        applies_to=_EA,
        check=c.exemption_from_importing_authority,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); letter of exemption (UK practice); BR-05",
        message="the letter of exemption {number} in ExemptionReference was issued by {authority}, not by the "
        "competent authority of the importing country {importing}; only that authority can say an import "
        "needs no ImportAuthorization",
        hint="Reference the letter of exemption of {importing}'s competent authority (IssuingAuthority with "
        "CountryCode {importing} and its AuthorityId, {importing}-...), or the ImportAuthorization of {importing} "
        "in ImportAuthorizationReference.",
    ),
    Rule(
        id="EA-014",
        severity="error",
        applies_to=_EA,
        check=c.exemption_dated_before_export,
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); letter of exemption (UK practice); BR-05",
        message="the letter of exemption {number} is dated {letter_date}, after this ExportAuthorization's issue "
        "date {ea_date}",
        hint="Correct the ExemptionReference's IssueDate to the letter's real date; an ExportAuthorization can only "
        "be issued against a letter that exists.",
    ),
    # ExportExecution
    Rule(
        id="EX-001",
        severity="error",
        applies_to=_EX,
        check=c.execution_of_own_export,
        basis="1961 Art. 31(7)",
        message="ExportAuthorization {number} was issued in {country}; an ExportExecution records an export "
        "under the issuing country's ({issuing}) own ExportAuthorization",
        hint="Reference an ExportAuthorization of {issuing}, or have {country}'s authority report the export.",
    ),
    Rule(
        id="EX-002",
        severity="error",
        applies_to=_EX,
        check=c.event_not_after_issue,
        basis="1961 Art. 31(7)",
        message="{name} {date} is after the IssueDate {issue_date}: an execution reports a shipment that has left",
        hint="Send the ExportExecution once the goods have been dispatched, with the real dispatch date.",
    ),
    Rule(
        id="EX-003",
        severity="error",
        applies_to=_EX,
        check=x.lines_match_export,
        needs="context",
        basis="1961 Art. 31(7)",
        message="line {line} reports on line {ref_line} of {type} {number}, which {problem}",
        hint="Set ExportLineNumber to the ExportAuthorization line the goods were shipped under.",
    ),
    Rule(
        id="EX-004",
        severity="error",
        applies_to=_EX,
        check=x.shipped_within_authorized,
        needs="context",
        basis="1961 Art. 31(7); UK practice (shipping less than licensed is allowed, more is not)",
        message="line(s) {lines} report {total} g base shipped on line {ref_line} of ExportAuthorization "
        "{number}, which authorizes {limit} g; its other ExportExecutions already report {before} g",
        hint="Correct the quantity; shipping more than authorized needs a new ExportAuthorization.",
    ),
    Rule(
        id="EX-005",
        severity="error",
        applies_to=_EX,
        check=x.dispatched_within_export_validity,
        needs="context",
        basis=f"{_ART_31}",
        message="DispatchDate {date} is outside the validity of ExportAuthorization {number} ({start} to {end})",
        hint="Correct DispatchDate; goods dispatched outside the period were exported without authorization.",
    ),
    # ImportEndorsement
    Rule(
        id="EN-001",
        severity="error",
        applies_to=_EN,
        check=c.endorsement_references_match_countries,
        basis=_ENDORSEMENT,
        message="{role} {number} was issued in {country}, not in the {side} country {expected}",
        hint="Reference the ExportAuthorization of the exporting country and the ImportAuthorization of the "
        "importing country of this trade.",
    ),
    Rule(
        id="EN-002",
        severity="error",
        applies_to=_EN,
        check=c.event_not_after_issue,
        basis=_ENDORSEMENT,
        message="{name} {date} is after the IssueDate {issue_date}: the endorsement certifies an import "
        "that has taken place",
        hint="Endorse once the goods have arrived, with the real date of receipt.",
    ),
    Rule(
        id="EN-003",
        severity="error",
        applies_to=_EN,
        check=x.lines_match_export,
        needs="context",
        basis=_ENDORSEMENT,
        message="line {line} endorses line {ref_line} of {type} {number}, which {problem}",
        hint="Set ExportLineNumber to the ExportAuthorization line the goods arrived under.",
    ),
    Rule(
        id="EN-004",
        severity="error",
        applies_to=_EN,
        check=x.endorsed_within_exported,
        needs="context",
        basis=f"{_ENDORSEMENT}; BR-16",
        message="line(s) {lines} endorse {total} g base received on line {ref_line} of ExportAuthorization "
        "{number}, which exported {limit} g",
        hint="Endorse the quantity actually received; if more arrived than was exported, declare it with a "
        "Discrepancy of Code overReceipt.",
    ),
    Rule(
        id="EN-008",
        severity="warning",
        applies_to=_EN,
        check=x.over_receipt_declared,
        needs="context",
        basis=f"{_ENDORSEMENT}; BR-16 (allowed, raises discrepancy OVER_RECEIPT)",
        message="line(s) {lines} endorse {total} g base received on line {ref_line} of ExportAuthorization "
        "{number}, which exported {limit} g: over-receipt, as the endorsement's Discrepancy declares",
        hint="Both authorities should investigate where the surplus came from.",
    ),
    Rule(
        id="EN-005",
        severity="error",
        applies_to=_EN,
        check=x.endorsed_once,
        needs="context",
        basis=f"{_ENDORSEMENT}; BR-16",
        message="ExportAuthorization {number} is already endorsed ({others})",
        hint="Send one endorsement per ExportAuthorization; to correct it, cancel the earlier one first.",
    ),
    Rule(
        id="EN-006",
        severity="error",
        applies_to=_EN,
        check=x.endorsement_names_the_export_import,
        needs="context",
        basis=_ENDORSEMENT,
        message="the endorsement names ImportAuthorization {stated}, but ExportAuthorization {number} was "
        "issued against {known}",
        hint="Reference ImportAuthorization {known}.",
    ),
    Rule(
        id="EN-010",
        severity="error",
        applies_to=_EN,
        check=x.endorsement_names_an_import_when_the_export_did,
        needs="context",
        basis=f"{_ENDORSEMENT}; 1961 Art. 31(4)(c)",
        message="the endorsement names no ImportAuthorization, but ExportAuthorization {number} was issued "
        "against ImportAuthorization {known} of {country}",
        hint="Add ImportAuthorizationReference naming ImportAuthorization {known} (issued {date} by {authority}) "
        "after ExportAuthorizationReference; only the endorsement of an export without one (an emergency delivery "
        "or one under a letter of exemption) leaves it out.",
    ),
    Rule(
        id="EN-007",
        severity="error",
        applies_to=_EN,
        check=c.received_after_export_issue,
        basis=f"{_ENDORSEMENT}; BR-09",
        message="DateOfReceipt {date} is before ExportAuthorization {number} was issued ({ea_date})",
        hint="Give the real date the goods arrived: on or after {ea_date}, as they can only be shipped under "
        "an issued ExportAuthorization.",
    ),
    Rule(
        id="EN-009",
        severity="error",
        applies_to=_EN,
        check=x.received_after_dispatch,
        needs="context",
        basis=f"{_ENDORSEMENT}; BR-09 carried to the execution (goods arrive after they leave)",
        message="DateOfReceipt {date} is before the goods were dispatched under ExportAuthorization {number} "
        "on {dispatch_date}",
        hint="Give the real date the goods arrived: on or after {dispatch_date}, the DispatchDate of its earliest "
        "ExportExecution; if that date is wrong, the exporting country cancels the execution and sends a "
        "corrected one.",
    ),
    # Amendment
    Rule(
        id="AM-001",
        severity="error",
        applies_to=_AM,
        check=c.replacement_is_the_amended_document,
        basis="BR-14",
        message="the replacement is {type} {number}, but the amendment is for {ref_type} {ref_number}",
        hint="Put the whole amended {ref_type} {ref_number} in Replacement, with its number unchanged.",
    ),
    Rule(
        id="AM-002",
        severity="error",
        applies_to=_AM,
        check=c.amended_by_its_issuer,
        basis="BR-14, BR-15",
        message="{what} was issued by {authority}, but this amendment by {issuer}",
        hint="Only the authority that issued a document may amend it; ask {authority}.",
    ),
    Rule(
        id="AM-003",
        severity="error",
        applies_to=_AM,
        check=c.replacement_keeps_the_trade,
        basis="BR-14",
        message="the replacement's {name} is {replacement}, the amendment's {amendment}",
        hint="An amendment changes a document, not the trade: keep both countries, or issue a new document.",
    ),
    Rule(
        id="AM-004",
        severity="error",
        applies_to=_AM,
        check=x.amended_document_open,
        needs="context",
        basis="BR-14",
        message="{number} is {status} as of {date}; only open documents can be amended",
        hint="Issue a new document instead of amending one that has expired, been used up or been endorsed.",
    ),
    Rule(
        id="AM-005",
        severity="error",
        applies_to=_AM,
        check=x.amendment_keeps_what_was_exported,
        needs="context",
        basis="1961 Art. 31(4)(d); BR-08, BR-14",
        message="line {line} of {number} would authorize {kept} g base, but {drawn} g have already been "
        "exported against it",
        hint="Keep at least {drawn} g base on line {line}.",
    ),
    Rule(
        id="AM-006",
        severity="error",
        applies_to=_AM,
        check=x.version_increases,
        needs="context",
        basis="BR-14",
        message="Version {version} is not above the current version {current} of {number}",
        hint="Number the amendment {next}; the original document is version 1.",
    ),
    Rule(
        id="AM-007",
        severity="error",
        applies_to=_AM,
        check=c.replacement_keeps_the_issue_date,
        basis="BR-14",
        message="the replacement is dated {replacement}, but the amended document was issued on {amended}",
        hint="Keep the amended document's IssueDate ({amended}) in Replacement; the Amendment's own IssueDate "
        "says when it was amended.",
    ),
    Rule(
        id="AM-008",
        severity="error",
        applies_to=_AM,
        check=x.replacement_keeps_the_amended_trade,
        needs="context",
        basis="BR-14",
        message="the replacement's {name} is {replacement}, but {number}'s is {amended}",
        hint="An amendment changes a document, not the trade: keep {name} {amended}, or issue a new document.",
    ),
    # Cancellation
    Rule(
        id="CA-001",
        severity="error",
        applies_to=_CA,
        check=c.cancelled_by_its_issuer,
        basis="BR-15",
        message="{number} was issued by {authority}; {issuer} cannot cancel it",
        hint="Only the issuing authority cancels a document; ask {authority} to.",
    ),
    Rule(
        id="CA-002",
        severity="warning",
        applies_to=_CA,
        check=x.cancelled_without_live_exports,
        needs="context",
        basis="BR-15",
        message="ExportAuthorizations were issued against ImportAuthorization {number}: {exports}",
        hint="Tell their issuing authorities that {number} is cancelled, so that they revoke them.",
    ),
    # ExportDeclaration
    Rule(
        id="ED-001",
        severity="error",
        applies_to=_ED,
        check=c.declared_within_90_days,
        basis="1971 Art. 12(2)(c); BR-19",
        message="the declaration is issued {days} days after despatch ({despatch}); the treaty allows 90",
        hint="Send export declarations to the importing country as soon as possible after despatch, and no "
        "later than 90 days after it.",
    ),
    Rule(
        id="ED-002",
        severity="error",
        applies_to=_ED,
        check=x.declaration_allowed_by_importing_country,
        needs="context",
        basis="ECOSOC 1985/15, 1991/44; E/INCB/1993/3; BR-03",
        message="line {line}: {country} requires an import authorization for {treaty} Schedule {schedule}",
        hint="Issue an ExportAuthorization against {country}'s ImportAuthorization instead of a declaration.",
    ),
    # PreExportNotification and its response
    Rule(
        id="PN-001",
        severity="error",
        applies_to=_PN,
        check=c.notified_before_dispatch,
        basis="1988 Art. 12(10)(a)",
        message="ExpectedDispatchDate {dispatch} is before the notification's IssueDate {issue_date}",
        hint="Notify before the export: the importing country needs time to object.",
    ),
    Rule(
        id="PR-001",
        severity="error",
        applies_to=_PR,
        check=c.objection_has_reason,
        basis="1988 Art. 12(10); PEN Online practice",
        message="Decision {decision} has no Reason",
        hint="Say why: the exporting authority acts on the reason (stop the shipment, send information).",
    ),
    Rule(
        id="PR-002",
        severity="error",
        applies_to=_PR,
        check=c.response_to_exporting_country,
        basis="1988 Art. 12(10)(a)",
        message="the notification {number} was issued in {country}, not in the exporting country {exporting}",
        hint="Answer the PreExportNotification of the exporting country of this trade.",
    ),
    # Acknowledgement
    Rule(
        id="AK-001",
        severity="error",
        applies_to=_AK,
        check=c.status_agrees_with_findings,
        basis="gateway acknowledgement protocol",
        message="Status is {status}, but the findings ({counts}) make it {expected}",
        hint="Rejected needs an error finding, acceptedWithWarnings a warning and no error, accepted neither.",
    ),
    Rule(
        id="AK-002",
        severity="error",
        applies_to=_AK,
        check=c.acknowledges_a_foreign_document,
        basis="gateway acknowledgement protocol",
        message="{number} was issued in {country}, the acknowledging country itself",
        hint="Acknowledge documents received from the other country of the trade.",
    ),
    # Common rules
    Rule(
        id="X-001",
        severity="error",
        applies_to=_ALL,
        check=c.countries_exist,
        basis="ISO 3166-1; BR-18",
        message="{code} is not an ISO 3166-1 alpha-2 country code",
        hint="Use the two-letter code from the countries reference table (GB for the United Kingdom, CH for "
        "Switzerland).",
    ),
    Rule(
        id="X-002",
        severity="error",
        applies_to=_ALL,
        check=c.trade_crosses_border,
        basis="1961 Art. 31(4)(a); 1971 Art. 12(1)(a); BR-18",
        message="ImportingCountry and ExportingCountry are both {country}; permits cover international trade",
        hint="Set ExportingCountry to the country the goods leave from; domestic transfers need no permit "
        "exchange.",
    ),
    Rule(
        id="X-003",
        severity="error",
        applies_to=_AUTHORIZATIONS,
        check=c.validity_ordered,
        basis=_ART_31,
        message="ValidUntil {valid_until} is before ValidFrom {valid_from}",
        hint="Swap or correct the dates so that ValidFrom <= ValidUntil.",
    ),
    Rule(
        id="X-004",
        severity="error",
        applies_to=_AUTHORIZATIONS,
        check=c.issued_before_validity_ends,
        basis=_ART_31,
        message="IssueDate {issue_date} is after ValidUntil {valid_until}: the document would be born expired",
        hint="Correct IssueDate, or extend ValidUntil to the period the import or export may take place in.",
    ),
    Rule(
        id="X-005",
        severity="error",
        applies_to=_WITH_PARTIES,
        check=c.parties_in_their_countries,
        basis="1961 Art. 31(4)(b); BR-18",
        message="the {role}'s address is in {country}, but the document says the {role} trades from {expected}",
        hint="Correct the {role}'s Address/CountryCode, or the document's ImportingCountry/ExportingCountry.",
    ),
    Rule(
        id="X-006",
        severity="error",
        applies_to=_WITH_LINES,
        check=c.quantities_positive,
        basis=_ART_31,
        message="line {line}: {name} is {value}; it must be {least}",
        hint="Enter the quantity authorized or actually moved; remove the line if nothing of this substance "
        "is traded.",
    ),
    Rule(
        id="X-007",
        severity="error",
        applies_to=_WITH_BASE,
        check=c.base_quantity_matches,
        basis="BR-13; pure base content as in the INCB Yellow and Green Lists",
        message="line {line}: BaseQuantityGrams is {declared}, but {gross} {unit} x {factor} = {expected} g",
        hint="Recompute BaseQuantityGrams as gross quantity in grams x BaseConversionFactor (tolerance "
        "0.001 g), or correct the gross quantity or factor.",
    ),
    Rule(
        id="X-008",
        severity="warning",
        applies_to=_WITH_BASE,
        check=c.base_quantity_not_recomputable,
        basis="BR-13",
        message="line {line}: the gross quantity is in {unit}, a {kind} unit, so BaseQuantityGrams cannot be "
        "recomputed",
        hint="State the gross quantity in a mass unit (KGM, GRM, MGM) where possible; otherwise check "
        "BaseQuantityGrams against the strength by hand.",
    ),
    Rule(
        id="X-009",
        severity="error",
        applies_to=_WITH_LINES,
        check=c.unit_known,
        basis="UN/ECE Recommendation 20",
        message="line {line}: unit code {unit} is not one the gateway accepts",
        hint="Use one of the UN/ECE Rec. 20 codes {known}.",
    ),
    Rule(
        id="X-010",
        severity="error",
        applies_to=_WITH_LINES,
        check=c.substance_known,
        basis=f"BR-02; {_LISTS}",
        message="line {line}: SubstanceId '{id}' is not a substance id in the gateway's reference list",
        hint="Use the id of the substance in the substances reference table{suggestion}; ids are the names "
        "in lower case with hyphens.",
    ),
    Rule(
        id="X-011",
        severity="error",
        applies_to=_WITH_LINES,
        check=c.substance_data_agrees,
        basis=f"{_ART_31}; BR-02; {_LISTS}",
        message="line {line}: {name} is '{declared}', but the reference list has '{expected}' for {id}",
        hint="Write {name} as '{expected}', or check that SubstanceId names the intended substance.",
    ),
    Rule(
        id="X-012",
        severity="error",
        applies_to=_WITH_LINES,
        check=c.substance_fits_document,
        basis="1961 Art. 31; 1971 Art. 12; 1988 Art. 12(10); BR-03",
        message="line {line}: {name} is a {treaty} Convention substance ({schedule}); {type} documents cover "
        "{covers}",
        hint="For this substance, {instead}.",
    ),
    Rule(
        id="X-013",
        severity="warning",
        applies_to=_WITH_PARTIES,
        check=c.licence_present,
        basis="1961 Art. 31(3)",
        message="the {role} is an enterprise but has no NationalLicenceNumber",
        hint="Add the {role}'s national licence or registration number; persons and enterprises in the "
        "trade must be licensed.",
    ),
    Rule(
        id="X-014",
        severity="error",
        applies_to=_ALL,
        check=c.not_issued_in_future,
        needs="as_of",
        basis="gateway policy; BR-09",
        message="IssueDate {issue_date} is after today ({as_of} UTC) in every time zone (at the latest {latest})",
        hint="Correct IssueDate; a competent authority cannot issue a document in the future (check the "
        "sending system's clock).",
    ),
    Rule(
        id="X-015",
        severity="warning",
        applies_to=_AUTHORIZATIONS,
        check=c.not_expired,
        needs="as_of",
        basis=_ART_31,
        message="the document expired on {valid_until} (today is {as_of})",
        hint="No import or export may take place under it any more; ask the issuer for a new document if "
        "the trade is still to happen.",
    ),
    Rule(
        id="X-016",
        severity="error",
        applies_to=_NOT_IA_OR_EA,
        check=c.issuer_on_its_side,
        basis="1961 Art. 31(7); 1971 Art. 12; 1988 Art. 12(10)",
        message="the issuing authority is in {issuing}, but a {type} is issued by {who} country",
        hint="Have the competent authority of {expected} issue it, or correct ImportingCountry or "
        "ExportingCountry.",
    ),
    Rule(
        id="X-017",
        severity="error",
        applies_to=_TREATY_LINES,
        check=c.pharmaceutical_form_given,
        basis="1971 Art. 12(1)(b), 12(2)(a)",
        message="line {line} is a 1971 substance without a PharmaceuticalForm",
        hint="Add PharmaceuticalForm (tablets, powder, solution for injection...) before GrossQuantity.",
    ),
    Rule(
        id="X-018",
        severity="error",
        applies_to=_TREATY_LINES,
        check=c.preparation_named,
        basis="1971 Art. 12(1)(b), 12(2)(a)",
        message="line {line} is a preparation of a 1971 substance without a PreparationName",
        hint="Add the preparation's name (PreparationName) before PharmaceuticalForm.",
    ),
    Rule(
        id="X-019",
        severity="error",
        applies_to=_WITH_BASE,
        check=c.factor_matches_reference,
        basis="BR-13; pure base content as in the INCB Yellow and Green Lists",
        message="line {line}: BaseConversionFactor is {declared}, but the verified factor for {form} of {id} "
        "is {expected}",
        hint="Use {expected} and recompute BaseQuantityGrams, or name the salt actually traded in SaltOrBaseForm.",
    ),
    Rule(
        id="X-020",
        severity="warning",
        applies_to=_WITH_BASE,
        check=c.factor_not_checked,
        basis="BR-13",
        message="line {line}: the factor {factor} for {form} could not be checked: it {why}; the "
        "document's own factor was used",
        hint="Check the factor against the current INCB Yellow or Green List. The verified factors are the "
        "gateway's reference table base-factors.csv (gateway/documents/data/), which comes with a gateway "
        "release: no setting replaces it in a running gateway; 'permit-gateway validate --reference DIR' checks "
        "against a newer copy offline.",
    ),
    Rule(
        id="X-031",
        severity="warning",
        applies_to=_WITH_BASE,
        check=c.factor_departs_from_unverified_row,
        basis="BR-13; base-factors.csv (row not yet verified against the INCB lists)",
        message="line {line}: BaseConversionFactor is {declared}, far from the factor {expected} the reference "
        "table gives {form} (not verified); the document's own factor was used",
        hint="Check the factor and the salt named in SaltOrBaseForm against the current INCB Yellow or Green "
        "List; a wrong factor misstates the base quantity.",
    ),
    Rule(
        id="X-021",
        severity="warning",
        applies_to=_AUTHORIZATIONS,
        check=c.validity_within_national_limit,
        basis="BR-21; national law as in validity-limits.csv",
        message="valid from {valid_from} to {valid_until}: longer than the {months} months {country} allows "
        "({basis})",
        hint="End the validity on or before {latest}. If the law changed, the gateway's reference table "
        "validity-limits.csv (gateway/documents/data/) needs the change in a gateway release: no setting "
        "replaces it in a running gateway; 'permit-gateway validate --reference DIR' checks against a corrected "
        "copy offline.",
    ),
    Rule(
        id="X-022",
        severity="error",
        applies_to=_ALL,
        check=x.number_not_taken,
        needs="context",
        basis="BR-04",
        message="{country} already issued a different {type} numbered {number}",
        hint="If this is the same permit, it was changed on its way (its encoding, line ends or content differ "
        "from the one kept): send the original bytes again. If it is a different permit, give it a new number; "
        "to change an issued document, send an Amendment.",
    ),
    Rule(
        id="X-023",
        severity="error",
        applies_to=_REFERRING,
        check=x.reference_known,
        needs="context",
        basis="1961 Art. 31(5); 1971 Art. 12(1)(c); BR-05",
        message="{type} {number} of {country} is not known to this gateway",
        hint="Check the number and issuing country; the referenced document must have been exchanged "
        "through the gateway first. An ExportAuthorization for an emergency delivery without an "
        "ImportAuthorization leaves ImportAuthorizationReference out and gives EmergencyDelivery and its Reason.",
    ),
    Rule(
        id="X-024",
        severity="error",
        applies_to=_REFERRING,
        check=x.reference_agrees,
        needs="context",
        basis="1961 Art. 31(4)(c); 1971 Art. 12(1)(b); ECOSOC 1981/7 (authenticity)",
        message="the reference to {number} gives {name} {stated}, but the document has {known}",
        hint="Copy {name} from document {number} itself; a mismatch may mean a forged or misread document.",
    ),
    Rule(
        id="X-025",
        severity="error",
        applies_to=_EA | _EX | _EN | _AM | _CA,
        check=x.reference_not_cancelled,
        needs="context",
        basis="BR-05, BR-15",
        message="{type} {number} is cancelled as of {date}",
        hint="A cancelled document cannot be used, amended or cancelled again; refer to its replacement.",
    ),
    Rule(
        id="X-026",
        severity="error",
        applies_to=_AUTHORIZATIONS,
        check=x.estimate_exceeded,
        needs="context",
        basis="1961 Arts. 19, 21, 31(1)(b); ECOSOC 1981/7 (assessments); BR-10",
        message="{country}'s {year} {kind} for {id} is {estimate} g; with {before} g already on other {type}s, "
        "this one's {this} g exceeds it",
        hint="Ask {country} to furnish a supplementary {kind} to INCB, or mark an urgent delivery with "
        "EmergencyDelivery and its reason.",
    ),
    Rule(
        id="X-027",
        severity="warning",
        applies_to=_AUTHORIZATIONS,
        check=x.estimate_exceeded_in_emergency,
        needs="context",
        basis="INCB emergency procedure (2020); 1961 Art. 21(4)",
        message="{country}'s {year} {kind} for {id} ({estimate} g) is exceeded ({before} g + {this} g), let "
        "through as an emergency delivery: {reason}",
        hint="Report the delivery to INCB; the {kind} needs a supplement.",
    ),
    Rule(
        id="X-028",
        severity="warning",
        applies_to=_AUTHORIZATIONS,
        check=x.estimate_known,
        needs="context",
        basis="1961 Art. 19; ECOSOC 1981/7; BR-10",
        message="no {year} estimate or assessment of {country} for {id} is in the estimates table, so it "
        "was not checked",
        hint="The administrator adds the current INCB figure to estimates.csv in the folder [documents].tables "
        "names (a running gateway re-reads it within [profiles].poll_seconds of a saved change, no restart; "
        "format in examples/context/estimates.csv), or passes it to "
        "'permit-gateway validate --context'.",
    ),
    Rule(
        id="X-029",
        severity="error",
        applies_to=_EA | _ED,
        check=x.import_not_prohibited,
        needs="context",
        basis="1971 Art. 13; Green List Part three; BR-11",
        message="line {line}: {country} prohibits the import of {id}{since} ({reference})",
        hint="No export of this substance to {country} may be authorized.",
    ),
    Rule(
        id="X-030",
        severity="error",
        applies_to=_ALL,
        check=c.authority_ids_name_their_country,
        basis="AuthorityIdType in schemas/xsd/permits/components.xsd; BR-15",
        message="AuthorityId {authority} does not start with its CountryCode {country}",
        hint="Write the authority's registry id, which starts with its country ({country}-...), or correct "
        "the CountryCode next to it.",
    ),
    Rule(
        id="X-032",
        severity="error",
        applies_to=_AUTHORIZATIONS,
        check=c.estimate_year_near_issue,
        basis="1961 Arts. 12, 19 (annual estimates, Form B due 30 June of the year before); BR-10",
        message="EstimateYear {year} is neither the issue year {first} nor the next year {second}",
        hint="Give EstimateYear {first} or {second}, the year the import counts against, or leave it out "
        "for {first}.",
    ),
    Rule(
        id="X-033",
        severity="error",
        applies_to=_ALL - _AM,
        check=c.names_have_letters,
        basis="1961 Art. 31(4)(b); 1971 Art. 12(1)(b) (names of the drug and the parties); BR-18",
        message="{name} is {text}: it has no letter or digit",
        hint="Write the {name} out; blanks and invisible characters name nothing.",
    ),
    Rule(
        id="X-034",
        severity="error",
        applies_to=_AUTHORIZATIONS,
        check=c.schedule_i_between_authorized_parties,
        basis="1971 Art. 7(f); BR-22",
        message="line(s) {lines} trade {ids}, a 1971 Schedule I substance, but the {role}'s Category is "
        "{category}: Schedule I goes only between competent authorities and parties they specially authorize",
        hint="Set the {role}'s Category to authority, or laboratory for a party the competent authority "
        "specially authorized under 1971 Art. 7; otherwise this trade cannot be authorized.",
    ),
    Rule(
        id="X-035",
        severity="warning",
        applies_to=_AUTHORIZATIONS,
        check=c.re_export_not_counted,
        basis="1961 Art. 31(1)(b) (imports limited to the estimates plus the amounts for re-export); BR-10",
        message="line {line}: {grams} g base of {id} are for re-export (Purpose reExport), so they are not "
        "counted against {country}'s estimate or assessment",
        hint="Make sure the goods are re-exported: each re-export needs its own ExportAuthorization from "
        "{country}, against the next importing country's ImportAuthorization.",
    ),
)
