from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import is_country, reference, substance

DATA = Path(reference.__file__).parent / "data"


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


def test_mass_units_convert_to_grams() -> None:
    assert reference.grams_per_unit("KGM") == Decimal(1000)
    assert reference.grams_per_unit("MGM") == Decimal("0.001")
    assert reference.grams_per_unit("H87") is None


def test_reference_files_match_their_provenance() -> None:
    provenance = (DATA / "PROVENANCE.md").read_text()
    for name in ("substances.csv", "countries.csv"):
        digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()[:16]
        assert f"`{name}`" in provenance and f"`{digest}`" in provenance, name
