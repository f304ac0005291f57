"""Reference data the business rules check values against: substances, countries, units.

The CSVs in ``data/`` are read once per process (see ``data/PROVENANCE.md`` for where they come from).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from types import MappingProxyType

from gateway.errors import GatewayError

# UN/ECE Rec. 20 codes a permit quantity may use, with grams per unit; None for count and volume units,
# whose base quantity cannot be recomputed from the gross quantity alone.
UNITS: MappingProxyType[str, Decimal | None] = MappingProxyType(
    {
        "KGM": Decimal(1000),
        "GRM": Decimal(1),
        "MGM": Decimal("0.001"),
        "MC": Decimal("0.000001"),
        "LTR": None,
        "MLT": None,
        "H87": None,
    }
)

_ALIAS = re.compile(r"^(?P<main>.*?)\s*\((?P<alias>[^)]*)\)$")
_NOT_ID = re.compile(r"[^a-z0-9]+")


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
    verified: str

    @property
    def names(self) -> frozenset[str]:
        """Every name the substance goes by, case-folded."""
        return frozenset(n.casefold() for n in (self.name, self.inn, *self.aliases))


def substance_id(name: str) -> str:
    """The gateway id derived from a substances.csv name: ``diamorphine (heroin)`` → ``diamorphine-heroin``."""
    return _NOT_ID.sub("-", name.casefold()).strip("-")


def substance(code_or_inn: str) -> Substance | None:
    """Look a substance up by gateway id, name, INN, alias or CAS number (case-insensitive)."""
    return _substance_index().get(code_or_inn.strip().casefold())


def substances() -> tuple[Substance, ...]:
    return _substances()


def is_country(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 code in countries.csv (exact, upper case)."""
    return code in _countries()


def country_name(code: str) -> str | None:
    return _countries().get(code)


def grams_per_unit(unit_code: str) -> Decimal | None:
    """Grams in one ``unit_code``; None for a count or volume unit or an unknown code."""
    return UNITS.get(unit_code)


def _read_csv(filename: str) -> list[dict[str, str]]:
    text = (resources.files("gateway.documents") / "data" / filename).read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        if None in row or None in row.values():
            raise GatewayError(f"{filename} line {reader.line_num}: wrong number of fields")
        rows.append({k: v.strip() for k, v in row.items()})
    return rows


def _substance_from_row(row: dict[str, str]) -> Substance:
    name = row["name"]
    match = _ALIAS.match(name)
    inn, aliases = (match["main"], (match["alias"],)) if match else (name, ())
    factor = row["base_content_factor"]
    return Substance(
        id=substance_id(name),
        name=name,
        inn=inn,
        aliases=aliases,
        incb_list=row["incb_list"],
        treaty=row["treaty"],
        schedules=frozenset(row["schedule_or_table"].split(" and ")),
        trade_control=row["trade_control"],
        cas_number=row["cas_number"] or None,
        base_content_factor=Decimal(factor) if factor else None,
        verified=row["verified"],
    )


@cache
def _substances() -> tuple[Substance, ...]:
    return tuple(_substance_from_row(row) for row in _read_csv("substances.csv"))


@cache
def _substance_index() -> dict[str, Substance]:
    index: dict[str, Substance] = {}
    for item in _substances():
        keys = {item.id, *item.names} | ({item.cas_number} if item.cas_number else set())
        for key in keys:
            other = index.setdefault(key, item)
            if other is not item:
                raise GatewayError(f"substances.csv: {key!r} names both {other.name!r} and {item.name!r}")
    return index


@cache
def _countries() -> dict[str, str]:
    return {row["alpha_2"]: row["name"] for row in _read_csv("countries.csv")}
