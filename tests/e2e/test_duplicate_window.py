"""The duplicate-detection window: a retry within its time to live is never refused for its age, a message
older than the window is refused with EBMS:0003, and a profile whose time to live not below it stops the start."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from gateway.as4 import ErrorReceived, Outgoing, SecurityPolicy, parse_response
from gateway.errors import ProfileError
from gateway.settings import InboundSettings
from tests.e2e.conftest import Harness, example
from tests.e2e.test_two_gateways import IA, _error_code, _forged_user_message, _post_as4


async def test_a_retry_late_in_its_time_to_live_still_gets_its_receipt(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    content_type, body = _forged_user_message(
        harness, example(IA, today=harness.clock.now()), "late@be-famhp.test"
    )
    first = await _post_as4(session, ch.url, content_type, body)
    harness.clock.advance(timedelta(hours=71, minutes=59))  # the profile's time to live is 72 h
    again = await _post_as4(session, ch.url, content_type, body)
    assert first[0] == again[0] == 200 and first[2] == again[2]


async def test_a_message_older_than_the_window_is_refused_naming_both_times(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    built = harness.clock.now()
    content_type, body = _forged_user_message(harness, example(IA, today=built), "old@be-famhp.test")
    harness.clock.advance(timedelta(hours=721))  # received 721 h after it was built: the window is 720 h
    now = harness.clock.now()
    status, answer_type, answer = await _post_as4(session, ch.url, content_type, body)
    assert (
        status == 400
        and await _error_code(harness, status, answer_type, answer, about="old@be-famhp.test") == "EBMS:0003"
    )
    policy = SecurityPolicy(signing_certificates=(harness.keys("CH-SWISSMEDIC").certificate,))
    sent = Outgoing(message_id="old@be-famhp.test", content_type="", body=b"")
    refused = parse_response(answer_type, answer, sent=sent, policy=policy, now=now)
    assert isinstance(refused, ErrorReceived)
    detail = refused.errors[0].detail or ""
    sent_at = built.strftime("%Y-%m-%dT%H:%M:%S")
    assert sent_at in detail and now.strftime("%Y-%m-%dT%H:%M:%S") in detail and "30 days" in detail


async def test_a_time_to_live_longer_than_the_window_stops_the_start(harness: Harness) -> None:
    # every profile's time to live too long: each file is held back, and a start with none left stops (one such
    # file alone would leave only its partner out)
    with pytest.raises(ProfileError) as caught:
        await harness.start("CH-SWISSMEDIC", inbound=InboundSettings(duplicate_window_hours=48))
    message = str(caught.value)
    assert "time_to_live_hours = 72" in message and "duplicate_window_hours = 48" in message
    assert "be-famhp.yaml:8:1 reception_awareness.time_to_live_hours" in message  # the file, line and field
    assert "ch-swissmedic.yaml:8:1 reception_awareness.time_to_live_hours" in message
