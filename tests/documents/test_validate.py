from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import (
    PERMITS_NAMESPACE,
    DocumentReference,
    DocumentType,
    PermitDocumentRejected,
    PermitLine,
    validate_document,
)
from gateway.errors import DocumentRejected
from tests.documents.conftest import EXAMPLES

INVALID = sorted((EXAMPLES / "invalid").glob("*.xml"))
RULE_IN_NAME = re.compile(r"^(?P<rule>[A-Z]+-\d{3}|[A-Z]+)-")


def rejected(data: bytes, as_of: date | None = None) -> PermitDocumentRejected:
    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(data, as_of=as_of)
    return info.value


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
            line_number=1, substance_id="morphine", inn="morphine", base_quantity_grams=Decimal("3760.000")
        ),
        PermitLine(line_number=2, substance_id="codeine", inn="codeine", base_quantity_grams=Decimal("1474.000")),
    )
    assert doc.findings == ()


def test_export_authorization_example(ea_bytes: bytes, as_of: date) -> None:
    doc = validate_document(ea_bytes, as_of=as_of)
    assert doc.document_type is DocumentType.EXPORT_AUTHORIZATION
    assert (doc.number, doc.issuing_country, doc.issuing_authority) == ("CH-EA-2026-0001", "CH", "CH-SWISSMEDIC")
    assert (doc.importing_country, doc.exporting_country) == ("BE", "CH")
    assert doc.import_authorization_ref == DocumentReference(
        number="BE-IA-2026-0001",
        issue_date=date(2026, 11, 10),
        issuing_country="BE",
        issuing_authority="BE-FAMHP",
    )
    assert [(line.substance_id, line.base_quantity_grams) for line in doc.lines] == [("morphine", Decimal("1880"))]
    assert doc.findings == ()


def test_export_stays_within_its_import_authorization(ia_bytes: bytes, ea_bytes: bytes, as_of: date) -> None:
    ia, ea = validate_document(ia_bytes, as_of=as_of), validate_document(ea_bytes, as_of=as_of)
    ref = ea.import_authorization_ref
    assert ref and (ref.number, ref.issue_date, ref.issuing_authority) == (
        ia.number,
        ia.issue_date,
        ia.issuing_authority,
    )
    ia_grams = {line.substance_id: line.base_quantity_grams for line in ia.lines}
    assert all(line.base_quantity_grams <= ia_grams[line.substance_id] for line in ea.lines)
    assert ia.valid_from <= ea.issue_date and ea.valid_until <= ia.valid_until


def test_examples_are_current_on_their_as_of_date(as_of: date) -> None:
    for path in (EXAMPLES / "valid").glob("*.xml"):
        doc = validate_document(path.read_bytes(), as_of=as_of)
        assert doc.issue_date <= as_of <= doc.valid_until, path.name


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example_breaks_exactly_its_rule(path: Path, as_of: date) -> None:
    match = RULE_IN_NAME.match(path.name)
    assert match, f"{path.name} does not start with a rule id"
    error = rejected(path.read_bytes(), as_of)
    assert {f.rule for f in error.findings if f.severity == "error"} == {match["rule"]}


def test_there_are_invalid_examples() -> None:
    assert len(INVALID) >= 10


def test_rejection_is_a_document_rejected_listing_each_finding_on_its_own_line(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b">CH</ExportingCountry>", b">ch</ExportingCountry>").replace(
        b"<Category>enterprise</Category>", b"<Category>firm</Category>", 1
    )
    error = rejected(data)
    assert isinstance(error, DocumentRejected)
    lines = str(error).splitlines()
    assert lines[0] == "permit document rejected: 2 error(s), 0 warning(s)"
    assert lines[1:] == [f"  {f}" for f in error.findings]


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
    for expected in ("ImportAuthorization", "ExportAuthorization", PERMITS_NAMESPACE):
        assert expected in finding.hint


def test_root_without_namespace_says_so(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b' xmlns="urn:permit-gateway:cs-permits:1"', b"")
    (finding,) = rejected(data).findings
    assert finding.rule == "ROOT" and "(none)" in finding.message


def test_warnings_come_back_on_the_document(ia_bytes: bytes, as_of: date) -> None:
    data = ia_bytes.replace(b"    <NationalLicenceNumber>CH-BETM-512-0098</NationalLicenceNumber>\n", b"").replace(
        b'<GrossQuantity unitCode="KGM">2</GrossQuantity>', b'<GrossQuantity unitCode="H87">2000</GrossQuantity>'
    )
    doc = validate_document(data, as_of=date(2027, 3, 1))
    assert [(f.rule, f.severity) for f in doc.findings] == [
        ("X-013", "warning"),
        ("X-015", "warning"),
        ("X-008", "warning"),
    ]
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
    }


def test_without_as_of_the_date_rules_are_not_run(ia_bytes: bytes) -> None:
    future = ia_bytes.replace(b"<IssueDate>2026-11-10</IssueDate>", b"<IssueDate>2026-12-15</IssueDate>").replace(
        b"<ValidFrom>2026-11-10</ValidFrom>", b"<ValidFrom>2026-12-15</ValidFrom>"
    )
    assert validate_document(future).findings == ()
    assert [f.rule for f in rejected(future, date(2026, 11, 26)).findings] == ["X-014"]


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
    (finding,) = rejected(ea_bytes.replace(b"  <Validity>", consignee)).findings
    assert (finding.rule, finding.path) == (
        "X-001",
        "/ea:ExportAuthorization/ea:Consignee/ea:Address/ea:CountryCode",
    )


def test_base_quantity_tolerance_is_one_milligram(ia_bytes: bytes) -> None:
    within = ia_bytes.replace(b">3760.000<", b">3760.001<")
    beyond = ia_bytes.replace(b">3760.000<", b">3760.002<")
    assert validate_document(within).findings == ()
    assert [f.rule for f in rejected(beyond).findings] == ["X-007"]


def test_substance_alias_as_id_gets_the_real_id_suggested(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(b"<SubstanceId>morphine</SubstanceId>", b"<SubstanceId>heroin</SubstanceId>")
    (finding,) = rejected(data).findings
    assert finding.rule == "X-010" and "'diamorphine-heroin'" in finding.hint


def test_validation_writes_nothing_to_stdout(
    ia_bytes: bytes, capsys: pytest.CaptureFixture[str], as_of: date
) -> None:
    validate_document(ia_bytes, as_of=as_of)
    with pytest.raises(PermitDocumentRejected):
        validate_document(b"<broken", as_of=as_of)
    assert capsys.readouterr() == ("", "")
