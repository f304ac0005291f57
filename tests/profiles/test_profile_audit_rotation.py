"""The audit log rotated, moved away or truncated by the operator: the next edit recovers only a change that was
really left unaudited (its writer stopped), for histories with audit markers and for those kept before them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.profiles import DevPki
from gateway.profiles.editor import Precondition

from .test_editor_crash_and_confinement_review import ANY, CH, Gateway, Killed

LOG = "profile-audit.jsonl"


def _moved_away(log: Path) -> None:
    log.rename(log.with_name(LOG + ".1"))  # logrotate's default: the next entry starts a new file


def _truncated(log: Path) -> None:
    log.write_bytes(b"")  # logrotate's copytruncate


def _trimmed(log: Path) -> None:
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[-1])  # the operator kept the last line


ROTATIONS = pytest.mark.parametrize(
    "rotate", [_moved_away, _truncated, _trimmed], ids=["moved", "truncated", "trimmed"]
)


@pytest.fixture
def gateway(tmp_path: Path, pki: DevPki) -> Gateway:
    return Gateway(tmp_path, pki)


def _edited(gateway: Gateway) -> None:
    """A day of edits: each profile has a version after the one found, and one profile is retired."""
    clock = gateway.editor._clock
    assert isinstance(clock, FixedClock)
    clock.advance(timedelta(hours=1))
    gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")
    clock.advance(timedelta(hours=1))
    gateway.editor.merge("be-famhp", {"compression": False}, condition=ANY, actor="alice")
    clock.advance(timedelta(hours=1))
    gateway.editor.retire("be-famhp", condition=ANY, actor="bob")


def _recovered(gateway: Gateway) -> list[dict[str, Any]]:
    return [e for e in gateway.editor.audit.entries(limit=1000) if e.get("recovered")]


def _before_markers(gateway: Gateway) -> None:
    """The history as the previous version of the gateway kept it: no audit markers."""
    history = gateway.data / "profile-history"
    for marker in [*history.glob("*/*.audited"), history / ".audit-markers"]:
        marker.unlink()


@ROTATIONS
def test_an_edit_after_the_log_was_rotated_recovers_nothing(
    gateway: Gateway, rotate: Callable[[Path], None]
) -> None:
    _edited(gateway)
    rotate(gateway.data / LOG)

    gateway.editor.merge("ch-swissmedic", {"compression": True}, condition=ANY, actor="carol")
    gateway.start()

    assert _recovered(gateway) == []
    assert [e["actor"] for e in gateway.editor.audit.entries(limit=1000)][-1] == "carol"


@ROTATIONS
def test_a_change_left_unaudited_after_a_rotation_is_still_recovered(
    gateway: Gateway, rotate: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    _edited(gateway)
    rotate(gateway.data / LOG)
    gateway.killed_before_audit(monkeypatch)
    with pytest.raises(Killed):
        gateway.editor.put("ch-swissmedic", CH + "# by eve\n", condition=ANY, actor="eve")
    monkeypatch.undo()

    gateway.editor.merge("ch-swissmedic", {"compression": True}, condition=ANY, actor="carol")
    gateway.start()

    [entry] = _recovered(gateway)
    assert (entry["profile"], entry["actor"], entry["action"], entry["version"]) == (
        "ch-swissmedic",
        "eve",
        "put",
        3,
    )


def test_an_edit_does_not_read_the_audit_log_when_every_change_has_its_marker(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edited(gateway)

    def unread() -> None:
        raise AssertionError("the whole audit log was read")

    monkeypatch.setattr(gateway.editor.audit, "index", unread)
    gateway.editor.merge("ch-swissmedic", {"compression": True}, condition=ANY, actor="carol")
    gateway.editor.rollback("be-famhp", condition=Precondition(if_absent=True), actor="carol")


def test_a_writer_stopped_after_its_entry_before_its_marker_is_not_audited_twice(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(profile_id: str, number: int) -> None:
        raise Killed("mark_audited")

    monkeypatch.setattr(gateway.editor.history, "mark_audited", killed)
    with pytest.raises(Killed):
        gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")
    monkeypatch.undo()

    gateway.editor.merge("be-famhp", {"compression": False}, condition=ANY, actor="bob")
    assert _recovered(gateway) == []
    assert gateway.editor.history.audited("ch-swissmedic", 2)


@ROTATIONS
def test_a_history_kept_before_markers_with_a_rotated_log_recovers_nothing(
    gateway: Gateway, rotate: Callable[[Path], None]
) -> None:
    _edited(gateway)
    _before_markers(gateway)
    rotate(gateway.data / LOG)

    gateway.editor.merge("ch-swissmedic", {"compression": True}, condition=ANY, actor="carol")
    gateway.start()

    assert _recovered(gateway) == []
    assert gateway.editor.history.markers_kept() and gateway.editor.history.audited("ch-swissmedic", 3)


def test_a_history_kept_before_markers_with_its_whole_log_recovers_only_what_is_missing(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edited(gateway)
    gateway.killed_before_audit(monkeypatch)
    with pytest.raises(Killed):
        gateway.editor.put("ch-swissmedic", CH + "# by eve\n", condition=ANY, actor="eve")
    monkeypatch.undo()
    _before_markers(gateway)  # the killed edit ran on the previous version of the gateway

    gateway.editor.merge("ch-swissmedic", {"compression": True}, condition=ANY, actor="carol")
    gateway.start()

    [entry] = _recovered(gateway)
    assert (entry["profile"], entry["actor"], entry["version"]) == ("ch-swissmedic", "eve", 3)
