"""xsd:dateTime allows 24:00:00 (with a zero fraction only), the end of its day: an eb:Timestamp so written is
00:00:00 of the next day, not an invalid header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.as4 import EbmsCode, EbmsError, UserMessage
from gateway.as4._ns import EB, q
from gateway.as4.envelope import new_draft
from gateway.as4.header import HEADER_XSD, add_user_message, parse_timestamp, parse_user_message
from gateway.xmlsafe import load_schema
from tests.as4.helpers import user_message
from tests.conftest import NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T24:00:00Z", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-27T24:00:00.000Z", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-27T24:00:00", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-12-31T24:00:00+01:00", datetime(2027, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        ("2028-02-28T24:00:00.0-05:00", datetime(2028, 2, 29, tzinfo=timezone(timedelta(hours=-5)))),
    ],
)
def test_the_end_of_a_day_is_the_start_of_the_next(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text).utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text", ["2026-11-27T24:00:00.5Z", "2026-11-27T24:00:01Z", "2026-11-27T24:01:00Z", "9999-12-31T24:00:00Z"]
)
def test_only_the_exact_end_of_a_representable_day_is_accepted(text: str) -> None:
    with pytest.raises(EbmsError) as caught:
        parse_timestamp(text)
    assert caught.value.code is EbmsCode.INVALID_HEADER
    assert f"eb:Timestamp {text!r} is not an xsd:dateTime" in caught.value.detail


def test_a_header_stamped_at_the_end_of_a_day_validates_and_parses() -> None:
    um: UserMessage = user_message(NOW)
    draft = new_draft()
    add_user_message(draft.messaging, um)
    stamp = draft.messaging.find(f"{q(EB, 'UserMessage')}/{q(EB, 'MessageInfo')}/{q(EB, 'Timestamp')}")
    assert stamp is not None
    stamp.text = "2026-11-26T24:00:00Z"

    schema = load_schema(HEADER_XSD)
    assert schema.validate(draft.messaging), schema.error_log
    parsed = parse_user_message(draft.messaging.find(q(EB, "UserMessage")))  # type: ignore[arg-type]

    assert parsed.timestamp == datetime(2026, 11, 27, tzinfo=UTC)
