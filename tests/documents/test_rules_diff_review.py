"""Two defects a review of the treaty-rule changes found: a letter of exemption the exporting country wrote
for itself let an export skip every ImportAuthorization check (EA-013), and an export line in a different but
convertible unit of its import line's kind (MLT against LTR) was refused (EA-008)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.documents import (
    ControlTables,
    InMemoryContext,
    PermitDocument,
    ReferenceData,
    ReferenceDataError,
    ValidationReport,
    validate_document,
    validation_report,
)
from tests.documents.conftest import AS_OF, EXAMPLES, Without

DATA = Path(__file__).resolve().parents[2] / "gateway" / "documents" / "data"
DEMO_EXPORT = ("CH-EA-2026-0001", "CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001")


def _example(name: str) -> str:
    return (EXAMPLES / "valid" / name).read_text()


def _sub(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _check(text: str, context: InMemoryContext | None, reference: ReferenceData | None = None) -> ValidationReport:
    return validation_report(text.encode(), as_of=AS_OF, context=context, reference=reference)


def _doc(text: str) -> PermitDocument:
    return validate_document(text.encode(), as_of=AS_OF)


def _errors(report: ValidationReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in report.findings:
        if f.severity == "error":
            found.setdefault(f.rule, []).append(f.message)
    return found


# 1. A letter of exemption is the importing country's: EA-013.


def _exemption_export(country: str, authority: str, number: str = "CH-EA-2026-0921") -> str:
    ea = _sub(_example("CH-EA-2026-0001.xml"), ("CH-EA-2026-0001", number))
    ea = re.sub(
        r"<ImportAuthorizationReference>.*?</ImportAuthorizationReference>",
        "<ExemptionReference><DocumentNumber>ANYTHING-1</DocumentNumber><IssueDate>2026-11-01</IssueDate>"
        f"<IssuingAuthority><CountryCode>{country}</CountryCode><AuthorityId>{authority}</AuthorityId>"
        "<AuthorityName>Some authority</AuthorityName></IssuingAuthority></ExemptionReference>",
        ea,
        flags=re.S,
    )
    assert "<ExemptionReference>" in ea
    return ea


@pytest.mark.parametrize("with_context", [True, False], ids=["context", "no-context"])
def test_an_exemption_issued_by_the_exporting_country_is_refused(
    context: InMemoryContext, with_context: bool
) -> None:
    report = _check(_exemption_export("CH", "CH-SWISSMEDIC"), context if with_context else None)
    assert report.document is None
    (finding,) = [f for f in report.findings if f.rule == "EA-013"]
    assert finding.severity == "error"
    assert "letter of exemption ANYTHING-1" in finding.message and "CH-SWISSMEDIC (CH)" in finding.message
    assert "importing country BE" in finding.message
    assert finding.path and finding.path.endswith("ExemptionReference/ea:IssuingAuthority/ea:CountryCode")
    assert "CountryCode BE" in finding.hint and "ImportAuthorizationReference" in finding.hint
    assert "EA-012" not in {f.rule for f in report.findings}


def test_an_exemption_of_another_countrys_authority_under_the_importing_country_code_is_refused(
    context: InMemoryContext,
) -> None:
    report = _check(_exemption_export("BE", "CH-SWISSMEDIC"), context)
    (finding,) = [f for f in report.findings if f.rule == "EA-013"]
    assert finding.path and finding.path.endswith("ea:IssuingAuthority/ea:AuthorityId")
    assert "CH-SWISSMEDIC (BE)" in finding.message and report.document is None


def test_an_exemption_of_the_importing_authority_is_accepted_and_the_warning_asks_it_to_confirm(
    context: InMemoryContext,
) -> None:
    report = _check(_exemption_export("BE", "BE-FAMHP"), context)
    assert report.document is not None, _errors(report)
    (warning,) = [f for f in report.findings if f.rule == "EA-012"]
    assert "letter of exemption ANYTHING-1" in warning.message
    assert "the competent authority of the importing country BE should confirm it" in warning.message
    assert "Have the competent authority of BE confirm the letter of exemption ANYTHING-1" in warning.hint


def test_the_emergency_warning_asks_the_importing_authority_to_confirm(context: InMemoryContext) -> None:
    text = (EXAMPLES / "invalid" / "EA-012-exported-without-import-authorization.xml").read_text()
    (warning,) = [f for f in _check(text, context).findings if f.rule == "EA-012"]
    assert "cannot check the emergency delivery" in warning.message
    assert "importing country BE should confirm it" in warning.message


# 2. Volume units convert within their kind; count units only when the units table gives their size.


def _solution(text: str) -> str:
    return _sub(
        text,
        ("<Form>bulkSubstance</Form>", "<Form>preparation</Form>"),
        (
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>",
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm><PreparationName>Oramorph"
            "</PreparationName><PharmaceuticalForm>oral solution</PharmaceuticalForm>",
        ),
    )


def _import(gross: str = "10", unit: str = "LTR", base: str = "30") -> str:
    """BE-IA-2026-0922: an oral solution, 10 LTR holding 30 g of morphine base, several consignments."""
    return _solution(
        _sub(
            _example("BE-IA-2026-0001.xml"),
            ("BE-IA-2026-0001", "BE-IA-2026-0922"),
            (
                '<GrossQuantity unitCode="KGM">5</GrossQuantity>',
                f'<GrossQuantity unitCode="{unit}">{gross}</GrossQuantity>',
            ),
            ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{base}</BaseQuantityGrams>"),
        )
    )


def _export(number: int, gross: str, unit: str, base: str) -> str:
    ea = _sub(
        _example("CH-EA-2026-0001.xml"),
        ("CH-EA-2026-0001", f"CH-EA-2026-09{number:02d}"),
        ("BE-IA-2026-0001", "BE-IA-2026-0922"),
    )
    return _sub(
        _solution(ea),
        (
            '<GrossQuantity unitCode="KGM">2.5</GrossQuantity>',
            f'<GrossQuantity unitCode="{unit}">{gross}</GrossQuantity>',
        ),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{base}</BaseQuantityGrams>"),
    )


@pytest.mark.parametrize(("gross", "unit"), [("5", "LTR"), ("5000", "MLT"), ("0.005", "MTQ")])
def test_an_export_in_another_volume_unit_of_its_import_line_passes(
    without: Without, gross: str, unit: str
) -> None:
    report = _check(_export(22, gross, unit, "15"), without(*DEMO_EXPORT, extra=(_doc(_import()),)))
    assert report.document is not None, _errors(report)


def test_a_converted_volume_line_still_gives_the_base_grams_per_unit_of_its_import_line(without: Without) -> None:
    report = _check(_export(22, "5000", "MLT", "5"), without(*DEMO_EXPORT, extra=(_doc(_import()),)))
    (message,) = _errors(report)["EA-008"]
    assert "gives 30 g base for 10 LTR, so 5000 MLT hold 15.000 g, not the 5 g of this line" in message


def test_a_converted_volume_line_cannot_exceed_the_import_gross(without: Without) -> None:
    report = _check(_export(22, "11000", "MLT", "33"), without(*DEMO_EXPORT, extra=(_doc(_import()),)))
    (message,) = _errors(report)["EA-008"]
    assert "authorizes 10 LTR gross, less than 11000 MLT" in message


@pytest.mark.parametrize(
    ("earlier", "this", "refused"),
    [
        (("6", "LTR", "18"), ("5000", "MLT", "15"), True),
        (("6", "LTR", "18"), ("4000", "MLT", "12"), False),
        (("6000", "MLT", "18"), ("5", "LTR", "15"), True),
        (("6000", "MLT", "18"), ("4", "LTR", "12"), False),
    ],
)
def test_the_running_total_of_a_volume_line_converts_every_export_on_it(
    without: Without, earlier: tuple[str, str, str], this: tuple[str, str, str], refused: bool
) -> None:
    """The earlier export declared base grams the ratio check allows, so its units are what it takes."""
    context = without(*DEMO_EXPORT, extra=(_doc(_import()), _doc(_export(23, *earlier))))
    report = _check(_export(24, *this), context)
    if not refused:
        assert report.document is not None, _errors(report)
        return
    (message,) = _errors(report)["EA-008"]
    assert "authorizes 10 LTR gross; CH-EA-2026-0923 already take 6 LTR, which leaves 4, less than the 5 LTR" in (
        message
    )


def test_an_endorsement_in_millilitres_counts_what_was_received_in_litres(without: Without) -> None:
    """6 LTR authorized, 3000 MLT received: 7 LTR more may go under a further export, 7.5 may not."""
    endorsement = _sub(
        _example("BE-EN-2026-0001.xml"),
        ("BE-EN-2026-0001", "BE-EN-2026-0923"),
        ("CH-EA-2026-0001", "CH-EA-2026-0923"),
        ("BE-IA-2026-0001", "BE-IA-2026-0922"),
        (
            '<GrossQuantity unitCode="KGM">2.5</GrossQuantity>',
            '<GrossQuantity unitCode="MLT">3000</GrossQuantity>',
        ),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>9</BaseQuantityGrams>"),
    )
    kept = (_doc(_import()), _doc(_export(23, "6", "LTR", "18")), _doc(endorsement))
    assert _check(_export(24, "7", "LTR", "21"), without(*DEMO_EXPORT, extra=kept)).document is not None
    report = _check(_export(24, "7.5", "LTR", "22.5"), without(*DEMO_EXPORT, extra=kept))
    assert "already take 3 LTR" in _errors(report)["EA-008"][0]


def test_a_volume_line_against_a_mass_line_is_refused_saying_the_kinds_differ(without: Without) -> None:
    ea = _sub(
        _example("CH-EA-2026-0001.xml"),
        ('<GrossQuantity unitCode="KGM">2.5</GrossQuantity>', '<GrossQuantity unitCode="LTR">500</GrossQuantity>'),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>1</BaseQuantityGrams>"),
    )
    (message,) = _errors(_check(ea, without(*DEMO_EXPORT)))["EA-008"]
    assert "state the quantity in KGM, the unit of that line (LTR is a volume unit and KGM a mass unit" in message


def _units(
    tmp_path: Path, rows: str, header: str = "code,name,kind,grams_per_unit,millilitres_per_unit,pieces_per_unit"
) -> ReferenceData:
    (tmp_path / "units.csv").write_text(f"{header}\n{rows}")
    return ReferenceData.load(tmp_path)


def _tablets(text: str) -> str:
    return _sub(text, ("oral solution", "tablets"))


def test_count_units_convert_only_when_the_units_table_gives_their_pieces(
    tmp_path: Path, tables: ControlTables
) -> None:
    shipped = (DATA / "units.csv").read_text().splitlines()
    rows = "\n".join(shipped[1:])
    sized = _units(tmp_path, rows + "\nDZN,dozen,count,,,12,UN/ECE Recommendation 20 Annex I\n", header=shipped[0])
    ia = _doc(_tablets(_import("1200", "H87", "36")))
    context = InMemoryContext([ia], tables)
    report = _check(_tablets(_export(25, "50", "DZN", "18")), context, sized)
    assert report.document is not None, _errors(report)
    unsized = _units(tmp_path, rows + "\nDZN,dozen,count,,,,UN/ECE Recommendation 20 Annex I\n", header=shipped[0])
    (message,) = _errors(_check(_tablets(_export(25, "50", "DZN", "18")), context, unsized))["EA-008"]
    assert "authorizes it in H87, not DZN; state the quantity in H87" in message
    assert "units table (units.csv) gives no pieces per unit for DZN" in message


def test_an_older_units_table_without_sizes_still_loads_and_refuses_what_it_cannot_convert(
    tmp_path: Path, without: Without
) -> None:
    old = _units(
        tmp_path,
        "KGM,kilogram,mass,1000\nGRM,gram,mass,1\nLTR,litre,volume,\nMLT,millilitre,volume,\n",
        header="code,name,kind,grams_per_unit",
    )
    assert old.units["LTR"].size is None and old.units["KGM"].size == 1000
    context = without(*DEMO_EXPORT, extra=(_doc(_import()),))
    (message,) = _errors(_check(_export(22, "5000", "MLT", "15"), context, old))["EA-008"]
    assert "gives no millilitres per unit for MLT or LTR, so MLT cannot be converted into LTR" in message


def test_the_shipped_units_table_gives_every_volume_unit_its_millilitres() -> None:
    units = ReferenceData.default().units
    assert {u.code: u.size for u in units.values() if u.kind == "volume"} == {
        "LTR": 1000,
        "MLT": 1,
        "MTQ": 1000000,
    }
    assert units["H87"].size == 1 and units["KGM"].size == units["KGM"].grams == 1000


def test_a_size_on_a_unit_of_another_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ReferenceDataError, match=r"units.csv:2: millilitres_per_unit must be empty for a mass unit"
    ):
        _units(tmp_path, "KGM,kilogram,mass,1000,1000,\n")
