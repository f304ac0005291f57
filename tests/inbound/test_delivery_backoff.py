"""A delivery that keeps failing waits twice as long after each failure, up to an hour, instead of adding an event
every 30 s for ever; from the ALERT_AFTERth failure on, each failure is logged as an error for operators."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from gateway.inbound.deliver import ALERT_AFTER, MAX_RETRY_DELAY, RETRY_DELAY
from gateway.profiles import ProfileRegistry
from gateway.store import State
from tests.inbound.conftest import Inbound, partner


async def test_a_failing_delivery_backs_off_to_an_hour_and_alerts_after_repeated_failures(
    inbound: Inbound,
) -> None:
    record = await inbound.accepted(1)
    inbound.inbox.write_text("not a folder")  # the national share is not mounted: every write fails
    worker = inbound.worker(ProfileRegistry([partner()]))

    gaps, errors = [], []
    for _ in range(ALERT_AFTER + 2):
        with capture_logs() as logs:
            assert await worker.drain() == 0
        errors.append([e for e in logs if e["log_level"] == "error"])
        due = (await inbound.store.get(record.id)).next_attempt_at
        assert due is not None
        gaps.append(due - inbound.clock.now())
        inbound.clock.advance(due - inbound.clock.now())

    expected = [min(RETRY_DELAY * 2**n, MAX_RETRY_DELAY) for n in range(ALERT_AFTER + 2)]
    assert gaps == expected and expected[:3] == [timedelta(seconds=s) for s in (30, 60, 120)]
    assert expected[-1] == timedelta(hours=1)
    after = await inbound.store.get(record.id)
    assert after.state is State.ACCEPTED and after.attempts == ALERT_AFTER + 2
    failed = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    assert [e.detail["attempt"] for e in failed] == list(range(1, ALERT_AFTER + 3))
    assert after.last_error == failed[-1].detail["reason"] and str(inbound.inbox) in failed[-1].detail["reason"]

    assert errors[: ALERT_AFTER - 1] == [[]] * (ALERT_AFTER - 1)
    [alert] = errors[ALERT_AFTER - 1]
    assert alert["event"].startswith("delivery keeps failing: the national system does not have this permit")
    assert "fix the delivery setting in the partner's profile or the destination it names" in alert["event"]
    assert (alert["partner"], alert["message_id"], alert["attempt"]) == (
        "ch-swissmedic",
        record.message_id,
        ALERT_AFTER,
    )
    assert alert["waiting_since"] == record.created_at.isoformat()
    assert all(len(logged) == 1 for logged in errors[ALERT_AFTER - 1 :])  # and at every failure after it


async def test_a_delivery_that_succeeds_after_failures_records_its_attempts_and_clears_the_error(
    inbound: Inbound,
) -> None:
    record = await inbound.accepted(1)
    inbound.inbox.write_text("not a folder")
    worker = inbound.worker(ProfileRegistry([partner()]))
    for _ in range(2):
        assert await worker.drain() == 0
        inbound.clock.advance(timedelta(hours=1))

    inbound.inbox.unlink()  # the share is back
    assert await worker.drain() == 1

    done = await inbound.store.get(record.id)
    assert (done.state, done.attempts, done.last_error) == (State.DELIVERED, 3, None)
