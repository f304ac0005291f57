from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from gateway.documents import ControlTables, InMemoryContext, PermitDocument, validate_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
# The context every example is written against: what the gateway has sent and received (valid/, and the
# supporting documents in context/) and the administrator's tables in context/.
CONTEXT_FOLDERS = (EXAMPLES / "valid", EXAMPLES / "context")


@pytest.fixture(scope="session")
def as_of() -> date:
    return AS_OF


@pytest.fixture(scope="session")
def ia_bytes() -> bytes:
    return (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()


@pytest.fixture(scope="session")
def ea_bytes() -> bytes:
    return (EXAMPLES / "valid" / "CH-EA-2026-0001.xml").read_bytes()


@pytest.fixture(scope="session")
def tables() -> ControlTables:
    return ControlTables.load(EXAMPLES / "context")


@pytest.fixture(scope="session")
def known_documents() -> dict[str, PermitDocument]:
    """The examples' context documents by file name."""
    return {
        path.name: validate_document(path.read_bytes(), as_of=AS_OF)
        for folder in CONTEXT_FOLDERS
        for path in sorted(folder.glob("*.xml"))
    }


@pytest.fixture(scope="session")
def context(known_documents: dict[str, PermitDocument], tables: ControlTables) -> InMemoryContext:
    return InMemoryContext(known_documents.values(), tables)


Without = Callable[..., InMemoryContext]
"""The examples' context without the documents numbered as given (and with ``extra`` documents)."""


@pytest.fixture(scope="module")
def without(known_documents: dict[str, PermitDocument], tables: ControlTables) -> Without:
    def make(*numbers: str, extra: tuple[PermitDocument, ...] = ()) -> InMemoryContext:
        kept = [d for d in known_documents.values() if d.number not in numbers]
        return InMemoryContext([*kept, *extra], tables)

    return make
