"""A failed POST is named in an operator's words, with where to look: never a Python class name alone."""

from __future__ import annotations

import aiohttp

from gateway.outbound.dispatch import _connection_failure


def test_a_time_out_names_the_setting_and_that_it_is_asked_again() -> None:
    said = _connection_failure(TimeoutError(), 30)
    assert "no answer within the time-out ([outbound] http_timeout_seconds = 30 s" in said
    assert "asked again" in said and "TimeoutError" not in said


def test_a_connection_closed_before_the_answer_says_so() -> None:
    said = _connection_failure(aiohttp.ServerDisconnectedError(), 30)
    assert said == "the partner closed the connection before answering"


def test_an_answer_broken_off_says_so() -> None:
    said = _connection_failure(aiohttp.ClientPayloadError("Response payload is not completed"), 30)
    assert said == "the answer broke off part way (Response payload is not completed)"
