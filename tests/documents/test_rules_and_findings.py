from __future__ import annotations

import re
import string

import pytest

from gateway.documents import RULES, DocumentType, Finding
from gateway.documents._checks import add_months
from gateway.documents.types import ISSUED_BY, RULE_PREFIX

RULE_ID = re.compile(r"^(IA|EA|EX|EN|AM|CA|ED|PN|PR|AK|X)-\d{3}$")
PREFIX_OF = {prefix: document_type for document_type, prefix in RULE_PREFIX.items()}


def test_rule_ids_are_unique_and_well_formed() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(RULE_ID.match(rule_id) for rule_id in ids)


def test_a_type_prefix_guards_only_its_type() -> None:
    for rule in RULES:
        prefix = rule.id.split("-")[0]
        if prefix != "X":
            assert rule.applies_to == frozenset({PREFIX_OF[prefix]}), rule.id


def test_every_rule_has_a_basis_a_message_a_hint_and_a_document_type() -> None:
    for rule in RULES:
        assert rule.basis and rule.message and rule.hint and rule.applies_to, rule.id
        assert rule.severity in ("error", "warning"), rule.id
        assert rule.needs in ("document", "as_of", "context"), rule.id


def test_rule_texts_use_only_named_fields() -> None:
    for rule in RULES:
        for text in (rule.message, rule.hint):
            fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
            assert all(name.isidentifier() for name in fields), (rule.id, text)


def test_rules_are_numbered_without_gaps() -> None:
    for prefix in {rule.id.split("-")[0] for rule in RULES}:
        numbers = sorted(int(r.id.split("-")[1]) for r in RULES if r.id.startswith(f"{prefix}-"))
        assert numbers == list(range(1, len(numbers) + 1)), prefix


def test_every_document_type_has_an_issuing_side_and_a_prefix() -> None:
    assert set(ISSUED_BY) == set(RULE_PREFIX) == set(DocumentType)
    assert len(set(RULE_PREFIX.values())) == len(DocumentType)


def test_finding_reads_like_a_compiler_message() -> None:
    finding = Finding(
        rule="XSD",
        severity="error",
        message="Element 'ia:Nme': This element is not expected.",
        line=12,
        column=5,
        path="/ia:ImportAuthorization/ia:Importer/ia:Name",
        hint="Rename it to Name.",
    )
    assert str(finding) == (
        "line 12, column 5 (/ia:ImportAuthorization/ia:Importer/ia:Name): [XSD] Element 'ia:Nme': "
        "This element is not expected. Fix: Rename it to Name."
    )


def test_finding_shows_basis_and_marks_warnings() -> None:
    finding = Finding(
        rule="X-013",
        severity="warning",
        message="the Exporter has no NationalLicenceNumber",
        line=23,
        path="/ea:ExportAuthorization/ea:Exporter",
        hint="Add it.",
        basis="1961 Art. 31(3)",
    )
    assert str(finding) == (
        "line 23 (/ea:ExportAuthorization/ea:Exporter): [X-013 warning] the Exporter has no "
        "NationalLicenceNumber (1961 Art. 31(3)). Fix: Add it."
    )


def test_finding_without_location() -> None:
    finding = Finding(rule="XML", severity="error", message="carries a DOCTYPE", hint="Remove it.")
    assert str(finding) == "[XML] carries a DOCTYPE. Fix: Remove it."


def test_finding_as_json_carries_every_field_and_the_text() -> None:
    finding = Finding(
        rule="EA-009", severity="error", message="too much", line=58, path="/ea:X", hint="Less.", basis="BR-08"
    )
    assert finding.to_json() == {
        "rule": "EA-009",
        "severity": "error",
        "message": "too much",
        "hint": "Less.",
        "basis": "BR-08",
        "path": "/ea:X",
        "line": 58,
        "column": None,
        "text": "line 58 (/ea:X): [EA-009] too much (BR-08). Fix: Less.",
    }


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ("2026-11-10", 3, "2027-02-10"),
        ("2026-01-31", 1, "2026-02-28"),
        ("2028-01-31", 1, "2028-02-29"),
        ("2026-12-15", 2, "2027-02-15"),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_month_end(start: str, months: int, end: str) -> None:
    from datetime import date

    assert add_months(date.fromisoformat(start), months) == date.fromisoformat(end)
