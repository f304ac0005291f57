"""The control tables an administrator maintains: INCB estimates and assessments, Art. 13 import
prohibitions, and which schedules need an import authorization in which country.

Each is a CSV file (``estimates.csv``, ``prohibitions.csv``, ``import-requirements.csv``) that
``ControlTables.load`` reads from a folder; a missing file is an empty table, a bad one is refused with its
file and line. The cross-document rules read them through a ``DocumentContext``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
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
    iso_date,
    one_of,
    parse_table,
    required,
    unique_index,
)
from gateway.documents.reference import SCHEDULES, ReferenceData

ESTIMATES = "estimates.csv"
PROHIBITIONS = "prohibitions.csv"
IMPORT_REQUIREMENTS = "import-requirements.csv"
CONTROL_TABLES = (ESTIMATES, PROHIBITIONS, IMPORT_REQUIREMENTS)

EstimateKind = Literal["estimate", "assessment"]

# What the treaties themselves require, for countries the registry does not list: 1961 Art. 31 for
# Schedules I, II and IV (IV drugs are all in I), 1971 Art. 12(1) for Schedules I and II.
TREATY_REQUIRES_IMPORT_AUTHORIZATION = frozenset(
    {("1961", "I"), ("1961", "II"), ("1961", "IV"), ("1971", "I"), ("1971", "II")}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """A country's annual estimate (1961 Art. 19) or assessment (1971, ECOSOC 1981/7) for one substance."""

    country: str
    substance_id: str
    year: int
    base_grams: Decimal
    kind: EstimateKind
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Prohibition:
    """A 1971 Art. 13 notification: the country prohibits the import of the substance."""

    country: str
    substance_id: str
    since: date | None
    reference: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRequirement:
    """Whether a country requires an import authorization for a treaty schedule (E/INCB lists)."""

    country: str
    treaty: str
    schedule: str
    required: bool
    basis: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlTables:
    estimates: Mapping[tuple[str, str, int], Estimate] = field(default_factory=lambda: MappingProxyType({}))
    prohibitions: Mapping[tuple[str, str], Prohibition] = field(default_factory=lambda: MappingProxyType({}))
    import_requirements: Mapping[tuple[str, str, str], ImportRequirement] = field(
        default_factory=lambda: MappingProxyType({})
    )
    tables: tuple[TableInfo, ...] = ()

    @classmethod
    def load(cls, folder: Path, reference: ReferenceData | None = None) -> ControlTables:
        """The tables in ``folder``; a table whose file is missing is empty."""
        if not folder.is_dir():
            raise ReferenceDataError(str(folder), None, "is not a folder")
        return cls.from_files((folder / name for name in CONTROL_TABLES if (folder / name).is_file()), reference)

    @classmethod
    def from_files(cls, files: Iterable[Path], reference: ReferenceData | None = None) -> ControlTables:
        """The tables in ``files``, each recognised by its name; the same table twice is refused."""
        ref = reference or ReferenceData.default()
        read: dict[str, tuple[bytes, str]] = {}
        for path in files:
            if path.name not in CONTROL_TABLES:
                raise ReferenceDataError(str(path), None, f"is not a control table ({', '.join(CONTROL_TABLES)})")
            if path.name in read:
                raise ReferenceDataError(str(path), None, f"{path.name} is also given as {read[path.name][1]}")
            read[path.name] = (_read(path), str(path))
        estimates = _estimates(*read[ESTIMATES], ref) if ESTIMATES in read else {}
        prohibitions = _prohibitions(*read[PROHIBITIONS], ref) if PROHIBITIONS in read else {}
        requirements = _requirements(*read[IMPORT_REQUIREMENTS], ref) if IMPORT_REQUIREMENTS in read else {}
        rows = {ESTIMATES: len(estimates), PROHIBITIONS: len(prohibitions), IMPORT_REQUIREMENTS: len(requirements)}
        return cls(
            estimates=MappingProxyType(estimates),
            prohibitions=MappingProxyType(prohibitions),
            import_requirements=MappingProxyType(requirements),
            tables=tuple(_info(name, *read[name], rows[name]) for name in CONTROL_TABLES if name in read),
        )

    def estimate(self, country: str, substance_id: str, year: int) -> Estimate | None:
        return self.estimates.get((country, substance_id, year))

    def prohibition(self, country: str, substance_id: str) -> Prohibition | None:
        return self.prohibitions.get((country, substance_id))

    def import_authorization_required(self, country: str, treaty: str, schedule: str) -> bool:
        """The registry's answer for the country, else what the treaty itself requires."""
        listed = self.import_requirements.get((country, treaty, schedule))
        if listed is not None:
            return listed.required
        return (treaty, schedule) in TREATY_REQUIRES_IMPORT_AUTHORIZATION


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReferenceDataError(str(path), None, f"cannot be read: {exc.strerror}") from None


def _info(name: str, data: bytes, source: str, rows: int) -> TableInfo:
    sha = digest(data)
    return TableInfo(
        name=name, source=source, version=f"sha256:{sha[:12]}", provenance=source, sha256=sha, rows=rows
    )


def _country(row: Row, ref: ReferenceData) -> str:
    country = required(row, "country")
    if not ref.is_country(country):
        raise BadValue(f"country {country!r} is not an ISO 3166-1 alpha-2 code of the reference data")
    return country


def _substance(row: Row, ref: ReferenceData) -> tuple[str, str]:
    """(substance id, treaty) of the row's substance, which may be given by id, name, INN or CAS number."""
    found = ref.substance(required(row, "substance"))
    if found is None:
        raise BadValue(f"substance {row['substance']!r} is not in the substances reference table")
    return found.id, found.treaty


def _estimates(data: bytes, source: str, ref: ReferenceData) -> dict[tuple[str, str, int], Estimate]:
    def parse(row: Row) -> Estimate:
        substance, treaty = _substance(row, ref)
        kind = one_of(row, "kind", ("estimate", "assessment"))
        expected = "estimate" if treaty == "1961" else "assessment" if treaty == "1971" else None
        if kind != expected:
            raise BadValue(
                f"kind is {kind}, but {substance} is a {treaty} substance (estimates are for 1961, "
                "assessments for 1971)"
            )
        year = required(row, "year")
        if not (len(year) == 4 and year.isdigit()):
            raise BadValue(f"year {year!r} is not a four-digit year")
        return Estimate(
            country=_country(row, ref),
            substance_id=substance,
            year=int(year),
            base_grams=decimal(row, "base_grams", positive=False),
            kind=cast(EstimateKind, kind),
            source=row.get("source", ""),
        )

    rows = parse_table(data, source, ("country", "substance", "year", "base_grams", "kind"), parse)
    return unique_index(rows, source, lambda e: (e.country, e.substance_id, e.year), "country, substance and year")


def _prohibitions(data: bytes, source: str, ref: ReferenceData) -> dict[tuple[str, str], Prohibition]:
    def parse(row: Row) -> Prohibition:
        return Prohibition(
            country=_country(row, ref),
            substance_id=_substance(row, ref)[0],
            since=iso_date(row, "since"),
            reference=required(row, "reference"),
        )

    rows = parse_table(data, source, ("country", "substance", "since", "reference"), parse)
    return unique_index(rows, source, lambda p: (p.country, p.substance_id), "country and substance")


def _requirements(data: bytes, source: str, ref: ReferenceData) -> dict[tuple[str, str, str], ImportRequirement]:
    def parse(row: Row) -> ImportRequirement:
        treaty = one_of(row, "treaty", ("1961", "1971"))
        return ImportRequirement(
            country=_country(row, ref),
            treaty=treaty,
            schedule=one_of(row, "schedule", sorted(SCHEDULES[treaty])),
            required=one_of(row, "import_authorization_required", ("yes", "no")) == "yes",
            basis=required(row, "basis"),
        )

    columns = ("country", "treaty", "schedule", "import_authorization_required", "basis")
    rows = parse_table(data, source, columns, parse)
    return unique_index(rows, source, lambda r: (r.country, r.treaty, r.schedule), "country, treaty and schedule")
