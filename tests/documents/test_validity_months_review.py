"""X-021: a validity of n months counts its first and last day, so 3 months from 16 Nov end on 15 Feb (the
examples' DE-IA-2026-0417); where the month has no such day, its last day is the end (31 Jan + 1: 28 Feb)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from gateway.documents import Finding, validation_report
from tests.documents.conftest import AS_OF, EXAMPLES

# (the document, its own validity); DE and GB allow an ImportAuthorization 3 months (validity-limits.csv)
DE_IA = ((EXAMPLES / "valid" / "DE-IA-2026-0417.xml").read_bytes(), "2026-11-16", "2027-02-15")
GB_IA = ((EXAMPLES / "context" / "GB-IA-2026-0041.xml").read_bytes(), "2026-11-02", "2027-01-31")


def x021(example: tuple[bytes, str, str], valid_from: str, valid_until: str) -> list[Finding]:
    data, own_from, own_until = example
    changed = data.replace(f"<ValidFrom>{own_from}<".encode(), f"<ValidFrom>{valid_from}<".encode())
    changed = changed.replace(f"<ValidUntil>{own_until}<".encode(), f"<ValidUntil>{valid_until}<".encode())
    assert changed.count(valid_from.encode()) and changed.count(valid_until.encode())
    report = validation_report(changed, as_of=AS_OF)
    return [f for f in report.findings if f.rule == "X-021"]


@pytest.mark.parametrize(
    ("valid_from", "latest"),
    [
        ("2026-11-16", "2027-02-15"),  # the examples' DE-IA-2026-0417
        ("2026-11-01", "2027-01-31"),
        ("2026-11-30", "2027-02-28"),  # no 30 Feb: the month's last day
        ("2026-10-31", "2027-01-30"),
        ("2027-03-31", "2027-06-30"),  # no 31 Jun
        ("2027-11-29", "2028-02-28"),  # 29 Feb 2028 exists: the day before it
        ("2027-11-30", "2028-02-29"),
    ],
)
def test_three_months_end_the_day_before_the_same_day(valid_from: str, latest: str) -> None:
    assert x021(DE_IA, valid_from, latest) == []
    one_more = (date.fromisoformat(latest) + timedelta(days=1)).isoformat()
    [finding] = x021(DE_IA, valid_from, one_more)
    assert f"valid from {valid_from} to {one_more}: longer than the 3 months DE allows" in finding.message
    assert finding.hint.startswith(f"End the validity on or before {latest}.")


def test_the_examples_stay_within_their_limits() -> None:
    assert x021(DE_IA, "2026-11-16", "2027-02-15") == []
    assert x021(GB_IA, "2026-11-02", "2027-01-31") == []
    [finding] = x021(GB_IA, "2026-11-02", "2027-02-02")
    assert "on or before 2027-02-01." in finding.hint
