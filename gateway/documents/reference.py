"""Reference data the business rules check values against: substances, countries, units, base conversion
factors and the validity periods countries allow.

The tables ship in ``data/`` (``data/PROVENANCE.md`` says where each comes from, ``data/versions.csv`` gives
its version). An administrator replaces any of them without a release by putting a file of the same name in
an override folder and loading ``ReferenceData.load(folder)``; a bad file is refused with its name and line,
and the tables in use stay as they were.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

from gateway.documents._csv import (
    BadValue,
    ReferenceDataError,
    Row,
    TableInfo,
    decimal,
    digest,
    integer,
    one_of,
    parse_table,
    required,
    unique_index,
)
from gateway.documents.types import DocumentType

SUBSTANCES = "substances.csv"
COUNTRIES = "countries.csv"
UNITS = "units.csv"
BASE_FACTORS = "base-factors.csv"
VALIDITY_LIMITS = "validity-limits.csv"
VERSIONS = "versions.csv"
TABLES = (SUBSTANCES, COUNTRIES, UNITS, BASE_FACTORS, VALIDITY_LIMITS)

SCHEDULES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "1961": frozenset({"I", "II", "III", "IV"}),
        "1971": frozenset({"I", "II", "III", "IV"}),
        "1988": frozenset({"Table I", "Table II"}),
    }
)
Verified = Literal["yes", "partial", "no"]
UnitKind = Literal["mass", "volume", "count"]

_PACKAGED = "gateway/documents/data/"
_ALIAS = re.compile(r"^(?P<main>.*?)\s*\((?P<alias>[^)]*)\)$")
_NOT_ID = re.compile(r"[^a-z0-9]+")
_CAS = re.compile(r"^\d{2,7}-\d{2}-\d$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_UNIT = re.compile(r"^[A-Z0-9]{2,3}$")
_UNIT_SIZES = {"mass": "grams_per_unit", "volume": "millilitres_per_unit", "count": "pieces_per_unit"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Substance:
    """One row of ``substances.csv``; ``inn`` is the name without its parenthesised alias."""

    id: str
    name: str
    inn: str
    aliases: tuple[str, ...]
    incb_list: str
    treaty: str
    schedules: frozenset[str]
    trade_control: str
    cas_number: str | None
    base_content_factor: Decimal | None
    verified: Verified

    @property
    def names(self) -> frozenset[str]:
        """Every name the substance goes by, case-folded."""
        return frozenset(n.casefold() for n in (self.name, self.inn, *self.aliases))


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """A UN/ECE Rec. 20 unit code the gateway accepts; ``grams`` is None for volume and count units.

    ``size`` is one unit in its kind's measure (grams, millilitres or pieces), so quantities of one kind in
    different units compare; None when the table gives none (an override table without the column)."""

    code: str
    name: str
    kind: UnitKind
    grams: Decimal | None
    size: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseFactor:
    """The anhydrous-base content of one salt or base of a substance; only ``verified`` ones are enforced."""

    substance_id: str
    form: str
    factor: Decimal
    verified: bool
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidityLimit:
    """The longest validity a country gives one document type."""

    country: str
    document_type: DocumentType
    max_months: int
    basis: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceData:
    """All reference tables, loaded and checked together; immutable, so one instance serves every thread."""

    substances: tuple[Substance, ...]
    countries: Mapping[str, str]
    units: Mapping[str, Unit]
    base_factors: Mapping[tuple[str, str], BaseFactor]
    validity_limits: Mapping[tuple[str, DocumentType], ValidityLimit]
    tables: tuple[TableInfo, ...]
    _index: Mapping[str, Substance] = field(repr=False, compare=False)

    @classmethod
    def load(cls, folder: Path | None = None) -> ReferenceData:
        """The shipped tables, each replaced by the file of the same name in ``folder`` when there is one.

        Raises ``ReferenceDataError`` naming the file and line of the first bad value.
        """
        if folder is not None and not folder.is_dir():
            raise ReferenceDataError(str(folder), None, "is not a folder")
        files = {name: _table_bytes(name, folder) for name in TABLES}
        packaged = _versions(*_table_bytes(VERSIONS, None))
        overrides = (
            _versions(_read(folder / VERSIONS), str(folder / VERSIONS))
            if folder and _has(folder, VERSIONS)
            else {}
        )
        substances = _substances(*files[SUBSTANCES])
        countries = _countries(*files[COUNTRIES])
        ids = {s.id for s in substances}
        base_factors = _base_factors(*files[BASE_FACTORS], ids)
        validity_limits = _validity_limits(*files[VALIDITY_LIMITS], countries)
        units = _units(*files[UNITS])
        counts = {
            SUBSTANCES: len(substances),
            COUNTRIES: len(countries),
            UNITS: len(units),
            BASE_FACTORS: len(base_factors),
            VALIDITY_LIMITS: len(validity_limits),
        }
        return cls(
            substances=substances,
            countries=MappingProxyType(countries),
            units=MappingProxyType(units),
            base_factors=MappingProxyType(base_factors),
            validity_limits=MappingProxyType(validity_limits),
            tables=tuple(
                _info(name, *files[name], packaged if files[name][1].startswith(_PACKAGED) else overrides, n)
                for name, n in counts.items()
            ),
            _index=MappingProxyType(_substance_index(substances, files[SUBSTANCES][1])),
        )

    @classmethod
    def default(cls) -> ReferenceData:
        """The tables shipped with the gateway, loaded once per process."""
        return _default()

    @property
    def version(self) -> str:
        """One line naming the version of every table, for reports and logs."""
        return "; ".join(f"{t.name} {t.version}" for t in self.tables)

    def substance(self, code_or_name: str) -> Substance | None:
        """Look a substance up by gateway id, name, INN, alias or CAS number (case-insensitive)."""
        return self._index.get(code_or_name.strip().casefold())

    def is_country(self, code: str) -> bool:
        """True for an ISO 3166-1 alpha-2 code in the countries table (exact, upper case)."""
        return code in self.countries

    def unit(self, code: str) -> Unit | None:
        return self.units.get(code)

    def base_factor(self, substance_id: str, form: str | None) -> BaseFactor | None:
        """The factor for ``form`` (a salt, or None for the base itself) of a substance, if the table has it."""
        return self.base_factors.get((substance_id, _form_key(form)))

    def validity_limit(self, country: str, document_type: DocumentType) -> ValidityLimit | None:
        return self.validity_limits.get((country, document_type))

    def unverified_substances(self) -> tuple[Substance, ...]:
        """Rows not yet confirmed against the current INCB Yellow, Green and Red Lists."""
        return tuple(s for s in self.substances if s.verified != "yes")


def substance_id(name: str) -> str:
    """The gateway id derived from a substances.csv name: ``diamorphine (heroin)`` → ``diamorphine-heroin``."""
    return _NOT_ID.sub("-", name.casefold()).strip("-")


def substance(code_or_inn: str) -> Substance | None:
    """``ReferenceData.default().substance``."""
    return _default().substance(code_or_inn)


def substances() -> tuple[Substance, ...]:
    return _default().substances


def is_country(code: str) -> bool:
    """``ReferenceData.default().is_country``."""
    return _default().is_country(code)


def country_name(code: str) -> str | None:
    return _default().countries.get(code)


def grams_per_unit(unit_code: str) -> Decimal | None:
    """Grams in one ``unit_code``; None for a count or volume unit or an unknown code."""
    unit = _default().unit(unit_code)
    return unit.grams if unit else None


@cache
def _default() -> ReferenceData:
    return ReferenceData.load(None)


def _has(folder: Path | None, name: str) -> bool:
    return folder is not None and (folder / name).is_file()


def _table_bytes(name: str, folder: Path | None) -> tuple[bytes, str]:
    if folder is not None and _has(folder, name):
        return _read(folder / name), str(folder / name)
    return (resources.files("gateway.documents") / "data" / name).read_bytes(), f"{_PACKAGED}{name}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReferenceDataError(str(path), None, f"cannot be read: {exc.strerror}") from None


def _versions(data: bytes, source: str) -> dict[str, tuple[str, str]]:
    """versions.csv: file name → (version, provenance)."""
    rows = parse_table(
        data,
        source,
        ("file", "version", "provenance"),
        lambda r: (required(r, "file"), required(r, "version"), r["provenance"]),
    )
    return {name: (version, provenance) for _, (name, version, provenance) in rows}


def _info(name: str, data: bytes, source: str, versions: dict[str, tuple[str, str]], rows: int) -> TableInfo:
    fallback = ("unversioned", "") if source.startswith(_PACKAGED) else (f"sha256:{digest(data)[:12]}", source)
    version, provenance = versions.get(name, fallback)
    return TableInfo(
        name=name, source=source, version=version, provenance=provenance, sha256=digest(data), rows=rows
    )


def _substances(data: bytes, source: str) -> tuple[Substance, ...]:
    columns = (
        "name",
        "incb_list",
        "treaty",
        "schedule_or_table",
        "trade_control",
        "cas_number",
        "base_content_factor",
        "verified",
    )
    rows = parse_table(data, source, columns, _substance_from_row)
    unique_index(rows, source, lambda s: s.id, "substance id")
    return tuple(item for _, item in rows)


def _substance_from_row(row: Row) -> Substance:
    name = required(row, "name")
    treaty = one_of(row, "treaty", SCHEDULES)
    schedules = frozenset(required(row, "schedule_or_table").split(" and "))
    if not schedules <= SCHEDULES[treaty]:
        raise BadValue(
            f"schedule_or_table {row['schedule_or_table']!r} is not a schedule or table of the {treaty} treaty"
        )
    cas = row["cas_number"] or None
    if cas and not _CAS.match(cas):
        raise BadValue(f"cas_number {cas!r} is not a CAS registry number (108-24-7)")
    factor = decimal(row, "base_content_factor") if row["base_content_factor"] else None
    if factor is not None and factor > 1:
        raise BadValue(f"base_content_factor {factor} is above 1")
    match = _ALIAS.match(name)
    inn, aliases = (match["main"], (match["alias"],)) if match else (name, ())
    verified = one_of(row, "verified", ("yes", "partial", "no"))
    return Substance(
        id=substance_id(name),
        name=name,
        inn=inn,
        aliases=aliases,
        incb_list=row["incb_list"],
        treaty=treaty,
        schedules=schedules,
        trade_control=row["trade_control"],
        cas_number=cas,
        base_content_factor=factor,
        verified=cast(Verified, verified),
    )


def _substance_index(items: tuple[Substance, ...], source: str) -> dict[str, Substance]:
    index: dict[str, Substance] = {}
    for item in items:
        keys = {item.id, *item.names} | ({item.cas_number} if item.cas_number else set())
        for key in keys:
            other = index.setdefault(key, item)
            if other is not item:
                raise ReferenceDataError(source, None, f"{key!r} names both {other.name!r} and {item.name!r}")
    return index


def _countries(data: bytes, source: str) -> dict[str, str]:
    def parse(row: Row) -> tuple[str, str]:
        code = required(row, "alpha_2")
        if not _COUNTRY.match(code):
            raise BadValue(f"alpha_2 {code!r} is not two upper-case letters")
        return code, required(row, "name")

    rows = parse_table(data, source, ("alpha_2", "name"), parse)
    return {code: name for code, name in unique_index(rows, source, lambda r: r[0], "country").values()}


def _units(data: bytes, source: str) -> dict[str, Unit]:
    def parse(row: Row) -> Unit:
        code = required(row, "code")
        if not _UNIT.match(code):
            raise BadValue(f"code {code!r} is not a UN/ECE Rec. 20 code (2 or 3 upper-case letters or digits)")
        kind = one_of(row, "kind", ("mass", "volume", "count"))
        sizes = {}
        for of_kind, column in _UNIT_SIZES.items():
            if of_kind == kind and (kind == "mass" or row.get(column)):
                sizes[of_kind] = decimal(row, column)
            elif row.get(column):
                raise BadValue(f"{column} must be empty for a {kind} unit")
        grams = sizes.get("mass")
        return Unit(
            code=code, name=required(row, "name"), kind=cast(UnitKind, kind), grams=grams, size=sizes.get(kind)
        )

    # millilitres_per_unit and pieces_per_unit came later: an override table without them still loads
    rows = parse_table(data, source, ("code", "name", "kind", "grams_per_unit"), parse)
    return unique_index(rows, source, lambda u: u.code, "unit code")


def _base_factors(data: bytes, source: str, ids: set[str]) -> dict[tuple[str, str], BaseFactor]:
    def parse(row: Row) -> BaseFactor:
        substance = required(row, "substance")
        if substance not in ids:
            raise BadValue(f"substance {substance!r} is not a substance id of {SUBSTANCES}")
        factor = decimal(row, "factor")
        if factor > 1:
            raise BadValue(f"factor {factor} is above 1")
        verified = one_of(row, "verified", ("yes", "no")) == "yes"
        return BaseFactor(
            substance_id=substance,
            form=_form_key(row["salt_or_base_form"]),
            factor=factor,
            verified=verified,
            source=row.get("source", ""),
        )

    rows = parse_table(data, source, ("substance", "salt_or_base_form", "factor", "verified"), parse)
    return unique_index(rows, source, lambda f: (f.substance_id, f.form), "substance and form")


def _validity_limits(
    data: bytes, source: str, countries: dict[str, str]
) -> dict[tuple[str, DocumentType], ValidityLimit]:
    def parse(row: Row) -> ValidityLimit:
        country = required(row, "country")
        if country not in countries:
            raise BadValue(f"country {country!r} is not in {COUNTRIES}")
        return ValidityLimit(
            country=country,
            document_type=DocumentType(one_of(row, "document_type", DocumentType)),
            max_months=integer(row, "max_months"),
            basis=required(row, "basis"),
        )

    rows = parse_table(data, source, ("country", "document_type", "max_months", "basis"), parse)
    return unique_index(rows, source, lambda v: (v.country, v.document_type), "country and document type")


def _form_key(form: str | None) -> str:
    return " ".join((form or "").casefold().split())
