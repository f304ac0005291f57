"""The control tables and ``InMemoryContext``, over the examples' context (valid/ and context/)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import (
    ControlTables,
    DocumentContext,
    DocumentKey,
    DocumentStatus,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    ReferenceDataError,
    validate_document,
)
from tests.documents.conftest import AS_OF, EXAMPLES

IA, EA = DocumentType.IMPORT_AUTHORIZATION, DocumentType.EXPORT_AUTHORIZATION
BE_IA_1 = DocumentKey(IA, "BE", "BE-IA-2026-0001")
BE_IA_5 = DocumentKey(IA, "BE", "BE-IA-2026-0005")
BE_IA_7 = DocumentKey(IA, "BE", "BE-IA-2026-0007")
DE_IA = DocumentKey(IA, "DE", "DE-IA-2026-0417")
CH_EA_1 = DocumentKey(EA, "CH", "CH-EA-2026-0001")
CH_EA_4 = DocumentKey(EA, "CH", "CH-EA-2026-0004")


def test_it_is_a_document_context() -> None:
    context: DocumentContext = InMemoryContext()
    assert context.find(BE_IA_1) is None and context.status(BE_IA_1, as_of=AS_OF) is None


def test_find_gives_the_current_version(context: InMemoryContext) -> None:
    amended = context.find(DE_IA)
    assert amended is not None and amended.version == 2
    assert amended.lines[0].base_quantity_grams == Decimal("21622.500")


def test_a_duplicate_is_the_same_key_with_other_content(
    context: InMemoryContext, known_documents: dict[str, PermitDocument]
) -> None:
    original = known_documents["BE-IA-2026-0001.xml"]
    assert not context.is_duplicate(BE_IA_1, original.content_sha256)
    assert context.is_duplicate(BE_IA_1, "0" * 64)
    assert not context.is_duplicate(DocumentKey(IA, "BE", "BE-IA-2026-0999"), "0" * 64)
    assert not context.is_duplicate(DE_IA, known_documents["DE-IA-2026-0417.xml"].content_sha256), "amended"


@pytest.mark.parametrize(
    ("key", "day", "status"),
    [
        (BE_IA_1, AS_OF, DocumentStatus.OPEN),
        (DE_IA, date(2026, 11, 24), DocumentStatus.OPEN),
        (DE_IA, date(2026, 11, 25), DocumentStatus.CANCELLED),
        (CH_EA_1, AS_OF, DocumentStatus.CLOSED),
        (CH_EA_4, AS_OF, DocumentStatus.OPEN),
        (BE_IA_7, AS_OF, DocumentStatus.EXPIRED),
        (BE_IA_7, date(2026, 8, 3), DocumentStatus.OPEN),
        (DocumentKey(IA, "BE", "BE-IA-2026-0999"), AS_OF, None),
    ],
)
def test_status(context: InMemoryContext, key: DocumentKey, day: date, status: DocumentStatus | None) -> None:
    assert context.status(key, as_of=day) is status


def test_remaining_counts_the_endorsed_quantity_once_endorsed(
    known_documents: dict[str, PermitDocument], tables: ControlTables
) -> None:
    documents = [d for name, d in known_documents.items() if name != "BE-EN-2026-0001.xml"]
    short = (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes()
    short = short.replace(b'"KGM">2.5<', b'"KGM">2<').replace(b">1880.000<", b">1504.000<")
    endorsed = InMemoryContext([*documents, validate_document(short, as_of=AS_OF)], tables)
    assert InMemoryContext(documents, tables).remaining_base_grams(BE_IA_1, 1) == Decimal("1880.000")
    assert endorsed.remaining_base_grams(BE_IA_1, 1) == Decimal("2256.000")


def test_remaining_per_line(context: InMemoryContext) -> None:
    assert context.remaining_base_grams(BE_IA_1, 1) == Decimal("1880.000")
    assert context.remaining_base_grams(BE_IA_1, 1, excluding=CH_EA_1) == Decimal("3760.000")
    assert context.remaining_base_grams(BE_IA_1, 2) == Decimal("1474.000")
    assert context.remaining_base_grams(BE_IA_1, 3) is None
    assert context.remaining_base_grams(BE_IA_5, 1) == Decimal("737.000")


def test_an_import_authorization_drawn_to_nothing_is_closed(
    known_documents: dict[str, PermitDocument], tables: ControlTables
) -> None:
    rest = (
        (EXAMPLES / "context" / "CH-EA-2026-0004.xml").read_bytes().replace(b"CH-EA-2026-0004", b"CH-EA-2026-0014")
    )
    second = validate_document(rest, as_of=AS_OF)
    context = InMemoryContext([*known_documents.values(), second], tables)
    assert context.remaining_base_grams(BE_IA_5, 1) == 0
    assert context.status(BE_IA_5, as_of=AS_OF) is DocumentStatus.CLOSED


def test_exports_and_endorsements_against(context: InMemoryContext) -> None:
    assert context.exports_against(BE_IA_5) == (CH_EA_4,)
    assert context.exports_against(BE_IA_5, excluding=CH_EA_4) == ()
    assert context.exports_against(DE_IA) == ()
    assert [k.number for k in context.endorsements_of(CH_EA_1)] == ["BE-EN-2026-0001"]
    assert context.endorsements_of(CH_EA_4) == ()


def test_exported_quantity_is_the_execution_else_the_authorization(context: InMemoryContext) -> None:
    assert context.exported_base_grams(CH_EA_1, 1) == Decimal("1880.000")  # CH-EX-2026-0001
    assert context.exported_base_grams(CH_EA_4, 1) == Decimal("737.000")  # no execution
    assert context.exported_base_grams(CH_EA_4, 2) is None


def test_dispatch_date_is_the_earliest_execution(context: InMemoryContext) -> None:
    assert context.dispatch_date(CH_EA_1) == date(2026, 11, 25)  # CH-EX-2026-0001
    assert context.dispatch_date(DocumentKey(EA, "CH", "CH-EA-2026-0015")) == date(2026, 11, 23)  # CH-EX-2026-0005
    assert context.dispatch_date(CH_EA_4) is None, "no execution"


def test_authorized_imports_of_the_year(context: InMemoryContext) -> None:
    assert context.authorized_base_grams(IA, "BE", "morphine", 2026) == Decimal("8272.000")  # with BE-IA-2026-0009
    assert context.authorized_base_grams(IA, "BE", "morphine", 2026, excluding=BE_IA_1) == Decimal("4512.000")
    assert context.authorized_base_grams(IA, "BE", "morphine", 2027) == 0
    assert context.authorized_base_grams(IA, "DE", "methylphenidate", 2026) == 0, "cancelled"
    assert context.authorized_base_grams(EA, "BE", "codeine", 2026) == Decimal("737.000")


def test_without_leaves_out_that_very_document(
    context: InMemoryContext, known_documents: dict[str, PermitDocument]
) -> None:
    smaller = context.without(known_documents["CH-EA-2026-0001.xml"])
    assert smaller.find(CH_EA_1) is None and context.find(CH_EA_1) is not None
    assert len(smaller.documents) == len(context.documents) - 1


def test_control_tables_of_the_examples(tables: ControlTables) -> None:
    estimate = tables.estimate("BE", "morphine", 2026)
    assert estimate and (estimate.base_grams, estimate.kind) == (Decimal(60000), "estimate")
    assert tables.estimate("DE", "methylphenidate", 2026).kind == "assessment"  # type: ignore[union-attr]
    assert tables.estimate("BE", "morphine", 2027) is None
    assert tables.prohibition("BE", "pentobarbital") is not None and tables.prohibition("BE", "morphine") is None
    assert [t.name for t in tables.tables] == ["estimates.csv", "prohibitions.csv", "import-requirements.csv"]


@pytest.mark.parametrize(
    ("country", "treaty", "schedule", "required"),
    [
        ("FR", "1971", "III", True),  # listed
        ("BE", "1971", "III", False),  # listed
        ("DE", "1961", "I", True),  # treaty
        ("DE", "1961", "III", False),  # treaty: preparations are exempt
        ("DE", "1971", "II", True),
        ("DE", "1971", "IV", False),
    ],
)
def test_import_authorization_requirements(
    tables: ControlTables, country: str, treaty: str, schedule: str, required: bool
) -> None:
    assert tables.import_authorization_required(country, treaty, schedule) is required


def test_a_folder_without_tables_gives_empty_ones(tmp_path: Path) -> None:
    empty = ControlTables.load(tmp_path)
    assert (dict(empty.estimates), dict(empty.prohibitions), empty.tables) == ({}, {}, ())
    with pytest.raises(ReferenceDataError, match="is not a folder"):
        ControlTables.load(tmp_path / "missing")


BAD_CONTROL = [
    ("estimates.csv", "country,substance,year,base_grams,kind\nXK,morphine,2026,1,estimate\n", ":2: country 'XK'"),
    ("estimates.csv", "country,substance,year,base_grams,kind\nBE,tapentadol,2026,1,estimate\n", ":2: substance"),
    ("estimates.csv", "country,substance,year,base_grams,kind\nBE,diazepam,2026,1,estimate\n", "1971 substance"),
    ("estimates.csv", "country,substance,year,base_grams,kind\nBE,morphine,2026,-5,estimate\n", "zero or more"),
    ("estimates.csv", "country,substance,year,base_grams,kind\nBE,morphine,26,5,estimate\n", "four-digit year"),
    (
        "estimates.csv",
        "country,substance,year,base_grams,kind\nBE,morphine,2026,5,estimate\nBE,Morphine,2026,6,estimate\n",
        ":3: country, substance and year",
    ),
    ("prohibitions.csv", "country,substance,since,reference\nBE,pentobarbital,2019-13-01,x\n", ":2: since"),
    ("prohibitions.csv", "country,substance,reference\nBE,pentobarbital,x\n", ":1: the header lacks"),
    (
        "import-requirements.csv",
        "country,treaty,schedule,import_authorization_required,basis\nFR,1971,III,maybe,x\n",
        ":2: import_authorization_required is 'maybe'",
    ),
    (
        "import-requirements.csv",
        "country,treaty,schedule,import_authorization_required,basis\nFR,1988,Table I,yes,x\n",
        ":2: treaty is '1988'",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_CONTROL, ids=[e for _, _, e in BAD_CONTROL])
def test_a_bad_control_table_is_refused_with_its_file_and_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ReferenceDataError) as info:
        ControlTables.load(tmp_path)
    assert str(info.value).startswith(str(tmp_path / name)) and expected in str(info.value)


def test_the_same_table_twice_or_an_unknown_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for folder in (tmp_path, other):
        (folder / "prohibitions.csv").write_text("country,substance,since,reference\n")
    with pytest.raises(ReferenceDataError, match="also given"):
        ControlTables.from_files([tmp_path / "prohibitions.csv", other / "prohibitions.csv"])
    (tmp_path / "quotas.csv").write_text("x\n")
    with pytest.raises(ReferenceDataError, match="not a control table"):
        ControlTables.from_files([tmp_path / "quotas.csv"])
