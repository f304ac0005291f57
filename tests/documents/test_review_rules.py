"""Rules a review found too weak: who may cancel or amend, what an amendment keeps, dates and quantities
across the documents of one trade."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.documents import (
    DocumentKey,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    ValidationReport,
    validate_document,
    validation_report,
)
from tests.documents.conftest import AS_OF, EXAMPLES, Without


def _example(name: str) -> str:
    return (EXAMPLES / "valid" / name).read_text()


def _replace(text: str, *pairs: tuple[str, str], count: int = -1) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, count)
    return text


def _errors(report: ValidationReport) -> set[str]:
    return {f.rule for f in report.findings if f.severity == "error"}


def _check(text: str, context: InMemoryContext) -> ValidationReport:
    return validation_report(text.encode(), as_of=AS_OF, context=context)


# 3. Only the issuer cancels or amends: its country counts, and an AuthorityId names its own country.


def _forged_cancellation() -> str:
    """Switzerland cancels Belgium's ImportAuthorization, writing Belgium's AuthorityId as its own."""
    return _replace(
        _example("DE-CA-2026-0003.xml"),
        ("DE-CA-2026-0003", "CH-CA-2026-0001"),
        ("DE-IA-2026-0417", "BE-IA-2026-0001"),
        ("<IssueDate>2026-11-16</IssueDate>", "<IssueDate>2026-11-10</IssueDate>"),
        ("<ImportingCountry>DE</ImportingCountry>", "<ImportingCountry>BE</ImportingCountry>"),
        ("<ExportingCountry>NL</ExportingCountry>", "<ExportingCountry>CH</ExportingCountry>"),
        ("<CountryCode>DE</CountryCode>", "<CountryCode>BE</CountryCode>"),
        ("DE-BFARM", "BE-FAMHP"),
    ).replace("<CountryCode>BE</CountryCode>", "<CountryCode>CH</CountryCode>", 1)


def test_a_cancellation_by_another_country_is_refused_whatever_authority_id_it_claims(without: Without) -> None:
    context = without("CH-EA-2026-0001", "CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001")
    report = _check(_forged_cancellation(), context)
    assert _errors(report) == {"CA-001", "X-030"}
    ca = next(f for f in report.findings if f.rule == "CA-001")
    assert "BE-FAMHP (BE)" in ca.message and "BE-FAMHP (CH)" in ca.message and ca.line


def test_an_authority_id_of_another_country_is_refused(ia_bytes: bytes) -> None:
    ia = ia_bytes.decode().replace(
        "<AuthorityId>BE-FAMHP</AuthorityId>", "<AuthorityId>CH-SWISSMEDIC</AuthorityId>"
    )
    report = validation_report(ia.encode(), as_of=AS_OF)
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "X-030" and finding.path and finding.path.endswith("ia:IssuingAuthority/ia:AuthorityId")
    assert "CH-SWISSMEDIC" in finding.message and "BE" in finding.message


def test_a_reference_whose_authority_id_is_of_another_country_is_refused(ea_bytes: bytes) -> None:
    lines = ea_bytes.decode().split("\n")
    at = next(n for n, line in enumerate(lines) if "<AuthorityId>BE-FAMHP</AuthorityId>" in line)
    lines[at] = lines[at].replace("BE-FAMHP", "FR-FAMHP")
    report = validation_report("\n".join(lines).encode(), as_of=AS_OF)
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [("X-030", at + 1)]


def test_an_amendment_whose_replacement_moves_to_another_country_is_refused(without: Without) -> None:
    lines = _example("DE-AM-2026-0009.xml").split("\n")
    assert "<CountryCode>DE</CountryCode>" in lines[28], lines[28]
    lines[28] = lines[28].replace("DE", "AT")  # the replacement's IssuingAuthority; its AuthorityId stays DE-BFARM
    report = _check("\n".join(lines), without("DE-AM-2026-0009", "DE-CA-2026-0003"))
    assert {"AM-002", "X-030"} <= _errors(report)


# 4. An amendment's replacement keeps the amended document's identity and trade (BR-14).


def test_an_amendment_cannot_move_the_amended_trade_to_another_country(without: Without) -> None:
    moved = _replace(
        _example("DE-AM-2026-0009.xml"),
        ("<ExportingCountry>NL</ExportingCountry>", "<ExportingCountry>FR</ExportingCountry>"),
        ("<CountryCode>NL</CountryCode>", "<CountryCode>FR</CountryCode>"),
    )
    report = _check(moved, without("DE-AM-2026-0009", "DE-CA-2026-0003"))
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "AM-008" and finding.path and finding.path.endswith("am:ExportingCountry")
    assert "FR" in finding.message and "DE-IA-2026-0417's is NL" in finding.message


def test_an_amendment_cannot_redate_the_amended_document(without: Without) -> None:
    lines = _example("DE-AM-2026-0009.xml").split("\n")
    assert lines[26].strip() == "<IssueDate>2026-11-16</IssueDate>", lines[26]
    lines[26] = lines[26].replace("2026-11-16", "2026-06-01")  # the replacement's own IssueDate
    report = _check("\n".join(lines), without("DE-AM-2026-0009", "DE-CA-2026-0003"))
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [("AM-007", 27)]


# 5. X-014 allows the issuer's local date: up to a day after the UTC date.


@pytest.mark.parametrize(("issue_date", "refused"), [("2026-11-27", False), ("2026-11-28", True)])
def test_an_issue_date_a_day_ahead_of_utc_is_the_issuers_today(
    ia_bytes: bytes, issue_date: str, refused: bool
) -> None:
    # Belgium at 00:30 CET on 27 November: the gateway's UTC date is still 26 November.
    ia = ia_bytes.decode().replace("2026-11-10", issue_date)
    report = validation_report(ia.encode(), as_of=AS_OF)
    assert _errors(report) == ({"X-014"} if refused else set())


# 6. BR-09: an ExportAuthorization starts within its ImportAuthorization's validity; a receipt follows the export.


def test_an_export_issued_and_valid_before_the_import_authorization_starts_is_refused(
    without: Without, ia_bytes: bytes, ea_bytes: bytes
) -> None:
    later = _replace(
        ia_bytes.decode(),
        ("<ValidFrom>2026-11-10</ValidFrom>", "<ValidFrom>2026-12-15</ValidFrom>"),
        ("<ValidUntil>2027-02-09</ValidUntil>", "<ValidUntil>2027-03-09</ValidUntil>"),
    )
    ia = validate_document(later.encode(), as_of=AS_OF)
    context = without(
        "BE-IA-2026-0001", "CH-EA-2026-0001", "CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001", extra=(ia,)
    )
    report = validation_report(ea_bytes, as_of=AS_OF, context=context)
    found = [(f.rule, f.path) for f in report.findings if f.severity == "error"]
    assert found == [
        ("EA-011", "/ea:ExportAuthorization/ea:IssueDate"),
        ("EA-011", "/ea:ExportAuthorization/ea:Validity/ea:ValidFrom"),
    ]
    assert all("2026-12-15" in f.message for f in report.findings if f.rule == "EA-011")


def test_an_endorsement_received_before_the_export_was_issued_is_refused(without: Without) -> None:
    early = _replace(
        _example("BE-EN-2026-0001.xml"),
        ("<DateOfReceipt>2026-11-26</DateOfReceipt>", "<DateOfReceipt>2026-01-02</DateOfReceipt>"),
    )
    report = _check(early, without("BE-EN-2026-0001", "BE-AK-2026-0001"))
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "EN-007" and "2026-01-02" in finding.message and "2026-11-24" in finding.message
    assert finding.path and finding.path.endswith("en:DateOfReceipt")


def test_an_endorsement_received_on_the_dispatch_day_passes(without: Without) -> None:
    same_day = _replace(
        _example("BE-EN-2026-0001.xml"),
        ("<DateOfReceipt>2026-11-26</DateOfReceipt>", "<DateOfReceipt>2026-11-25</DateOfReceipt>"),
    )
    assert _check(same_day, without("BE-EN-2026-0001", "BE-AK-2026-0001")).valid


# 7. BR-09, the other half: a receipt follows the dispatch its ExportExecution reports (EN-009).


def _received_on(day: str) -> str:
    return _replace(
        _example("BE-EN-2026-0001.xml"),
        ("<DateOfReceipt>2026-11-26</DateOfReceipt>", f"<DateOfReceipt>{day}</DateOfReceipt>"),
    )


def _execution(number: str, dispatched: str) -> PermitDocument:
    """CH-EX-2026-0001 renumbered, dispatched and issued on ``dispatched``."""
    text = _replace(
        _example("CH-EX-2026-0001.xml"),
        ("CH-EX-2026-0001", number),
        ("<IssueDate>2026-11-25</IssueDate>", f"<IssueDate>{dispatched}</IssueDate>"),
        ("<DispatchDate>2026-11-25</DispatchDate>", f"<DispatchDate>{dispatched}</DispatchDate>"),
    )
    return validate_document(text.encode(), as_of=AS_OF)


def _cancelled(execution: str) -> PermitDocument:
    text = _replace(
        _example("DE-CA-2026-0003.xml"),
        ("DE-CA-2026-0003", "CH-CA-2026-0001"),
        ("DE-IA-2026-0417", execution),
        ("<DocumentType>ImportAuthorization</DocumentType>", "<DocumentType>ExportExecution</DocumentType>"),
        ("<ImportingCountry>DE</ImportingCountry>", "<ImportingCountry>BE</ImportingCountry>"),
        ("<ExportingCountry>NL</ExportingCountry>", "<ExportingCountry>CH</ExportingCountry>"),
        ("<CountryCode>DE</CountryCode>", "<CountryCode>CH</CountryCode>"),
        ("DE-BFARM", "CH-SWISSMEDIC"),
        ("Federal Institute for Drugs and Medical Devices (BfArM), Federal Opium Agency", "Swissmedic"),
        ("<IssueDate>2026-11-16</IssueDate>", "<IssueDate>2026-11-25</IssueDate>"),
        ("<Reason>applicantRequest</Reason>", "<Reason>issuedInError</Reason>"),
    )
    return validate_document(text.encode(), as_of=AS_OF)


def test_an_endorsement_received_after_the_export_was_issued_but_before_its_dispatch_is_refused(
    without: Without,
) -> None:
    report = _check(_received_on("2026-11-24"), without("BE-EN-2026-0001", "BE-AK-2026-0001"))
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "EN-009" and finding.path and finding.path.endswith("en:DateOfReceipt")
    assert (
        "2026-11-24" in finding.message
        and "2026-11-25" in finding.message
        and "CH-EA-2026-0001" in finding.message
    )
    assert "on or after 2026-11-25" in finding.hint


def test_the_earliest_execution_counts(without: Without) -> None:
    context = without("BE-EN-2026-0001", "BE-AK-2026-0001", extra=(_execution("CH-EX-2026-0002", "2026-11-24"),))
    assert context.dispatch_date(_key("CH-EA-2026-0001")) == date(2026, 11, 24)
    assert _check(_received_on("2026-11-24"), context).valid


def test_without_an_execution_the_dispatch_rule_does_not_apply(without: Without) -> None:
    context = without("BE-EN-2026-0001", "BE-AK-2026-0001", "CH-EX-2026-0001")
    assert context.dispatch_date(_key("CH-EA-2026-0001")) is None
    assert _check(_received_on("2026-11-24"), context).valid


def test_a_cancelled_execution_dispatched_nothing(without: Without) -> None:
    cancellation = _cancelled("CH-EX-2026-0001")
    context = without("BE-EN-2026-0001", "BE-AK-2026-0001", extra=(cancellation,))
    assert context.dispatch_date(_key("CH-EA-2026-0001")) is None
    assert _check(_received_on("2026-11-24"), context).valid
    later = without(
        "BE-EN-2026-0001", "BE-AK-2026-0001", extra=(cancellation, _execution("CH-EX-2026-0002", "2026-11-26"))
    )
    assert later.dispatch_date(_key("CH-EA-2026-0001")) == date(2026, 11, 26), "the replacement's date"
    assert _errors(_check(_received_on("2026-11-25"), later)) == {"EN-009"}


def _key(number: str) -> DocumentKey:
    return DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", number)
