"""Quantities carry at most six decimal places (18 significant digits with the 10^12 bound): more is an XSD
finding naming the element, its line and the limit, never a value too long to store. Trailing and leading
zeros are no digits of the value: 5 followed by sixty zeros after the point is 5, and valid."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import PermitDocumentRejected, parse_document, validate_document
from tests.documents.conftest import EXAMPLES

GROSS = b'<GrossQuantity unitCode="KGM">5</GrossQuantity>'
BASE = b"<BaseQuantityGrams>3760.000</BaseQuantityGrams>"


def _line_of(data: bytes, marker: bytes) -> int:
    return data[: data.index(marker)].count(b"\n") + 1


def test_long_zero_padding_is_the_plain_value(ia_bytes: bytes, as_of: date) -> None:
    padded = ia_bytes.replace(GROSS, b'<GrossQuantity unitCode="KGM">0005.' + b"0" * 60 + b"</GrossQuantity>")
    assert padded != ia_bytes

    document = validate_document(padded, as_of=as_of)

    assert document.lines[0].gross_quantity == Decimal(5)


@pytest.mark.parametrize(
    ("old", "new", "element", "facets"),
    [
        (GROSS, b'<GrossQuantity unitCode="KGM">5.0000001</GrossQuantity>', "GrossQuantity", ["fractionDigits"]),
        (BASE, b"<BaseQuantityGrams>3760.0000001</BaseQuantityGrams>", "BaseQuantityGrams", ["fractionDigits"]),
        (
            GROSS,
            b'<GrossQuantity unitCode="KGM">5.' + b"0" * 59 + b"1</GrossQuantity>",
            "GrossQuantity",
            ["totalDigits", "fractionDigits"],
        ),
    ],
    ids=["gross-7-decimals", "base-7-decimals", "gross-61-digits"],
)
def test_more_digits_than_a_quantity_carries_is_a_schema_finding_with_its_place(
    ia_bytes: bytes, as_of: date, old: bytes, new: bytes, element: str, facets: list[str]
) -> None:
    data = ia_bytes.replace(old, new)
    assert data != ia_bytes

    findings = parse_document(data).findings

    assert [f.rule for f in findings] == ["XSD"] * len(facets)
    for finding, facet in zip(findings, facets, strict=True):
        assert f"[facet '{facet}']" in finding.message and f"Element 'ia:{element}'" in finding.message
        assert "('6')" in finding.message or "('18')" in finding.message
        assert finding.line == _line_of(data, new)
        assert finding.path is not None and finding.path.endswith(f"SubstanceLine[1]/ia:{element}")
        assert "Round the value" in finding.hint
    with pytest.raises(PermitDocumentRejected):
        validate_document(data, as_of=as_of)


def test_the_bounds_still_hold_the_largest_quantities(ia_bytes: bytes) -> None:
    data = ia_bytes.replace(GROSS, b'<GrossQuantity unitCode="KGM">999999999999.999999</GrossQuantity>').replace(
        BASE, b"<BaseQuantityGrams>1000000000000.000000</BaseQuantityGrams>"
    )
    assert parse_document(data).findings == ()


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.xml")), ids=lambda p: p.name)
def test_every_valid_example_passes_the_schema(path: Path) -> None:
    assert parse_document(path.read_bytes()).findings == ()
