from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

import pytest

from gateway.documents import (
    PERMITS_NAMESPACE,
    DocumentReference,
    DocumentType,
    Finding,
    InMemoryContext,
    Party,
    PermitDocumentRejected,
    PermitLine,
    validate_document,
    validation_report,
)
from gateway.errors import DocumentRejected
from tests.documents.conftest import EXAMPLES


def rejected(
    data: bytes, as_of: date | None = None, context: InMemoryContext | None = None
) -> PermitDocumentRejected:
    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(data, as_of=as_of, context=context)
    return info.value


def rules(findings: Iterable[Finding], *severities: str) -> list[str]:
    """Rule ids in report order, of the given severities (errors and warnings when none is given)."""
    wanted = severities or ("error", "warning")
    return [f.rule for f in findings if f.severity in wanted]


def test_import_authorization_example(ia_bytes: bytes, as_of: date) -> None:
    doc = validate_document(ia_bytes, as_of=as_of)
    assert doc.document_type is DocumentType.IMPORT_AUTHORIZATION
    assert (doc.number, doc.issue_date) == ("BE-IA-2026-0001", date(2026, 11, 10))
    assert (doc.issuing_country, doc.issuing_authority) == ("BE", "BE-FAMHP")
    assert (doc.importing_country, doc.exporting_country) == ("BE", "CH")
    assert (doc.valid_from, doc.valid_until) == (date(2026, 11, 10), date(2027, 2, 9))
    assert doc.import_authorization_ref is None
    assert doc.lines == (
        PermitLine(
            line_number=1,
            substance_id="morphine",
            inn="morphine",
            base_quantity_grams=Decimal("3760.000"),
            gross_quantity=Decimal(5),
            unit_code="KGM",
        ),
        PermitLine(
            line_number=2,
            substance_id="codeine",
            inn="codeine",
            base_quantity_grams=Decimal("1474.000"),
            gross_quantity=Decimal(2),
            unit_code="KGM",
        ),
    )
    assert doc.importer == Party(
        name="Scheldepharma Manufacturing NV", country="BE", licence="BE-STUP-2024-0173", category="enterprise"
    )
    assert doc.multiple_consignments_allowed and doc.version == 1
    assert (doc.key, doc.counterpart_country) == (
        (DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001"),
        "CH",
    )
    assert rules(doc.findings) == ["X-020", "X-020"]


def test_export_authorization_example(ea_bytes: bytes, as_of: date) -> None:
    doc = validate_document(ea_bytes, as_of=as_of)
    assert doc.document_type is DocumentType.EXPORT_AUTHORIZATION
    assert (doc.number, doc.issuing_country, doc.issuing_authority) == ("CH-EA-2026-0001", "CH", "CH-SWISSMEDIC")
    assert (doc.importing_country, doc.exporting_country, doc.counterpart_country) == ("BE", "CH", "BE")
    assert doc.import_authorization_ref == DocumentReference(
        document_type=DocumentType.IMPORT_AUTHORIZATION,
        number="BE-IA-2026-0001",
        issue_date=date(2026, 11, 10),
        issuing_country="BE",
        issuing_authority="BE-FAMHP",
    )
    assert [(line.substance_id, line.base_quantity_grams, line.reference_line_number) for line in doc.lines] == [
        ("morphine", Decimal("1880"), 1)
    ]
    assert rules(doc.findings) == ["X-020"]


def test_without_a_context_the_report_says_which_rules_were_skipped(ea_bytes: bytes, as_of: date) -> None:
    (note,) = [f for f in validate_document(ea_bytes, as_of=as_of).findings if f.severity == "info"]
    assert note.rule == "CONTEXT" and "no document context" in note.message
    for rule_id in ("EA-009", "X-022", "X-023", "X-026", "X-029"):
        assert rule_id in note.message


def test_with_a_context_the_export_passes_the_cross_document_rules(
    ea_bytes: bytes, as_of: date, context: InMemoryContext, known_documents: dict[str, object]
) -> None:
    own = known_documents["CH-EA-2026-0001.xml"]
    doc = validate_document(ea_bytes, as_of=as_of, context=context.without(own))  # type: ignore[arg-type]
    assert rules(doc.findings, "error", "warning", "info") == ["X-020"]


def test_cross_document_rules_wait_for_the_document_to_be_right_in_itself(
    ea_bytes: bytes, as_of: date, context: InMemoryContext
) -> None:
    data = ea_bytes.replace(b"<ExportingCountry>CH<", b"<ExportingCountry>DE<").replace(
        b"<DocumentNumber>BE-IA-2026-0001<", b"<DocumentNumber>BE-IA-2026-0099<"
    )
    findings = rejected(data, as_of, context).findings
    assert rules(findings, "error") == ["EA-001", "X-005"]  # and not X-023 for the unknown BE-IA-2026-0099
    (note,) = [f for f in findings if f.severity == "info"]
    assert note.rule == "CONTEXT"
    assert "because the document has errors (EA-001, X-005); rules not run: EA-005," in note.message


def test_examples_are_current_on_their_as_of_date(as_of: date) -> None:
    for path in (EXAMPLES / "valid").glob("*.xml"):
        doc = validate_document(path.read_bytes(), as_of=as_of)
        assert doc.issue_date <= as_of, path.name
        assert doc.valid_until is None or as_of <= doc.valid_until, path.name


def test_rejection_is_a_document_rejected_listing_each_finding_on_its_own_line(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b">CH</ExportingCountry>", b">ch</ExportingCountry>").replace(
        b"<Category>enterprise</Category>", b"<Category>firm</Category>", 1
    )
    error = rejected(data)
    assert isinstance(error, DocumentRejected)
    lines = str(error).splitlines()
    assert lines[0] == "permit document rejected: 2 error(s), 0 warning(s)"
    assert lines[1:] == [f"  {f}" for f in error.findings]
    assert error.report is not None and not error.report.valid and error.report.number == "BE-IA-2026-0001"


def test_all_schema_errors_are_collected_with_line_path_and_hint(ia_bytes: bytes) -> None:
    data = (
        ia_bytes.replace(b"<Name>Scheldepharma Manufacturing NV</Name>", b"<Nme>Scheldepharma</Nme>")
        .replace(b">CH</ExportingCountry>", b">Swiss</ExportingCountry>")
        .replace(b"<LineNumber>2</LineNumber>", b"<LineNumber>1</LineNumber>")
        .replace(b'schemaVersion="1.0"', b"")
    )
    findings = rejected(data).findings
    assert [f.rule for f in findings] == ["XSD"] * 4
    by_path = {f.path: f for f in findings}
    assert set(by_path) == {
        "/ia:ImportAuthorization",
        "/ia:ImportAuthorization/ia:ExportingCountry",
        "/ia:ImportAuthorization/ia:Importer/ia:Nme",
        "/ia:ImportAuthorization/ia:SubstanceLine[2]",
    }
    nme = by_path["/ia:ImportAuthorization/ia:Importer/ia:Nme"]
    assert nme.line == data[: data.index(b"<Nme>")].count(b"\n") + 1
    assert "ia:Name" in nme.message and PERMITS_NAMESPACE not in nme.message
    assert all(f.hint and f.line for f in findings)
    assert "schemaVersion" in by_path["/ia:ImportAuthorization"].hint


def test_business_rules_are_not_run_on_a_schema_invalid_document(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b"<ImportingCountry>BE<", b"<ImportingCountry>nl<")
    assert {f.rule for f in rejected(data).findings} == {"XSD"}


def test_not_well_formed_document_reports_line_and_column(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b"<City>Mechelen</City>", b"<City>Mechelen</Cty>")
    line = data[: data.index(b"</Cty>")].count(b"\n") + 1
    (finding,) = rejected(data).findings
    assert finding.rule == "XML"
    # libxml2 points just past the mismatched end tag: 6 spaces + "<City>Mechelen</Cty>" is 26 characters.
    assert (finding.line, finding.column) == (line, 27)
    assert str(finding).startswith(f"line {line}, column 27: [XML] ")


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
        b'<ImportAuthorization xmlns="urn:permit-gateway:cs-permits:1">&lol2;</ImportAuthorization>',
        b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><ImportAuthorization/>',
        b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>',
    ],
    ids=["entity-expansion", "external-dtd", "external-entity"],
)
def test_doctype_and_entities_are_refused(data: bytes) -> None:
    (finding,) = rejected(data).findings
    assert finding.rule == "XML"
    assert "DOCTYPE" in finding.message or "DOCTYPE" in finding.hint


def test_unknown_root_names_the_namespace_and_known_types() -> None:
    (finding,) = rejected(b'<Invoice xmlns="urn:example:invoice"><Total>1</Total></Invoice>').findings
    assert finding.rule == "ROOT"
    assert finding.line == 1 and finding.path == "/Invoice"
    for expected in ("urn:example:invoice", PERMITS_NAMESPACE):
        assert expected in finding.message
    for expected in ("ImportAuthorization", "ExportAuthorization", "Acknowledgement", PERMITS_NAMESPACE):
        assert expected in finding.hint


def test_root_without_namespace_says_so(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b' xmlns="urn:permit-gateway:cs-permits:1"', b"")
    (finding,) = rejected(data).findings
    assert finding.rule == "ROOT" and "(none)" in finding.message


def test_warnings_come_back_on_the_document(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b"    <NationalLicenceNumber>CH-BETM-512-0098</NationalLicenceNumber>\n", b"").replace(
        b'<GrossQuantity unitCode="KGM">2</GrossQuantity>', b'<GrossQuantity unitCode="H87">2000</GrossQuantity>'
    )
    doc = validate_document(data, as_of=date(2027, 3, 1))
    assert rules(doc.findings) == ["X-013", "X-015", "X-020", "X-008", "X-020"]
    assert doc.findings[0].path == "/ia:ImportAuthorization/ia:Exporter"


def test_warnings_travel_with_the_errors(ia_bytes: bytes, as_of: date) -> None:
    data = ia_bytes.replace(
        b"    <NationalLicenceNumber>BE-STUP-2024-0173</NationalLicenceNumber>\n", b""
    ).replace(b"<ExportingCountry>CH<", b"<ExportingCountry>BE<")
    findings = rejected(data, as_of).findings
    assert {(f.rule, f.severity) for f in findings} == {
        ("X-002", "error"),
        ("X-005", "error"),
        ("X-013", "warning"),
        ("X-020", "warning"),
        ("CONTEXT", "info"),
    }


def test_without_as_of_the_date_rules_are_not_run_and_the_report_says_so(ia_bytes: bytes) -> None:
    future = ia_bytes.replace(b"<IssueDate>2026-11-10</IssueDate>", b"<IssueDate>2026-12-15</IssueDate>").replace(
        b"<ValidFrom>2026-11-10</ValidFrom>", b"<ValidFrom>2026-12-15</ValidFrom>"
    )
    findings = validate_document(future).findings
    assert rules(findings, "error") == []
    (note,) = [f for f in findings if f.rule == "AS-OF"]
    assert note.severity == "info" and "X-014" in note.message and "X-015" in note.message
    assert rules(rejected(future, date(2026, 11, 26)).findings, "error") == ["X-014"]


def test_values_split_by_comments_are_read_whole(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b">BE-IA-2026-0001<", b">BE-IA<!-- year -->-2026-0001<").replace(
        b"<ImportingCountry>BE<", b"<ImportingCountry>B<?pi?>E<"
    )
    doc = validate_document(data)
    assert (doc.number, doc.importing_country) == ("BE-IA-2026-0001", "BE")


def test_consignee_country_is_checked(ea_bytes: bytes) -> None:
    consignee = (
        b"  <Consignee>\n    <Name>Scheldepharma Warehouse</Name>\n    <Address>\n"
        b"      <StreetLine>Dok Noord 7</StreetLine>\n      <City>Gent</City>\n      <CountryCode>QQ</CountryCode>\n"
        b"    </Address>\n    <Category>enterprise</Category>\n  </Consignee>\n  <Validity>"
    )
    (finding,) = [
        f for f in rejected(ea_bytes.replace(b"  <Validity>", consignee)).findings if f.severity == "error"
    ]
    assert (finding.rule, finding.path) == (
        "X-001",
        "/ea:ExportAuthorization/ea:Consignee/ea:Address/ea:CountryCode",
    )


def test_base_quantity_tolerance_is_one_milligram(ia_bytes: bytes) -> None:
    within = ia_bytes.replace(b">3760.000<", b">3760.001<")
    beyond = ia_bytes.replace(b">3760.000<", b">3760.002<")
    assert rules(validate_document(within).findings, "error") == []
    assert rules(rejected(beyond).findings, "error") == ["X-007"]


def test_substance_alias_as_id_gets_the_real_id_suggested(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b"<SubstanceId>morphine</SubstanceId>", b"<SubstanceId>heroin</SubstanceId>")
    (finding,) = [f for f in rejected(data).findings if f.severity == "error"]
    assert finding.rule == "X-010" and "'diamorphine-heroin'" in finding.hint


def test_a_declared_base_must_use_factor_one_and_is_then_not_warned_about(ia_bytes: bytes) -> None:
    base = ia_bytes.replace(b"    <SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>\n", b"")
    assert rules(rejected(base).findings, "error") == ["X-019"]
    as_base = base.replace(b">0.7520<", b">1<").replace(b">3760.000<", b">5000<")
    assert rules(validate_document(as_base).findings) == ["X-020"]  # only the codeine salt is unchecked


def test_report_of_a_valid_document_reads_and_serialises(ia_bytes: bytes, as_of: date) -> None:
    report = validation_report(ia_bytes, as_of=as_of, source="BE-IA-2026-0001.xml")
    assert report.valid and report.document is not None and (report.errors, report.warnings) == (0, 2)
    assert report.rule_ids() == ("X-020",)
    assert report.to_text().splitlines()[0] == (
        "BE-IA-2026-0001.xml: valid: ImportAuthorization BE-IA-2026-0001 (0 error(s), 2 warning(s))"
    )
    data = report.to_json()
    assert data["valid"] is True and data["document_type"] == "ImportAuthorization"
    assert data["as_of"] == "2026-11-26" and data["context_used"] is False and data["rules"] == ["X-020"]
    assert "substances.csv" in data["reference_version"]
    assert [f["rule"] for f in data["findings"]] == ["X-020", "X-020", "CONTEXT"]


def test_report_of_an_unreadable_document_has_no_type_or_number() -> None:
    report = validation_report(b"<broken")
    assert not report.valid and (report.document_type, report.number) == (None, None)
    assert report.rule_ids() == ("XML",)


def test_validation_writes_nothing_to_stdout(
    ia_bytes: bytes, capsys: pytest.CaptureFixture[str], as_of: date, context: InMemoryContext
) -> None:
    validate_document(ia_bytes, as_of=as_of)
    validate_document(ia_bytes.replace(b"BE-IA-2026-0001", b"BE-IA-2026-0900"), as_of=as_of, context=context)
    with pytest.raises(PermitDocumentRejected):
        validate_document(b"<broken", as_of=as_of)
    assert capsys.readouterr() == ("", "")
