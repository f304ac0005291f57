"""The lifecycle table: every (state, event) pair is either listed or refused, and each event has one target."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store import FINAL, TRANSITIONS, Event, IllegalTransition, State, transition


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_pair_is_listed_or_refused(state: State, event: Event) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition) as caught:
            transition(state, event)
        assert state.value in str(caught.value) and event.value in str(caught.value)


def test_each_event_has_a_single_target() -> None:
    for event in Event:
        targets = {target for (_, e), target in TRANSITIONS.items() if e is event}
        assert len(targets) <= 1, event


def test_final_states_only_leave_by_a_retry_an_operator_or_the_national_system_asked_for_or_a_late_receipt() -> None:
    allowed = {
        (State.FAILED, Event.OPERATOR_RETRY),
        (State.FAILED, Event.RESUBMITTED),
        (State.FAILED, Event.RECEIPT_OK),  # the partner's signed receipt proves delivery, however late
    }
    for (state, event), _ in TRANSITIONS.items():
        if state in FINAL:
            assert (state, event) in allowed


@given(st.sampled_from([State.SUBMITTED, State.RECEIVED]), st.lists(st.sampled_from(list(Event)), max_size=30))
def test_random_event_sequences_stay_inside_the_table(start: State, events: list[Event]) -> None:
    state = start
    for event in events:
        try:
            new = transition(state, event)
        except IllegalTransition:
            continue
        assert (state, event) in TRANSITIONS
        state = new
    outbound = {State.SUBMITTED, State.SENDING, State.RETRY_WAIT, State.ACKNOWLEDGED, State.FAILED}
    assert (state in outbound) == (start is State.SUBMITTED)
