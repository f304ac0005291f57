"""Rules a second review found too weak: self-declared conversion factors, several executions of one export,
over-receipt, the estimate year, late declarations, type substitution and names that name nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.documents import (
    DocumentKey,
    DocumentType,
    InMemoryContext,
    ValidationReport,
    validation_report,
)
from tests.documents.conftest import AS_OF, EXAMPLES, Without

CH_EA = DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", "CH-EA-2026-0001")
CH_EX = DocumentKey(DocumentType.EXPORT_EXECUTION, "CH", "CH-EX-2026-0001")
TRADE = ("CH-EA-2026-0001", "CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001")


def _example(name: str, folder: str = "valid") -> str:
    return (EXAMPLES / folder / name).read_text()


def _replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _by_severity(report: ValidationReport, severity: str) -> set[str]:
    return {f.rule for f in report.findings if f.severity == severity}


def _check(text: str, context: InMemoryContext | None = None) -> ValidationReport:
    return validation_report(text.encode(), as_of=AS_OF, context=context)


def _export(gross: str, factor: str, base: str) -> str:
    return _replace(
        _example("CH-EA-2026-0001.xml"),
        (
            '<GrossQuantity unitCode="KGM">2.5</GrossQuantity>',
            f'<GrossQuantity unitCode="KGM">{gross}</GrossQuantity>',
        ),
        (
            "<BaseConversionFactor>0.7520</BaseConversionFactor>",
            f"<BaseConversionFactor>{factor}</BaseConversionFactor>",
        ),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{base}</BaseQuantityGrams>"),
    )


# 1. The conversion factor


def test_an_export_cannot_ship_ten_times_the_import_line_with_a_tiny_factor(without: Without) -> None:
    report = _check(_export("50", "0.0001", "5.000"), without(*TRADE))
    assert not report.valid
    (finding,) = [f for f in report.findings if f.rule == "EA-008"]
    assert "factor 0.7520" in finding.message and "0.0001" in finding.message
    assert finding.path and finding.path.endswith("ea:ImportLineNumber")
    assert "X-031" in _by_severity(report, "warning")


def test_an_export_above_the_import_lines_gross_quantity_is_refused(without: Without) -> None:
    report = _check(_export("5.5", "0.7520", "4136.000"), without(*TRADE))
    (finding,) = [f for f in report.findings if f.rule == "EA-008"]
    assert "5 KGM gross, less than 5.5 KGM" in finding.message


def test_the_same_gross_in_another_mass_unit_passes(without: Without) -> None:
    grams = _replace(_export("2500", "0.7520", "1880.000"), ('unitCode="KGM"', 'unitCode="GRM"'))
    assert _check(grams, without(*TRADE)).valid


def test_naming_the_base_itself_as_the_salt_still_requires_factor_one(ia_bytes: bytes) -> None:
    base = _replace(
        ia_bytes.decode(),
        (
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>",
            "<SaltOrBaseForm>Morphine base</SaltOrBaseForm>",
        ),
        (
            "<BaseConversionFactor>0.7520</BaseConversionFactor>",
            "<BaseConversionFactor>0.0001</BaseConversionFactor>",
        ),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>0.500</BaseQuantityGrams>"),
    )
    report = _check(base)
    (finding,) = [f for f in report.findings if f.rule == "X-019"]
    assert "is 1" in finding.message and finding.line


def test_a_factor_far_from_an_unverified_row_draws_its_own_warning(ia_bytes: bytes) -> None:
    far = _replace(
        ia_bytes.decode(),
        (
            "<BaseConversionFactor>0.7520</BaseConversionFactor>",
            "<BaseConversionFactor>0.0752</BaseConversionFactor>",
        ),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>376.000</BaseQuantityGrams>"),
    )
    report = _check(far)
    assert report.valid
    by_rule = {(f.rule, f.path.rsplit("[", 1)[-1][:1] if f.path else "") for f in report.findings}
    assert ("X-031", "1") in by_rule and ("X-020", "2") in by_rule and ("X-020", "1") not in by_rule
    (finding,) = [f for f in report.findings if f.rule == "X-031"]
    assert "0.0752" in finding.message and "0.7520" in finding.message


def test_a_factor_near_an_unverified_row_is_only_not_checked(ia_bytes: bytes) -> None:
    near = _replace(
        ia_bytes.decode(),
        (
            "<BaseConversionFactor>0.7520</BaseConversionFactor>",
            "<BaseConversionFactor>0.7500</BaseConversionFactor>",
        ),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>3750.000</BaseQuantityGrams>"),
    )
    assert _by_severity(_check(near), "warning") == {"X-020"}


# 2. Several executions of one export


def test_a_second_execution_cannot_ship_beyond_the_authorization(without: Without) -> None:
    second = _example("CH-EX-2026-0001.xml").replace("CH-EX-2026-0001", "CH-EX-2026-0002")
    report = _check(second, without("BE-EN-2026-0001", "BE-AK-2026-0001"))
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "EX-004" and "already report 1880.000 g" in finding.message


def test_an_execution_is_not_counted_against_itself(without: Without) -> None:
    context = without("BE-EN-2026-0001", "BE-AK-2026-0001")
    assert context.executed_base_grams(CH_EA, 1) == Decimal(1880)
    assert context.executed_base_grams(CH_EA, 1, excluding=CH_EX) == 0
    assert without(*TRADE[1:]).executed_base_grams(CH_EA, 1) == 0
    assert _check(_example("CH-EX-2026-0001.xml"), context).valid


# 4. The estimate year


@pytest.mark.parametrize(("year", "valid"), [("1999", False), ("2025", False), ("2026", True), ("2027", True)])
def test_the_estimate_year_is_the_issue_year_or_the_next(ia_bytes: bytes, year: str, valid: bool) -> None:
    text = ia_bytes.decode().replace(
        "<BondedWarehouseApproved>false</BondedWarehouseApproved>",
        f"<BondedWarehouseApproved>false</BondedWarehouseApproved><EstimateYear>{year}</EstimateYear>",
    )
    report = _check(text)
    assert ("X-032" in _by_severity(report, "error")) is not valid
    if not valid:
        (finding,) = [f for f in report.findings if f.rule == "X-032"]
        assert "2026" in finding.message and "2027" in finding.message


# 5. Severities


def _over_received(discrepancy: str) -> str:
    return _replace(
        _example("BE-EN-2026-0001.xml"),
        ('<GrossQuantity unitCode="KGM">2.5</GrossQuantity>', '<GrossQuantity unitCode="KGM">2.6</GrossQuantity>'),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>1955.200</BaseQuantityGrams>"),
        (
            "  <Remarks>",
            f"  <Discrepancy><Code>{discrepancy}</Code><Description>0.1 kg more</Description>"
            "</Discrepancy>\n  <Remarks>",
        ),
    )


def test_a_declared_over_receipt_is_a_warning(without: Without) -> None:
    report = _check(_over_received("overReceipt"), without("BE-EN-2026-0001", "BE-AK-2026-0001"))
    assert report.valid and "EN-008" in _by_severity(report, "warning")


def test_an_over_receipt_declared_as_something_else_is_refused(without: Without) -> None:
    report = _check(_over_received("other"), without("BE-EN-2026-0001", "BE-AK-2026-0001"))
    assert _by_severity(report, "error") == {"EN-004"}


def test_a_declaration_sent_after_90_days_is_refused() -> None:
    report = _check(_example("ED-001-declared-late.xml", "invalid"))
    assert not report.valid and _by_severity(report, "error") == {"ED-001"}


# 6. The schema and names


def test_an_export_line_type_cannot_stand_in_for_an_import_line_in_an_amendment() -> None:
    amendment = _replace(
        _example("DE-AM-2026-0009.xml"),
        (
            '<Amendment xmlns="urn:permit-gateway:cs-permits:1"',
            '<Amendment xmlns="urn:permit-gateway:cs-permits:1" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
        ),
        ("<SubstanceLine>", '<SubstanceLine xsi:type="ExportLineType">'),
        ("</Purpose>\n", "</Purpose>\n        <ImportLineNumber>7</ImportLineNumber>\n"),
    )
    report = _check(amendment)
    assert not report.valid and {f.rule for f in report.findings if f.severity == "error"} == {"XSD"}


@pytest.mark.parametrize("name", ["&#160;&#8203;", "&#8203;", " - . "])
def test_a_name_without_a_letter_or_digit_is_refused(ia_bytes: bytes, name: str) -> None:
    text = ia_bytes.decode().replace("<Name>Scheldepharma Manufacturing NV</Name>", f"<Name>{name}</Name>")
    report = _check(text)
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "X-033" and finding.path and finding.path.endswith("ia:Name")


def test_a_name_in_another_script_passes(ia_bytes: bytes) -> None:
    text = ia_bytes.decode().replace("<Name>Scheldepharma Manufacturing NV</Name>", "<Name>株式会社</Name>")
    assert _check(text).valid
