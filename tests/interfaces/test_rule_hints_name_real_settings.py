"""A rule's hint reaches the national system (REST 422, outbox .errors.txt) and the administrator: a table or a
setting it names must be one the gateway has, and it must say where that table is configured."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from gateway.documents.control import CONTROL_TABLES
from gateway.documents.reference import TABLES as REFERENCE_TABLES
from gateway.documents.rules import RULES
from gateway.settings import Settings

HINTS = [pytest.param(rule.hint, id=rule.id) for rule in RULES]


def setting_exists(section: str, key: str) -> bool:
    field = Settings.model_fields.get(section)
    model = field.annotation if field is not None else None
    return isinstance(model, type) and issubclass(model, BaseModel) and key in model.model_fields


@pytest.mark.parametrize("hint", HINTS)
def test_each_setting_a_hint_names_exists(hint: str) -> None:
    for section, key in re.findall(r"\[(\w+)\]\.(\w+)", hint):
        assert setting_exists(section, key), f"[{section}].{key} is no setting: {hint}"


@pytest.mark.parametrize("hint", HINTS)
def test_each_table_a_hint_names_says_where_it_comes_from(hint: str) -> None:
    for table in re.findall(r"[\w-]+\.csv", hint):
        if table in CONTROL_TABLES:
            assert "[documents].tables" in hint, hint  # the administrator's tables: a setting names their folder
        else:
            assert table in REFERENCE_TABLES, f"{table} is no table of the gateway: {hint}"
            # shipped with the gateway, no setting replaces them: the hint must not send anyone to edit a file
            assert "gateway/documents/data/" in hint and "--reference" in hint, hint


def test_the_estimate_and_factor_hints_name_the_setting_and_the_file() -> None:
    hints = {rule.id: rule.hint for rule in RULES}
    assert "estimates.csv in the folder [documents].tables names" in hints["X-028"]
    assert "base-factors.csv (gateway/documents/data/)" in hints["X-020"]
    assert "no setting replaces it in a running gateway" in hints["X-020"]
