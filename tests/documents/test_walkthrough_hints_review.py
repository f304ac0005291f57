"""A new operator's walkthrough: the hint of X-028 said estimates.csv is read when the gateway starts (a running
gateway re-reads the control tables), and an impossible date (2026-02-30) was told to be written as YYYY-MM-DD,
which it is."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.documents import PermitDocumentRejected, validate_document
from gateway.documents.rules import RULES


def test_the_missing_estimate_hint_says_a_saved_table_is_re_read_without_a_restart() -> None:
    (hint,) = [rule.hint for rule in RULES if rule.id == "X-028"]

    assert "when the gateway starts" not in hint
    assert "a running gateway re-reads it within [profiles].poll_seconds of a saved change, no restart" in hint


def _hint_for(data: bytes, as_of: date) -> str:
    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(data, as_of=as_of)
    (finding,) = [f for f in info.value.findings if f.rule == "XSD"]
    assert finding.path is not None and finding.path.endswith("ValidUntil")
    return finding.hint


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("2026-02-30", "2026-02-30 is not a day of the calendar (February 2026 has 28 days)."),
        ("2028-02-30", "2028-02-30 is not a day of the calendar (February 2028 has 29 days)."),
        ("2026-04-31", "2026-04-31 is not a day of the calendar (April 2026 has 30 days)."),
        ("2026-06-00", "2026-06-00 is not a day of the calendar (June 2026 has 30 days)."),
        ("2026-13-01", "2026-13-01 is not a day of the calendar: months run from 01 to 12."),
    ],
)
def test_a_date_in_the_right_form_that_names_no_day_is_told_so(
    ia_bytes: bytes, as_of: date, value: str, hint: str
) -> None:
    data = ia_bytes.replace(b"<ValidUntil>2027-02-09</ValidUntil>", f"<ValidUntil>{value}</ValidUntil>".encode())

    found = _hint_for(data, as_of)

    assert found.startswith(hint), found
    assert "Write the value in its type's format" not in found


def test_a_date_in_the_wrong_form_keeps_the_format_hint(ia_bytes: bytes, as_of: date) -> None:
    data = ia_bytes.replace(b"<ValidUntil>2027-02-09</ValidUntil>", b"<ValidUntil>09.02.2027</ValidUntil>")

    assert "dates as YYYY-MM-DD" in _hint_for(data, as_of)
