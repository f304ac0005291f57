from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.documents import PERMITS_NAMESPACE, DocumentType, PermitDocumentRejected, validate_document
from gateway.documents._schema import schema_file
from gateway.xmlsafe import load_schema, parse_xml, schema_root
from tests.documents.conftest import EXAMPLES

PERMITS = schema_root() / "permits"
XSDS = sorted(PERMITS.glob("*.xsd"))


def test_every_document_type_has_a_schema() -> None:
    for document_type in DocumentType:
        assert (schema_root() / schema_file(document_type)).is_file()
        load_schema(schema_file(document_type))


def test_compiled_schemas_are_reused() -> None:
    first = load_schema(schema_file(DocumentType.IMPORT_AUTHORIZATION))
    assert load_schema(schema_file(DocumentType.IMPORT_AUTHORIZATION)) is first


@pytest.mark.parametrize("path", XSDS, ids=[p.name for p in XSDS])
def test_schema_header(path: Path) -> None:
    root = etree.parse(str(path)).getroot()  # our own file; the hardened parser drops comments
    first = root.getprevious()
    assert first is not None and "Permit Gateway" in str(first.text), "starts with a comment saying what it is"
    assert root.get("targetNamespace") == PERMITS_NAMESPACE
    assert root.get("elementFormDefault") == "qualified"


def test_no_substance_country_or_unit_is_enumerated() -> None:
    components = parse_xml((PERMITS / "components.xsd").read_bytes())
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    for name in ("CountryCodeType", "SubstanceIdType", "UnitCodeType"):
        (simple,) = components.xpath(f"xs:simpleType[@name='{name}']", namespaces=ns)
        assert not simple.xpath(".//xs:enumeration", namespaces=ns), name


# What the treaties require is mandatory in the schema: dropping it fails XSD validation.
MANDATORY = [
    ("BE-IA-2026-0001.xml", "Importer"),
    ("BE-IA-2026-0001.xml", "Exporter"),
    ("BE-IA-2026-0001.xml", "Validity"),
    ("BE-IA-2026-0001.xml", "GrossQuantity"),
    ("BE-IA-2026-0001.xml", "BaseQuantityGrams"),
    ("BE-IA-2026-0001.xml", "BaseConversionFactor"),
    ("CH-EA-2026-0001.xml", "ImportAuthorizationReference"),
    ("CH-EA-2026-0001.xml", "ImportLineNumber"),
    ("CH-EX-2026-0001.xml", "DispatchDate"),
    ("BE-EN-2026-0001.xml", "ExportAuthorizationReference"),
    ("DE-AM-2026-0009.xml", "Replacement"),
    ("DE-CA-2026-0003.xml", "EffectiveDate"),
    ("CH-ED-2026-0042.xml", "DateOfDespatch"),
    ("CH-ED-2026-0042.xml", "Importer"),
    ("NL-PN-2026-0815.xml", "ExpectedPointOfEntry"),
    ("NL-PN-2026-0815.xml", "ExpectedDispatchDate"),
    ("CH-PR-2026-0077.xml", "Decision"),
    ("BE-AK-2026-0001.xml", "Status"),
]


@pytest.mark.parametrize(("example", "element"), MANDATORY, ids=[f"{e}-{n}" for e, n in MANDATORY])
def test_treaty_elements_are_mandatory(example: str, element: str) -> None:
    root = parse_xml((EXAMPLES / "valid" / example).read_bytes())
    (first, *_) = root.iter(f"{{{PERMITS_NAMESPACE}}}{element}")
    parent = first.getparent()
    assert parent is not None
    parent.remove(first)
    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(etree.tostring(root))
    assert {f.rule for f in info.value.findings} == {"XSD"}


def test_a_line_needs_an_inn_or_a_schedule_designation() -> None:
    data = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()
    designated = data.replace(b"<INN>morphine</INN>", b"<ScheduleDesignation>morphine</ScheduleDesignation>")
    validate_document(designated)
    with pytest.raises(PermitDocumentRejected):
        validate_document(data.replace(b"    <INN>morphine</INN>\n", b""))
