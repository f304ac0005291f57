"""``permit-gateway profiles rollback`` and ``history``, the review's findings: a rollback does not undo a change
made after it read the profile unless told to (--force), and a version the gateway refused is marked and is
never a rollback's default."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from gateway.clock import SystemClock
from gateway.profiles.editor import Precondition
from gateway.profiles.history import ProfileHistory
from gateway.profiles.watcher import ProfileWatcher
from tests.interfaces.test_profiles_cli import CH, Cli, _default_logging, cli, pki  # noqa: F401

MOVED = CH.replace("https://as4.ch-swissmedic.example/as4", "https://moved.example/as4")


@pytest.fixture
def bob_edits_first(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:  # noqa: F811
    """Once called: the next writer to take the writers' lock (the CLI's rollback) finds that bob, through the
    admin API, took it just before and moved the endpoint."""
    original = ProfileHistory.lock
    pending: list[bool] = []

    @contextlib.contextmanager
    def lock(self: ProfileHistory) -> Iterator[None]:
        if pending:
            pending.clear()
            editor = cli.editor()
            current = editor.get("ch-swissmedic")
            editor.put("ch-swissmedic", MOVED, condition=Precondition(if_match=current.etag), actor="bob")
        with original(self):
            yield

    monkeypatch.setattr(ProfileHistory, "lock", lock)
    yield lambda: pending.append(True)


def test_rollback_does_not_undo_a_change_made_after_it_read_the_profile(
    cli: Cli,  # noqa: F811
    bob_edits_first: Callable[[], None],
) -> None:
    editor = cli.editor()
    editor.put("ch-swissmedic", CH.replace("country: CH", "country: LI"), condition=Precondition(), actor="alice")
    bob_edits_first()

    code, output = cli("profiles", "rollback", "ch-swissmedic")

    assert code == 1, output
    assert "ch-swissmedic: not rolled back: the profile changed after this command read it" in output
    assert "it is now version 3 (put by bob at " in output
    assert "or add --force to roll back over that change" in output
    assert (cli.folder / "ch-swissmedic.yaml").read_text() == MOVED
    assert [v.actor for v in editor.versions("ch-swissmedic")] == ["(file)", "alice", "bob"]


def test_rollback_with_force_rolls_back_over_a_newer_change(
    cli: Cli,  # noqa: F811
    bob_edits_first: Callable[[], None],
) -> None:
    editor = cli.editor()
    editor.put("ch-swissmedic", CH.replace("country: CH", "country: LI"), condition=Precondition(), actor="alice")
    bob_edits_first()

    code, output = cli("profiles", "rollback", "ch-swissmedic", "1", "--force")

    assert code == 0, output
    assert "rollback:1 written as version 4" in output
    assert (cli.folder / "ch-swissmedic.yaml").read_text() == CH


def test_history_marks_a_refused_version_and_rollback_skips_it(cli: Cli) -> None:  # noqa: F811
    """A running gateway's watcher caught an invalid file, then it was fixed by hand: the broken text is in the
    history, marked refused, and 'rollback' without a version restores the one before it."""
    editor = cli.editor()
    watcher = ProfileWatcher(
        cli.folder, certificates_dir=cli.pki.folder, clock=SystemClock(), on_reload=lambda _: None, interval=0.01
    )
    watcher.record_with(editor)
    path = cli.folder / "ch-swissmedic.yaml"
    path.write_text(CH.replace("country: CH", "country: Switzerland"))
    assert watcher.poll() is False
    path.write_text(MOVED)
    assert watcher.poll() is True

    code, output = cli("profiles", "history", "ch-swissmedic")
    assert code == 0
    [refused] = [line for line in output.splitlines() if "refused" in line]
    assert refused.split()[1] == "2"

    code, output = cli("profiles", "rollback", "ch-swissmedic")
    assert code == 0, output
    assert "rollback:1 written as version 4" in output
    assert path.read_text() == CH


def test_reading_commands_record_nothing(cli: Cli) -> None:  # noqa: F811
    """Only a gateway's start compares the files with the history: 'history', 'diff' and 'show' only read."""
    editor = cli.editor()
    editor.put("ch-swissmedic", CH.replace("country: CH", "country: LI"), condition=Precondition(), actor="alice")
    (cli.folder / "ch-swissmedic.yaml").write_text(MOVED)  # by hand, not seen by any gateway
    audit, versions = editor.audit.path.read_bytes(), editor.versions("ch-swissmedic")

    for args in (("history", "ch-swissmedic"), ("diff", "ch-swissmedic"), ("show", "ch-swissmedic")):
        code, output = cli("profiles", *args)
        assert code == 0, output

    assert editor.audit.path.read_bytes() == audit
    assert editor.versions("ch-swissmedic") == versions
