"""Hostile permit documents (review): processing instructions, floods of schema errors, trees of hostile
shape, and the same permit re-encoded. Each is answered with a bounded report that names the rule, the place
and the fix."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.documents import (
    InMemoryContext,
    PermitDocumentRejected,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.xmlsafe import schema_root
from tests.documents.conftest import EXAMPLES

AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
MAX_FINDINGS = 100  # a report lists these, and counts the rest in one more
_LINE = re.compile(rb"  <SubstanceLine>.*?</SubstanceLine>\n", re.S)


def with_lines(ia_bytes: bytes, count: int) -> bytes:
    """BE-IA-2026-0001 with its first line repeated ``count`` times, numbered 1.."""
    first = _LINE.search(ia_bytes)
    assert first is not None
    template = first.group(0)
    lines = b"".join(template.replace(b"<LineNumber>1<", b"<LineNumber>%d<" % n) for n in range(1, count + 1))
    start = first.start()
    end = ia_bytes.index(b"  <Remarks>")
    return ia_bytes[:start] + lines + ia_bytes[end:]


def errors(data: bytes) -> list[str]:
    with pytest.raises(PermitDocumentRejected) as caught:
        validate_document(data, as_of=AS_OF)
    return [str(f) for f in caught.value.findings if f.severity == "error"]


# --- processing instructions ------------------------------------------------------------------------------


def test_processing_instructions_are_dropped_and_the_text_they_split_is_one(ia_bytes: bytes) -> None:
    """``0<?p?>0<?p?>5`` is 5 to every reader of the tree, ``.text`` too, and no PI is left to split it."""
    data = ia_bytes.replace(
        b'<GrossQuantity unitCode="KGM">5<', b'<GrossQuantity unitCode="KGM">0<?p?>0<?p?>5<', 1
    )
    assert data != ia_bytes
    parsed = parse_document(data)
    assert parsed.draft is not None, parsed.findings
    root = parsed.draft.root
    assert list(root.iter(etree.ProcessingInstruction)) == []
    gross = root.find(".//{*}SubstanceLine/{*}GrossQuantity")
    assert gross is not None and gross.text == "005"
    document = validate_document(data, as_of=AS_OF)
    assert document.lines[0].gross_quantity == Decimal(5)


def test_a_flood_of_processing_instructions_in_a_value_is_one_length_finding(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(
        b"<DocumentNumber>BE-IA-2026-0001", b"<DocumentNumber>" + b"A<?p?>" * 200_000 + b"B", 1
    )
    (error,) = errors(data)
    assert "DocumentNumber" in error and "maxLength" in error and "200001" in error


# --- bounded reports --------------------------------------------------------------------------------------


def test_schema_findings_stop_at_the_cap_with_one_that_counts_the_rest(ia_bytes: bytes) -> None:
    bad = b"<SubstanceLine><LineNumber>x</LineNumber></SubstanceLine>" * 5_000
    report = validation_report(ia_bytes.replace(b"  <Remarks>", bad + b"  <Remarks>"), as_of=AS_OF)
    assert report.document is None
    assert len(report.findings) == MAX_FINDINGS + 1
    first, last = report.findings[0], report.findings[-1]
    assert first.rule == "XSD" and first.line is not None
    assert first.path is not None and first.path.startswith("/ia:ImportAuthorization/ia:SubstanceLine[")
    assert last.rule == "XSD" and last.severity == "error"
    hidden = int(last.message.split()[0])
    assert hidden > 5_000 and "not shown" in last.message and last.hint
    assert len(str(PermitDocumentRejected(report.findings))) < 100_000


def test_rule_findings_stop_at_the_cap_and_a_valid_document_stays_valid(ia_bytes: bytes) -> None:
    """A rule that hits every one of 300 lines (X-020 here) is listed 100 times and counted after that."""
    report = validation_report(with_lines(ia_bytes, 300), as_of=AS_OF)
    assert report.document is not None
    shown = [f for f in report.findings if f.rule not in ("FINDINGS", "CONTEXT", "AS-OF")]
    (summary,) = [f for f in report.findings if f.rule == "FINDINGS"]
    assert len(shown) == MAX_FINDINGS
    assert summary.severity == "warning" and summary.message.startswith(f"{300 - MAX_FINDINGS} more")
    assert len(report.document.lines) == 300


def test_an_error_beyond_the_cap_still_refuses_the_document(ia_bytes: bytes) -> None:
    data = with_lines(ia_bytes, 150).replace(b"<ImportingCountry>BE<", b"<ImportingCountry>QQ<")
    report = validation_report(data, as_of=AS_OF)
    assert report.document is None
    assert any(f.severity == "error" for f in report.findings)


# --- the shape of the tree --------------------------------------------------------------------------------


def test_too_many_attributes_on_one_element_is_one_xml_finding(ia_bytes: bytes) -> None:
    attributes = b" ".join(b'a%d="1"' % n for n in range(200))
    (error,) = errors(ia_bytes.replace(b'schemaVersion="1.0"', b'schemaVersion="1.0" ' + attributes))
    assert error.startswith("line 2: [XML]") and "201 attributes" in error and "limit of 100" in error
    assert "Fix: Remove the attributes" in error


def test_too_many_elements_is_one_xml_finding_naming_the_limit_and_line(ia_bytes: bytes) -> None:
    nested = (b"<Zz>" + b"<b/>" * 1_000 + b"</Zz>\n") * 250
    (error,) = errors(ia_bytes.replace(b"  <Remarks>", nested + b"  <Remarks>"))
    assert "[XML]" in error and "more than 200000 elements" in error
    assert re.match(r"line \d+: ", error) and "Fix: " in error


def test_too_many_children_of_one_element_is_one_xml_finding(ia_bytes: bytes) -> None:
    (error,) = errors(ia_bytes.replace(b"  <Remarks>", b"<Zz/>\n" * 10_100 + b"  <Remarks>"))
    assert "[XML]" in error and "element ImportAuthorization has more than 10050 child elements" in error
    assert re.match(r"line \d+: ", error) and "Fix: " in error


def test_a_valid_document_of_many_lines_passes_the_limits(ia_bytes: bytes) -> None:
    document = validate_document(with_lines(ia_bytes, 2_000), as_of=AS_OF)
    assert len(document.lines) == 2_000


@pytest.mark.parametrize("xsd", sorted((schema_root() / "permits").glob("*.xsd")), ids=lambda p: p.name)
def test_substance_lines_are_bounded_as_their_numbers_are(xsd: Path) -> None:
    """LineNumberType stops at 9999: a schema that took more lines would only let the validator work longer."""
    tree = etree.parse(str(xsd))
    declarations = tree.iterfind(".//{http://www.w3.org/2001/XMLSchema}element[@name='SubstanceLine']")
    for declaration in declarations:
        assert declaration.get("maxOccurs") == "9999", xsd.name


# --- the same permit, re-encoded --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data.replace(b'encoding="UTF-8"', b'encoding="UTF-16"').decode().encode("utf-16"),
        lambda data: data.replace(b"\n", b"\r\n"),
    ],
    ids=["utf-16", "crlf"],
)
def test_the_same_permit_re_encoded_is_not_a_different_one(ia_bytes: bytes, change: object) -> None:
    kept = validate_document(ia_bytes, as_of=AS_OF)
    again = change(ia_bytes)  # type: ignore[operator]
    assert again != ia_bytes
    document = validate_document(again, as_of=AS_OF, context=InMemoryContext([kept]))
    assert document.content_sha256 == kept.content_sha256
    assert document.raw_sha256 != kept.raw_sha256


def test_a_different_permit_under_a_kept_number_is_refused_with_both_fixes(ia_bytes: bytes) -> None:
    kept = validate_document(ia_bytes, as_of=AS_OF)
    other = ia_bytes.replace(b"<Remarks>For", b"<Remarks>Not for")
    with pytest.raises(PermitDocumentRejected) as caught:
        validate_document(other, as_of=AS_OF, context=InMemoryContext([kept]))
    (x022,) = [f for f in caught.value.findings if f.rule == "X-022"]
    assert "send the original bytes again" in x022.hint and "give it a new number" in x022.hint
