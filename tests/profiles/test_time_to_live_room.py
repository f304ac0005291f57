"""A partner's time to live must leave room below the duplicate window for the clock skew a receiver allows and
for the last attempt's transit: otherwise that attempt, sent within its time to live, is refused as too old."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.as4 import EbmsCode, EbmsError
from gateway.as4.msh import check_clock
from gateway.errors import ConfigError, ProfileError
from gateway.profiles import DevPki, load_profile, load_profiles
from gateway.profiles.trust import Partners, check_time_to_live

from .conftest import DEMO_PROFILES, MINIMAL, NOW

WriteProfile = Callable[..., Path]
WINDOW = timedelta(hours=720)  # [inbound].duplicate_window_hours by default
SKEW = timedelta(minutes=5)  # the receiver's allowed clock skew (trust.CLOCK_SKEW)
TRANSIT = timedelta(minutes=5)  # the last attempt's transit margin (trust.TRANSIT_MARGIN)
ROOM = SKEW + TRANSIT


def _with_ttl(hours: float) -> str:
    return MINIMAL + f"reception_awareness:\n  time_to_live_hours: {hours}\n"


def _error(path: Path, certs: Path, window: timedelta) -> str:
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=certs, duplicate_window=window)
    return str(caught.value)


def test_a_time_to_live_just_below_the_window_is_refused_naming_skew_margin_and_line(
    pki: DevPki, write_profile: WriteProfile
) -> None:
    path = write_profile(_with_ttl(719.99), name="ch-swissmedic.yaml")

    error = _error(path, pki.folder, WINDOW)

    assert error == (
        f"{path}:11:3 reception_awareness.time_to_live_hours: time_to_live_hours = 719.99 is not below "
        "[inbound].duplicate_window_hours = 720 less the clock skew a receiver allows (5 min) and the transit "
        "margin of a last attempt (5 min); a retry late in its time to live could no longer be recognized as a "
        "duplicate. Lower time_to_live_hours below 719.833 or raise duplicate_window_hours above 720.157"
    )
    profile = load_profile(path, certificates_dir=pki.folder)
    with pytest.raises(ConfigError) as caught:
        check_time_to_live(profile, WINDOW)
    assert str(caught.value).startswith(
        "partner 'ch-swissmedic': reception_awareness.time_to_live_hours = 719.99 is not below "
        "[inbound].duplicate_window_hours = 720 less the clock skew a receiver allows (5 min) and the transit margin"
    )
    with pytest.raises(ConfigError, match="transit margin of a last attempt"):
        Partners(load_profiles(path.parent, certificates_dir=pki.folder), now=NOW, max_age=WINDOW)


def test_the_bound_is_strict_and_counts_both_skew_and_margin(pki: DevPki, write_profile: WriteProfile) -> None:
    limit_hours = (WINDOW - ROOM).total_seconds() / 3600
    at_limit = write_profile(_with_ttl(limit_hours), name="at-limit.yaml")
    below = write_profile(_with_ttl(limit_hours - 0.001), name="ch-swissmedic.yaml")

    assert "less the clock skew" in _error(at_limit, pki.folder, WINDOW)
    at_limit.unlink()
    assert load_profile(below, certificates_dir=pki.folder, duplicate_window=WINDOW).id == "ch-swissmedic"
    Partners(load_profiles(below.parent, certificates_dir=pki.folder), now=NOW, max_age=WINDOW)


def test_a_last_attempt_within_an_accepted_time_to_live_passes_a_receiver_whose_clock_runs_ahead(
    pki: DevPki, write_profile: WriteProfile
) -> None:
    """The receiver's own check (check_clock with the policy the gateway builds): the last attempt, sent at the
    message's expiry, arriving a transit margin later at a receiver whose clock is the full skew ahead."""
    ttl = WINDOW - ROOM - timedelta(seconds=36)
    path = write_profile(_with_ttl(ttl.total_seconds() / 3600), name="ch-swissmedic.yaml")
    partners = Partners(load_profiles(path.parent, certificates_dir=pki.folder), now=NOW, max_age=WINDOW)
    policy = partners.get("ch-swissmedic").policy
    assert policy.clock_skew == SKEW and policy.max_age == WINDOW

    stamped = NOW
    arrives = stamped + ttl + TRANSIT + policy.clock_skew

    check_clock(stamped, policy, arrives)
    with pytest.raises(EbmsError) as caught:  # the window still holds beyond that room
        check_clock(stamped, policy, stamped + WINDOW + timedelta(seconds=1))
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT


def test_the_shipped_profiles_leave_room_below_the_default_window(pki: DevPki) -> None:
    registry = load_profiles(DEMO_PROFILES, certificates_dir=pki.folder, now=NOW, duplicate_window=WINDOW)
    Partners(registry, now=NOW, max_age=WINDOW)
    for example in sorted((DEMO_PROFILES / "examples").glob("*.yaml")):
        load_profile(example, certificates_dir=pki.folder, now=NOW, duplicate_window=WINDOW)


def test_a_time_to_live_beyond_any_date_is_a_line_error_not_a_crash(
    pki: DevPki, write_profile: WriteProfile
) -> None:
    path = write_profile(_with_ttl(1e11), name="ch-swissmedic.yaml")

    assert _error(path, pki.folder, WINDOW).startswith(
        f"{path}:11:3 reception_awareness.time_to_live_hours: time_to_live_hours = 1e+11 is not below "
    )
