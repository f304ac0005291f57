"""Text patterns: whitespace-only text is refused as a finding (never an exception), real text passes."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.documents import DocumentType, _schema, parse_document
from tests.documents.conftest import EXAMPLES

AK_MESSAGE = (
    "<Message>line 1: the factor 0.7520 for morphine sulfate pentahydrate could not be checked: it is not "
    "verified; the document's own factor was used</Message>"
)
IA_REMARKS = "<Remarks>For the manufacture of oral solutions; delivery by road via Basel-Weil am Rhein.</Remarks>"


def _acknowledgement(message: str) -> bytes:
    text = (EXAMPLES / "valid" / "BE-AK-2026-0001.xml").read_text()
    assert AK_MESSAGE in text
    return text.replace(AK_MESSAGE, f"<Message>{message}</Message>").encode()


def _import_authorization(remarks: str) -> bytes:
    text = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_text()
    assert IA_REMARKS in text
    return text.replace(IA_REMARKS, f"<Remarks>{remarks}</Remarks>").encode()


@pytest.mark.parametrize("spaces", [30, 1999, 5000])
def test_whitespace_only_long_text_is_an_xsd_finding(spaces: int) -> None:
    parsed = parse_document(_acknowledgement(" " * spaces))
    assert parsed.draft is None
    assert parsed.findings and {f.rule for f in parsed.findings} == {"XSD"}
    assert all(f.path and f.path.endswith("ak:Message") for f in parsed.findings)
    assert any("pattern" in f.message for f in parsed.findings)


@pytest.mark.parametrize(
    "message",
    ["line 1\nline 2\r\n\tline 3", "\n\n  x", "x\n\n  ", " \t\r\n" * 400 + "x" + "\n" * 300],
)
def test_multi_line_long_text_passes(message: str) -> None:
    parsed = parse_document(_acknowledgement(message))
    assert parsed.findings == () and parsed.draft is not None


@pytest.mark.parametrize("remarks", [" " * 256, "\t \t", "two\nlines"])
def test_text_without_a_character_or_with_a_line_break_is_refused(remarks: str) -> None:
    findings = parse_document(_import_authorization(remarks)).findings
    assert [f.rule for f in findings] == ["XSD"] and "ia:Remarks" in str(findings[0].path)


@pytest.mark.parametrize("remarks", ["x", "  \t leading and trailing blanks \t ", " " * 250 + "end"])
def test_one_line_text_passes(remarks: str) -> None:
    assert parse_document(_import_authorization(remarks)).findings == ()


def test_a_validator_internal_error_is_a_finding_naming_the_element(monkeypatch: pytest.MonkeyPatch) -> None:
    # An ambiguous pattern makes libxml2 give up with an internal error instead of answering.
    ambiguous = etree.XMLSchema(
        etree.fromstring(
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" xmlns="urn:t" '
            'elementFormDefault="qualified"><xs:element name="r"><xs:complexType><xs:sequence>'
            '<xs:element name="e"><xs:simpleType><xs:restriction base="xs:string">'
            '<xs:pattern value="(.|\\s)*\\S(.|\\s)*"/></xs:restriction></xs:simpleType></xs:element>'
            "</xs:sequence></xs:complexType></xs:element></xs:schema>"
        )
    )
    monkeypatch.setattr(_schema, "load_schema", lambda _path: ambiguous)
    root = etree.fromstring(f'<r xmlns="urn:t">\n<e>{" " * 60}</e></r>'.encode())
    (finding,) = _schema.schema_findings(root, DocumentType.ACKNOWLEDGEMENT)
    assert finding.rule == "XSD" and finding.severity == "error"
    assert finding.line == 2 and finding.path and finding.path.endswith("e")
    assert "gave up" in finding.message and "operator" in finding.hint
