"""A partner's send window (TCP's slow start): two messages in flight at first, one more per receipt up to
``max_in_flight_per_partner``, one after an attempt that got no answer until a receipt comes; a lane never claims
more than its window, so no message waits leased behind its partner's sends. And the settings refuse a
per-partner limit above the node's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.clock import FixedClock
from gateway.errors import ConfigError
from gateway.metrics import SEND_WINDOW
from gateway.outbound.dispatch import Attempt, Dispatcher
from gateway.profiles.model import Transport
from gateway.settings import load_settings
from gateway.store import MessageStore, State, create_engine, upgrade
from tests.conftest import NOW
from tests.outbound.test_claim_fence import RETRYABLE, _HeldPosts, _Partners
from tests.store.helpers import new_message

LEASE = timedelta(seconds=600)
PER_PARTNER = 8
RECEIPT = Attempt(
    receipt=SimpleNamespace(message_id="receipt@ch"),  # type: ignore[arg-type]
    retryable=False,
    reason="",
    http_status=200,
    latency_ms=1.0,
)
NO_ANSWER = replace(RETRYABLE, reason="no answer within the time-out (test)", http_status=None, unanswered=True)


class _PushPartners(_Partners):
    """The claim-fence test's one partner, with what opening a lane reads (``run_once``)."""

    def __init__(self) -> None:
        super().__init__()
        self.partner.profile.transport = Transport.PUSH


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    engine = create_engine(store_url)
    await upgrade(engine)
    try:
        yield MessageStore(engine, FixedClock(NOW))
    finally:
        await engine.dispose()


async def _open_settles_at(posts: _HeldPosts, count: int) -> None:
    """Until ``count`` POSTs are open, and no more open in the next moment."""
    for _ in range(300):
        if posts.open >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert posts.open == count, f"{posts.open} POSTs open, expected {count}"


async def test_a_lane_starts_with_two_doubles_per_round_of_receipts_and_falls_back_to_one_without_an_answer(
    store: MessageStore,
) -> None:
    for n in range(30):
        await store.add(replace(new_message(f"m{n}@be"), expires_at=NOW + timedelta(hours=72)))
    posts = _HeldPosts()
    dispatcher = Dispatcher(
        store=store,
        payloads=None,  # type: ignore[arg-type]
        partners=_PushPartners(),  # type: ignore[arg-type]
        clock=FixedClock(NOW),
        session=None,  # type: ignore[arg-type]
        node_id="node-a",
        http_timeout=1.0,
        lease=LEASE,
        per_partner=PER_PARTNER,
        max_in_flight=64,
    )
    dispatcher._post = posts  # type: ignore[method-assign]
    answered = 0

    def answer(count: int, attempt: Attempt) -> None:
        nonlocal answered
        for n in range(answered, answered + count):
            posts.answer(n, attempt)
        answered += count

    try:
        await dispatcher.run_once()
        await _open_settles_at(posts, 2)  # slow start
        answer(2, RECEIPT)
        await _open_settles_at(posts, 4)
        answer(4, RECEIPT)
        await _open_settles_at(posts, PER_PARTNER)  # capped at max_in_flight_per_partner
        answer(1, RECEIPT)  # one free is less than half the window: no claim of one message at a time
        await _open_settles_at(posts, PER_PARTNER - 1)
        answer(3, RECEIPT)
        await _open_settles_at(posts, PER_PARTNER)

        assert SEND_WINDOW.labels(partner="ch-swissmedic")._value.get() == PER_PARTNER  # what /metrics shows
        answer(1, NO_ANSWER)  # a time-out: down to one, and no new claim while the other seven are out
        await _open_settles_at(posts, PER_PARTNER - 1)
        assert SEND_WINDOW.labels(partner="ch-swissmedic")._value.get() == 1
        answer(PER_PARTNER - 1, RETRYABLE)  # answered, but no receipt: the window stays at one
        await _open_settles_at(posts, 1)
        answer(1, RETRYABLE)
        await _open_settles_at(posts, 1)
        answer(1, RECEIPT)  # the partner is back: two, then growing again
        await _open_settles_at(posts, 2)

        sending = sum(n for (_, _, state), n in (await store.count_by_state()).items() if state == State.SENDING.value)
        assert sending == posts.open, "a message was claimed beyond the window and waits, leased, unsent"

        for _ in range(300):  # receipts for the rest, until nothing is due and the lane ends
            if not dispatcher._lanes:
                break
            answer(len(posts.started) - answered, RECEIPT)
            await asyncio.sleep(0.02)
        assert not dispatcher._lanes and len(posts.started) == 30, posts.started
        assert posts.most_open == PER_PARTNER
        assert dispatcher._window("ch-swissmedic") == 2, "the lane ended grown; the next one starts small again"
        assert SEND_WINDOW.labels(partner="ch-swissmedic")._value.get() == 2  # what /metrics shows
    finally:
        for n in range(answered, len(posts.started)):
            posts.answer(n, RETRYABLE)
        await dispatcher.close()


IDENTITY = '[identity]\nparty_id="X"\ncountry="BE"\nauthority_name="A"\n'


def test_a_per_partner_limit_above_the_nodes_is_refused_naming_both_keys_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(IDENTITY + "[outbound]\nmax_in_flight_per_partner = 32\nmax_in_flight = 16\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    error = str(caught.value)
    assert "[outbound].max_in_flight_per_partner = 32 is more than [outbound].max_in_flight = 16" in error, error
    assert "Lower max_in_flight_per_partner to at most 16, or raise max_in_flight (at most 128)" in error, error

    path.write_text(IDENTITY + "[outbound]\nmax_in_flight_per_partner = 16\nmax_in_flight = 16\n")
    assert load_settings(path).outbound.max_in_flight_per_partner == 16
    # the default per-partner limit (16) above a lowered max_in_flight is capped by the send loop, not refused
    path.write_text(IDENTITY + "[outbound]\nmax_in_flight = 4\n")
    assert load_settings(path).outbound.max_in_flight == 4
