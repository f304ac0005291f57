from __future__ import annotations

from pathlib import Path

import pytest

from gateway.documents import PERMITS_NAMESPACE, DocumentType
from gateway.documents._schema import schema_file
from gateway.xmlsafe import load_schema, parse_xml, schema_root

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
    root = parse_xml(path.read_bytes(), what=path.name)
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
