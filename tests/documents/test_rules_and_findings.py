from __future__ import annotations

import re

from gateway.documents import RULES, Finding
from tests.documents.conftest import EXAMPLES

RULE_ID = re.compile(r"^(IA|EA|X)-\d{3}$")


def test_rule_ids_are_unique_and_well_formed() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(RULE_ID.match(rule_id) for rule_id in ids)


def test_every_rule_has_a_basis_a_message_a_hint_and_a_document_type() -> None:
    for rule in RULES:
        assert rule.basis and rule.message and rule.hint and rule.applies_to, rule.id
        assert rule.severity in ("error", "warning"), rule.id


def test_every_error_rule_has_an_invalid_example() -> None:
    names = [p.name for p in (EXAMPLES / "invalid").glob("*.xml")]
    for rule in RULES:
        if rule.severity == "error":
            assert any(name.startswith(f"{rule.id}-") for name in names), rule.id


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
