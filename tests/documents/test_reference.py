from __future__ import annotations

import hashlib
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import (
    ReferenceData,
    ReferenceDataError,
    is_country,
    reference,
    substance,
    validate_document,
)

DATA = Path(reference.__file__).parent / "data"
SHARED_COPIES = ("substances.csv", "countries.csv")


@pytest.mark.parametrize("key", ["morphine", "MORPHINE", " morphine "])
def test_substance_by_id_or_inn(key: str) -> None:
    found = substance(key)
    assert found and (found.id, found.treaty, found.schedules) == ("morphine", "1961", frozenset({"I"}))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("diamorphine-heroin", "diamorphine (heroin)"),
        ("diamorphine", "diamorphine (heroin)"),
        ("heroin", "diamorphine (heroin)"),
        ("LSD", "lysergide (LSD)"),
        ("299-42-3", "ephedrine"),
        ("3-4-methylenedioxyphenyl-2-propanone", "3,4-methylenedioxyphenyl-2-propanone"),
    ],
)
def test_substance_by_alias_cas_or_derived_id(key: str, expected: str) -> None:
    found = substance(key)
    assert found and found.name == expected


def test_unknown_substance() -> None:
    assert substance("tapentadol") is None


def test_schedule_lists_are_split() -> None:
    found = substance("heroin")
    assert found and found.schedules == frozenset({"I", "IV"})


def test_all_substances_load_with_unique_ids() -> None:
    ids = [s.id for s in reference.substances()]
    assert len(ids) == 80 == len(set(ids))


@pytest.mark.parametrize(
    ("code", "known"), [("BE", True), ("CH", True), ("XK", False), ("be", False), ("", False)]
)
def test_is_country(code: str, known: bool) -> None:
    assert is_country(code) is known


def test_units_come_from_their_table() -> None:
    units = ReferenceData.default().units
    assert units["KGM"].grams == Decimal(1000) and units["MGM"].grams == Decimal("0.001")
    assert (units["H87"].kind, units["H87"].grams) == ("count", None)
    assert (units["LTR"].kind, units["LTR"].grams) == ("volume", None)
    assert reference.grams_per_unit("KGM") == Decimal(1000) and reference.grams_per_unit("XX") is None


def test_every_table_has_a_version_and_provenance() -> None:
    tables = ReferenceData.default().tables
    assert [t.name for t in tables] == list(reference.TABLES)
    for table in tables:
        assert table.version == "2026-11-26" and table.provenance, table.name
        assert table.sha256 == hashlib.sha256((DATA / table.name).read_bytes()).hexdigest()
    assert "substances.csv 2026-11-26" in ReferenceData.default().version


def test_shared_copies_match_their_provenance() -> None:
    provenance = (DATA / "PROVENANCE.md").read_text()
    for name in SHARED_COPIES:
        digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()[:16]
        assert f"`{name}`" in provenance and f"`{digest}`" in provenance, name
    for name in reference.TABLES:
        assert f"`{name}`" in provenance, name


def test_provenance_names_every_substance_not_yet_verified() -> None:
    provenance = (DATA / "PROVENANCE.md").read_text()
    unverified = ReferenceData.default().unverified_substances()
    assert len(unverified) == 68
    for item in unverified:
        assert f"{item.name} ({item.verified})" in provenance, item.name


def test_no_shipped_factor_is_verified_yet() -> None:
    assert not any(f.verified for f in ReferenceData.default().base_factors.values())


def override(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_an_override_folder_replaces_only_the_tables_it_holds(tmp_path: Path) -> None:
    rows = (DATA / "substances.csv").read_text() + (
        "tapentadol,Yellow,1961,I,import certificate + export authorization (1961 Art.31),,,,no,example,example,\n"
    )
    loaded = ReferenceData.load(override(tmp_path, "substances.csv", rows))
    assert loaded.substance("tapentadol") is not None and substance("tapentadol") is None
    by_name = {t.name: t for t in loaded.tables}
    assert by_name["substances.csv"].source == str(tmp_path / "substances.csv")
    assert by_name["substances.csv"].version.startswith("sha256:")
    assert by_name["countries.csv"].version == "2026-11-26"


def test_an_override_can_declare_its_version(tmp_path: Path) -> None:
    shutil.copy(DATA / "units.csv", tmp_path / "units.csv")
    override(tmp_path, "versions.csv", 'file,version,provenance\nunits.csv,2027-01,"Rec. 20 revision 18"\n')
    (units,) = [t for t in ReferenceData.load(tmp_path).tables if t.name == "units.csv"]
    assert (units.version, units.provenance) == ("2027-01", "Rec. 20 revision 18")


def test_a_verified_factor_is_enforced_and_silences_the_warning(tmp_path: Path, ia_bytes: bytes) -> None:
    folder = override(
        tmp_path,
        "base-factors.csv",
        "substance,salt_or_base_form,factor,verified,source\n"
        "morphine,Morphine sulfate pentahydrate,0.7520,yes,test\ncodeine,codeine phosphate hemihydrate,0.7300,yes,test\n",
    )
    tables = ReferenceData.load(folder)
    doc = validate_document(
        ia_bytes.replace(b">1474.000<", b">1460.000<").replace(b">0.7370<", b">0.7300<"), reference=tables
    )
    assert [f.rule for f in doc.findings if f.severity != "info"] == []
    from gateway.documents import PermitDocumentRejected

    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(ia_bytes, reference=tables, as_of=date(2026, 11, 26))
    (finding,) = [f for f in info.value.findings if f.severity == "error"]
    assert finding.rule == "X-019" and "0.7300" in finding.message


BAD_TABLES = [
    ("substances.csv", "name,incb_list,treaty\nmorphine,Yellow,1961\n", "substances.csv:1: the header lacks"),
    (
        "substances.csv",
        "name,incb_list,treaty,schedule_or_table,trade_control,cas_number,base_content_factor,verified\n"
        "morphine,Yellow,1961,I,x,,,yes\nmorphine,Yellow,1962,I,x,,,yes\n",
        "substances.csv:3: treaty is '1962'",
    ),
    (
        "substances.csv",
        "name,incb_list,treaty,schedule_or_table,trade_control,cas_number,base_content_factor,verified\n"
        "morphine,Yellow,1961,Table I,x,,,yes\n",
        "substances.csv:2: schedule_or_table 'Table I' is not a schedule or table of the 1961 treaty",
    ),
    (
        "substances.csv",
        "name,incb_list,treaty,schedule_or_table,trade_control,cas_number,base_content_factor,verified\n"
        "morphine,Yellow,1961,I,x,,,yes\nMorphine,Yellow,1961,I,x,,,yes\n",
        "substances.csv:3: substance id morphine appears twice",
    ),
    (
        "substances.csv",
        "name,incb_list,treaty,schedule_or_table,trade_control,cas_number,base_content_factor,verified\n"
        "morphine,Yellow,1961,I,x,57-27-2x,,yes\n",
        "substances.csv:2: cas_number",
    ),
    ("countries.csv", "alpha_2,name\nBE,Belgium\nbe,Belgium\n", "countries.csv:3: alpha_2 'be'"),
    ("countries.csv", "alpha_2,name\nBE,Belgium,extra\n", "countries.csv:2: wrong number of fields"),
    (
        "units.csv",
        "code,name,kind,grams_per_unit\nKGM,kilogram,mass,lots\n",
        "units.csv:2: grams_per_unit is 'lots', not a number",
    ),
    (
        "units.csv",
        "code,name,kind,grams_per_unit\nH87,piece,count,1\n",
        "units.csv:2: grams_per_unit must be empty",
    ),
    ("units.csv", "code,name,kind,grams_per_unit\nKGM,kilogram,weight,1000\n", "units.csv:2: kind is 'weight'"),
    (
        "base-factors.csv",
        "substance,salt_or_base_form,factor,verified\ntapentadol,tapentadol hydrochloride,0.87,yes\n",
        "base-factors.csv:2: substance 'tapentadol'",
    ),
    (
        "base-factors.csv",
        "substance,salt_or_base_form,factor,verified\nmorphine,morphine sulfate,1.2,yes\n",
        "base-factors.csv:2: factor 1.2 is above 1",
    ),
    (
        "validity-limits.csv",
        "country,document_type,max_months,basis\nDE,ImportLicence,3,law\n",
        "validity-limits.csv:2: document_type is 'ImportLicence'",
    ),
    (
        "validity-limits.csv",
        "country,document_type,max_months,basis\nDE,ImportAuthorization,three,law\n",
        "validity-limits.csv:2: max_months is 'three'",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_TABLES, ids=[e for _, _, e in BAD_TABLES])
def test_a_bad_table_is_refused_with_its_file_and_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(ReferenceDataError) as info:
        ReferenceData.load(override(tmp_path, name, text))
    assert str(info.value).startswith(str(tmp_path) + "/")
    assert expected in str(info.value)


def test_a_table_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "countries.csv").write_bytes("alpha_2,name\nCI,Côte d'Ivoire\n".encode("latin-1"))
    with pytest.raises(ReferenceDataError, match=r"countries\.csv: not UTF-8"):
        ReferenceData.load(tmp_path)


def test_an_override_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="is not a folder"):
        ReferenceData.load(tmp_path / "missing")
