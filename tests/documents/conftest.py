from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def as_of() -> date:
    return date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())


@pytest.fixture(scope="session")
def ia_bytes() -> bytes:
    return (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()


@pytest.fixture(scope="session")
def ea_bytes() -> bytes:
    return (EXAMPLES / "valid" / "CH-EA-2026-0001.xml").read_bytes()
