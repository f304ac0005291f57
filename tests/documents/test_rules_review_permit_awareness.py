"""Treaty rules a permit-awareness review found missing or bypassable: export quantities in volume and count
units, re-exports against the estimate, preparation names, the importer's licence, the day an Art. 13
prohibition starts, 1971 Schedule I parties, and exports without an ImportAuthorization (emergency, exemption)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date

import pytest

from gateway.clock import FixedClock
from gateway.documents import (
    ControlTables,
    DocumentKey,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    ValidationReport,
    validate_document,
    validation_report,
)
from gateway.documents.control import Prohibition
from gateway.store import Direction, PermitRegistry, PermitState, create_engine, upgrade
from tests.conftest import NOW
from tests.documents.conftest import AS_OF, EXAMPLES, Without

# the examples' context without the demo export and what was issued against it
DEMO_EXPORT = ("CH-EA-2026-0001", "CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001")
MORPHINE = (
    "<SubstanceId>morphine</SubstanceId>\n    <INN>morphine</INN>\n    <Treaty>1961</Treaty>\n"
    "    <Schedule>I</Schedule>\n    <Form>bulkSubstance</Form>\n"
    "    <SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>"
)


def _example(name: str) -> str:
    return (EXAMPLES / "valid" / name).read_text()


def _sub(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _check(text: str, context: InMemoryContext) -> ValidationReport:
    return validation_report(text.encode(), as_of=AS_OF, context=context)


def _doc(text: str) -> PermitDocument:
    return validate_document(text.encode(), as_of=AS_OF)


def _errors(report: ValidationReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in report.findings:
        if f.severity == "error":
            found.setdefault(f.rule, []).append(f.message)
    return found


def _warnings(report: ValidationReport) -> set[str]:
    return {f.rule for f in report.findings if f.severity == "warning"}


def _ea_quantity(text: str, gross: str, unit: str, base: str) -> str:
    return _sub(
        text,
        (
            '<GrossQuantity unitCode="KGM">2.5</GrossQuantity>',
            f'<GrossQuantity unitCode="{unit}">{gross}</GrossQuantity>',
        ),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{base}</BaseQuantityGrams>"),
    )


# 1. Volume and count units: the quantity limit cannot be bypassed.


@pytest.mark.parametrize(("gross", "unit", "base"), [("500", "LTR", "1"), ("100000", "H87", "0.5")])
def test_an_export_line_in_another_kind_of_unit_than_its_import_line_is_refused(
    without: Without, gross: str, unit: str, base: str
) -> None:
    ea = _ea_quantity(_example("CH-EA-2026-0001.xml"), gross, unit, base)
    report = _check(ea, without(*DEMO_EXPORT))
    assert report.document is None
    (message,) = _errors(report)["EA-008"]
    assert f"authorizes it in KGM, not {unit}; state the quantity in KGM" in message


def _tablet_line(text: str) -> str:
    return _sub(
        text,
        ("<Form>bulkSubstance</Form>", "<Form>preparation</Form>"),
        (
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>",
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm><PreparationName>MST 30</PreparationName>"
            "<PharmaceuticalForm>tablets</PharmaceuticalForm>",
        ),
    )


def _tablet_import() -> str:
    """BE-IA-2026-0901: 1000 tablets holding 30 g of morphine base on line 1."""
    return _tablet_line(
        _sub(
            _example("BE-IA-2026-0001.xml"),
            ("BE-IA-2026-0001", "BE-IA-2026-0901"),
            (
                '<GrossQuantity unitCode="KGM">5</GrossQuantity>',
                '<GrossQuantity unitCode="H87">1000</GrossQuantity>',
            ),
            ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>30</BaseQuantityGrams>"),
        )
    )


def _tablet_export(number: int, tablets: str, base: str) -> str:
    ea = _sub(_example("CH-EA-2026-0001.xml"), ("CH-EA-2026-0001", f"CH-EA-2026-09{number:02d}"))
    ea = _sub(ea, ("BE-IA-2026-0001", "BE-IA-2026-0901"))
    return _ea_quantity(_tablet_line(ea), tablets, "H87", base)


def test_a_count_unit_export_must_give_the_base_grams_per_unit_of_its_import_line(without: Without) -> None:
    context = without(*DEMO_EXPORT, extra=(_doc(_tablet_import()),))
    report = _check(_tablet_export(1, "1000", "1"), context)
    (message,) = _errors(report)["EA-008"]
    assert "gives 30 g base for 1000 H87, so 1000 H87 hold 30.000 g, not the 1 g of this line" in message
    assert _check(_tablet_export(1, "500", "15"), context).document is not None


def test_count_unit_exports_cannot_take_more_units_than_the_import_line_authorizes(without: Without) -> None:
    """Earlier exports (kept before this check) declared 1 g base each, so the base grams left say nothing:
    the units they took do."""
    earlier = tuple(_doc(_tablet_export(n, "1000", "1")) for n in (1, 2, 3))
    context = without(*DEMO_EXPORT, extra=(_doc(_tablet_import()), *earlier))
    report = _check(_tablet_export(4, "1000", "30"), context)
    messages = _errors(report)["EA-008"]
    assert any("authorizes 1000 H87 gross; " in m and "already take 3000 H87" in m for m in messages), messages


def test_count_unit_exports_within_the_import_line_pass(without: Without) -> None:
    context = without(*DEMO_EXPORT, extra=(_doc(_tablet_import()), _doc(_tablet_export(1, "400", "12"))))
    report = _check(_tablet_export(2, "600", "18"), context)
    assert report.document is not None, _errors(report)
    report = _check(_tablet_export(2, "601", "18.03"), context)
    assert "already take 400 H87" in _errors(report)["EA-008"][0]


def test_an_execution_in_litres_on_an_export_line_in_kilograms_is_refused(without: Without) -> None:
    ex = _sub(_example("CH-EX-2026-0001.xml"), ("CH-EX-2026-0001", "CH-EX-2026-0906"))
    ex = re.sub(r'<GrossQuantity unitCode="KGM">[^<]*<', '<GrossQuantity unitCode="LTR">900<', ex)
    ex = re.sub(r"<BaseQuantityGrams>[^<]*<", "<BaseQuantityGrams>1<", ex)
    report = _check(ex, without("CH-EX-2026-0001", "BE-EN-2026-0001", "BE-AK-2026-0001"))
    (message,) = _errors(report)["EX-003"]
    assert "authorizes it in KGM, not LTR" in message


# 2. Amounts for re-export do not count against the estimate (1961 Art. 31(1)(b)).


def _big_import(purpose: str) -> str:
    return _sub(
        _example("BE-IA-2026-0001.xml"),
        ("BE-IA-2026-0001", "BE-IA-2026-0902"),
        ('<GrossQuantity unitCode="KGM">5</GrossQuantity>', '<GrossQuantity unitCode="KGM">70</GrossQuantity>'),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>52640.000</BaseQuantityGrams>"),
        ("<Purpose>manufacture</Purpose>", f"<Purpose>{purpose}</Purpose>"),
    )


def test_a_re_export_line_is_left_out_of_the_estimate_with_a_warning(context: InMemoryContext) -> None:
    report = _check(_big_import("reExport"), context)
    assert report.document is not None and "X-026" not in _errors(report)
    assert "X-035" in _warnings(report)
    (line,) = [line for line in report.document.lines if line.substance_id == "morphine"]
    assert line.re_export
    assert "X-026" in _errors(_check(_big_import("manufacture"), context))


# 3. A 1971 preparation is the one the import authorizes (BR-07).


def _prep(name: str) -> str:
    return (
        "<SubstanceId>methylphenidate</SubstanceId>\n    <INN>methylphenidate</INN>\n    <Treaty>1971</Treaty>\n"
        "    <Schedule>II</Schedule>\n    <Form>preparation</Form>\n"
        "    <SaltOrBaseForm>methylphenidate hydrochloride</SaltOrBaseForm>"
        f"<PreparationName>{name}</PreparationName><PharmaceuticalForm>tablets</PharmaceuticalForm>"
    )


def _prep_export(name: str) -> str:
    ea = _sub(
        _example("CH-EA-2026-0001.xml"),
        ("BE-IA-2026-0001", "BE-IA-2026-0904"),
        ("CH-EA-2026-0001", "CH-EA-2026-0904"),
    )
    return _sub(
        ea,
        (MORPHINE, _prep(name)),
        ('<GrossQuantity unitCode="KGM">2.5</GrossQuantity>', '<GrossQuantity unitCode="KGM">5</GrossQuantity>'),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>3760.000</BaseQuantityGrams>"),
    )


def test_an_export_of_another_preparation_than_the_import_authorizes_is_refused(without: Without) -> None:
    ia = _sub(
        _example("BE-IA-2026-0001.xml"), ("BE-IA-2026-0001", "BE-IA-2026-0904"), (MORPHINE, _prep("Ritalin 10 mg"))
    )
    context = without(extra=(_doc(ia),))
    report = _check(_prep_export("Totally Different Product 54 mg"), context)
    (message,) = _errors(report)["EA-008"]
    assert "authorizes preparation Ritalin 10 mg, not Totally Different Product 54 mg" in message
    assert _check(_prep_export(" ritalin  10 MG"), context).document is not None


# 4. The importer's licence cannot be dropped (BR-06).


def test_an_export_that_drops_the_importers_licence_is_refused(without: Without) -> None:
    ea = _sub(
        _example("CH-EA-2026-0001.xml"), ("<NationalLicenceNumber>BE-STUP-2024-0173</NationalLicenceNumber>\n", "")
    )
    report = _check(ea, without(*DEMO_EXPORT))
    (message,) = _errors(report)["EA-007"]
    assert "NationalLicenceNumber is '(none)'" in message and "BE-STUP-2024-0173" in message


# 5. An Art. 13 prohibition binds from the day it takes effect.


@pytest.mark.parametrize(
    ("since", "refused"), [(date(2027, 6, 1), False), (date(2026, 11, 24), True), (None, True)]
)
def test_a_prohibition_binds_exports_issued_from_its_start(
    known_documents: dict[str, PermitDocument], tables: ControlTables, since: date | None, refused: bool
) -> None:
    prohibited = replace(
        tables,
        prohibitions={
            ("BE", "morphine"): Prohibition(country="BE", substance_id="morphine", since=since, reference="test")
        },
    )
    kept = [d for d in known_documents.values() if d.number not in DEMO_EXPORT]
    report = _check(_example("CH-EA-2026-0001.xml"), InMemoryContext(kept, prohibited))
    assert ("X-029" in _errors(report)) is refused


# 6. 1971 Schedule I goes only between authorities and specially authorized parties (Art. 7, BR-22).


def _lsd_import(importer: str, exporter: str) -> str:
    ia = _sub(
        _example("BE-IA-2026-0001.xml"),
        ("BE-IA-2026-0001", "BE-IA-2026-0903"),
        (
            "<SubstanceId>morphine</SubstanceId>\n    <INN>morphine</INN>\n    <Treaty>1961</Treaty>",
            "<SubstanceId>lysergide-lsd</SubstanceId>\n    <INN>lysergide</INN>\n    <Treaty>1971</Treaty>",
        ),
        (
            "<SaltOrBaseForm>morphine sulfate pentahydrate</SaltOrBaseForm>",
            "<PharmaceuticalForm>powder</PharmaceuticalForm>",
        ),
        ("<BaseConversionFactor>0.7520</BaseConversionFactor>", "<BaseConversionFactor>1</BaseConversionFactor>"),
        ('<GrossQuantity unitCode="KGM">5</GrossQuantity>', '<GrossQuantity unitCode="GRM">5</GrossQuantity>'),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", "<BaseQuantityGrams>5</BaseQuantityGrams>"),
    )
    ia = _sub(ia, ("<Category>enterprise</Category>", f"<Category>{importer}</Category>"))
    return _sub(ia, ("<Category>enterprise</Category>", f"<Category>{exporter}</Category>"))


def test_schedule_i_between_enterprises_is_refused(context: InMemoryContext) -> None:
    report = _check(_lsd_import("enterprise", "enterprise"), context)
    findings = [f for f in report.findings if f.rule == "X-034"]
    assert len(findings) == 2 and all(f.path and f.path.endswith("/ia:Category") for f in findings)
    assert "Art. 7" in findings[0].basis and "authority" in findings[0].hint
    assert "lysergide-lsd" in findings[0].message


def test_schedule_i_between_an_authority_and_a_laboratory_passes(context: InMemoryContext) -> None:
    report = _check(_lsd_import("authority", "laboratory"), context)
    assert "X-034" not in _errors(report) and report.document is not None, _errors(report)


# 7. An export without an ImportAuthorization: an emergency delivery, or against a letter of exemption.


def _without_import_reference(ea: str) -> str:
    return re.sub(r"\s*<ImportAuthorizationReference>.*?</ImportAuthorizationReference>", "", ea, flags=re.S)


def _emergency_export() -> str:
    ea = _without_import_reference(_sub(_example("CH-EA-2026-0001.xml"), ("CH-EA-2026-0001", "CH-EA-2026-0905")))
    return _sub(
        ea,
        (
            "<SubstanceLine>",
            "<EmergencyDelivery><Reason>earthquake relief</Reason></EmergencyDelivery>\n  <SubstanceLine>",
        ),
    )


def test_an_emergency_export_needs_no_import_authorization_and_says_so(context: InMemoryContext) -> None:
    report = _check(_emergency_export(), context)
    assert report.document is not None, _errors(report)
    assert report.document.import_authorization_ref is None
    (warning,) = [f for f in report.findings if f.rule == "EA-012"]
    assert warning.severity == "warning" and "emergency delivery (earthquake relief)" in warning.message


def test_an_export_against_a_letter_of_exemption_names_it(context: InMemoryContext) -> None:
    ea = _sub(_example("CH-EA-2026-0001.xml"), ("CH-EA-2026-0001", "CH-EA-2026-0907"))
    ea = ea.replace("ImportAuthorizationReference>", "ExemptionReference>")
    ea = _sub(
        ea,
        ("<DocumentNumber>BE-IA-2026-0001</DocumentNumber>", "<DocumentNumber>BE-EXEMPT-2026-7</DocumentNumber>"),
    )
    report = _check(ea, context)
    assert report.document is not None, _errors(report)
    (warning,) = [f for f in report.findings if f.rule == "EA-012"]
    assert "letter of exemption BE-EXEMPT-2026-7" in warning.message


def test_an_export_without_import_authorization_exemption_or_emergency_is_refused(
    context: InMemoryContext,
) -> None:
    ea = _without_import_reference(_sub(_example("CH-EA-2026-0001.xml"), ("CH-EA-2026-0001", "CH-EA-2026-0908")))
    report = _check(ea, context)
    assert report.document is None
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "XSD" and "ImportAuthorizationReference" in finding.message


def test_an_emergency_flag_does_not_excuse_an_unknown_import_authorization(context: InMemoryContext) -> None:
    ea = _sub(
        _example("CH-EA-2026-0001.xml"),
        ("CH-EA-2026-0001", "CH-EA-2026-0909"),
        ("<DocumentNumber>BE-IA-2026-0001</DocumentNumber>", "<DocumentNumber>BE-IA-2026-0999</DocumentNumber>"),
        (
            "<SubstanceLine>",
            "<EmergencyDelivery><Reason>earthquake relief</Reason></EmergencyDelivery>\n  <SubstanceLine>",
        ),
    )
    report = _check(ea, context)
    assert "X-023" in _errors(report)
    assert "leaves ImportAuthorizationReference out" in next(f.hint for f in report.findings if f.rule == "X-023")


@pytest.fixture
async def registry(store_url: str) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, FixedClock(NOW), ControlTables.load(EXAMPLES / "context"))
    await engine.dispose()


async def test_the_registry_keeps_an_emergency_export_and_its_execution(registry: PermitRegistry) -> None:
    ea = _doc(_emergency_export())
    record, created = await registry.record(ea, direction=Direction.OUTBOUND, message_id="m-emergency")
    assert created and record.refers_to is None and record.status is PermitState.ISSUED
    ex = _doc(
        _sub(
            _example("CH-EX-2026-0001.xml"),
            ("CH-EA-2026-0001", "CH-EA-2026-0905"),
            ("CH-EX-2026-0001", "CH-EX-2026-0905"),
        )
    )
    await registry.record(ex, direction=Direction.OUTBOUND, message_id="m-execution")
    detail = await registry.get(DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", "CH-EA-2026-0905"))
    assert detail is not None and detail.permit.status is PermitState.SHIPPED


def test_an_endorsed_count_unit_export_takes_what_was_received(without: Without) -> None:
    """1000 tablets authorized, 600 received: the other 400 may go under a further export."""
    endorsement = _sub(
        _example("BE-EN-2026-0001.xml"),
        ("BE-EN-2026-0001", "BE-EN-2026-0901"),
        ("CH-EA-2026-0001", "CH-EA-2026-0901"),
        ("BE-IA-2026-0001", "BE-IA-2026-0901"),
        ('<GrossQuantity unitCode="KGM">2.5</GrossQuantity>', '<GrossQuantity unitCode="H87">600</GrossQuantity>'),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", "<BaseQuantityGrams>18</BaseQuantityGrams>"),
    )
    kept = (_doc(_tablet_import()), _doc(_tablet_export(1, "1000", "30")))
    report = _check(_tablet_export(2, "400", "12"), without(*DEMO_EXPORT, extra=kept))
    assert "already take 1000 H87" in _errors(report)["EA-008"][0]
    report = _check(_tablet_export(2, "400", "12"), without(*DEMO_EXPORT, extra=(*kept, _doc(endorsement))))
    assert report.document is not None, _errors(report)
