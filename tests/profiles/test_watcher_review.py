"""The watcher, the review's findings: every change found on disk is audited and kept in the history (once:
an edit made through an editor is not audited again), and a file caught half-written is not loaded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.profiles import DevPki
from gateway.profiles.editor import Precondition, ProfileEditor
from gateway.profiles.history import sha256_text
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import ProfileWatcher

from .conftest import NOW
from .helpers import certificate, profile_text, rsa_key, write_certificate

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
DE = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")
CH_ENDPOINT = "https://as4.ch-swissmedic.example/as4"
MOVED = CH.replace(CH_ENDPOINT, "https://moved.example/as4")
ANY = Precondition(if_match="*")
DISK = "(file on disk)"


class Gateway:
    """A running gateway's watcher and admin editor, and an operator's CLI editor on the same folders."""

    def __init__(self, tmp_path: Path, pki: DevPki, *, interval: float = 0.01) -> None:
        self.folder = tmp_path / "profiles"
        self.folder.mkdir()
        self.certificates = tmp_path / "certs"
        self.certificates.mkdir()
        for source in pki.folder.glob("*.crt.pem"):
            (self.certificates / source.name).write_bytes(source.read_bytes())
        self.ch = self.folder / "ch-swissmedic.yaml"
        self.ch.write_text(CH)
        (self.folder / "be-famhp.yaml").write_text(BE)
        self.clock = FixedClock(NOW)
        self.swapped: list[Partners] = []
        self.watcher = ProfileWatcher(
            self.folder,
            certificates_dir=self.certificates,
            clock=self.clock,
            on_reload=self.swapped.append,
            interval=interval,
        )
        self.editor = self.make_editor(tmp_path, on_change=True)
        self.cli = self.make_editor(tmp_path, on_change=False)

    def make_editor(self, tmp_path: Path, *, on_change: bool) -> ProfileEditor:
        editor = ProfileEditor(
            self.folder,
            certificates_dir=self.certificates,
            data_dir=tmp_path / "data",
            clock=self.clock,
            on_change=self.watcher.reload if on_change else None,
        )
        if on_change:  # as the running gateway's own editor
            self.watcher.record_with(editor)
        return editor

    def audited(self) -> list[tuple[str, str, str | None, str]]:
        return [(e["actor"], e["action"], e["profile"], e["result"]) for e in self.editor.audit.entries()]

    def endpoint(self) -> str:
        return self.watcher.partners.get("ch-swissmedic").profile.endpoint


@pytest.fixture
def gateway(tmp_path: Path, pki: DevPki) -> Gateway:
    return Gateway(tmp_path, pki)


def test_every_change_made_on_disk_is_audited_and_kept_in_the_history(gateway: Gateway) -> None:
    gateway.ch.write_text(MOVED)
    assert gateway.watcher.poll() is True
    (gateway.folder / "de-bfarm.yaml").write_text(DE)
    assert gateway.watcher.poll() is True
    gateway.ch.write_text(CH)  # reverted before anyone used an editor on it
    assert gateway.watcher.poll() is True
    (gateway.folder / "de-bfarm.yaml").unlink()
    assert gateway.watcher.poll() is True

    assert gateway.audited() == [
        (DISK, "changed-on-disk", "ch-swissmedic", "activated"),
        (DISK, "added-on-disk", "de-bfarm", "activated"),
        (DISK, "changed-on-disk", "ch-swissmedic", "activated"),
        (DISK, "removed-on-disk", "de-bfarm", "activated"),
    ]
    moved, added, reverted, removed = gateway.editor.audit.entries()
    assert (moved["before_sha256"], moved["after_sha256"]) == (sha256_text(CH), sha256_text(MOVED))
    assert f"-endpoint: {CH_ENDPOINT}\n+endpoint: https://moved.example/as4\n" in moved["diff"]
    assert moved["file"] == str(gateway.ch) and moved["reason"] == "profile files changed"
    assert (added["before_sha256"], added["after_sha256"], added["version"]) == (None, sha256_text(DE), 1)
    assert reverted["after_sha256"] == sha256_text(CH)
    assert (removed["before_sha256"], removed["after_sha256"], removed["version"]) == (sha256_text(DE), None, None)
    history = gateway.editor.history
    assert [(v.actor, v.action) for v in history.versions("ch-swissmedic")] == [
        ("(file)", "found"),
        (DISK, "changed-on-disk"),
        (DISK, "changed-on-disk"),
    ]
    assert history.text("ch-swissmedic", 2) == MOVED
    assert gateway.editor.retired() == ["de-bfarm"]  # a rollback brings it back
    entries = gateway.editor.audit.entries("ch-swissmedic")
    assert entries[1]["before_sha256"] == entries[0]["after_sha256"]


def test_a_change_refused_on_disk_is_audited_with_its_errors(gateway: Gateway) -> None:
    broken = CH.replace("country: CH", "country: Switzerland")
    gateway.ch.write_text(broken)

    assert gateway.watcher.poll() is False
    assert gateway.watcher.poll() is None  # refused once, audited once

    [entry] = gateway.editor.audit.entries()
    assert (entry["actor"], entry["action"], entry["result"]) == (DISK, "changed-on-disk", "refused")
    assert entry["errors"][0].startswith(f"{gateway.ch}:4:1 country: got 'Switzerland'")
    assert "+country: Switzerland" in entry["diff"]
    assert gateway.editor.history.text("ch-swissmedic", entry["version"]) == broken


def test_an_edit_through_an_editor_is_audited_once(gateway: Gateway) -> None:
    """The admin editor's edits reach the watcher through on_change, an operator's CLI edits through a poll:
    either way only the editor's own entry is in the audit log."""
    gateway.editor.put("ch-swissmedic", MOVED, condition=ANY, actor="alice")
    gateway.cli.merge("be-famhp", {"compression": False}, condition=ANY, actor="cli:bob")
    assert gateway.watcher.poll() is True
    gateway.cli.retire("be-famhp", condition=ANY, actor="cli:bob")
    assert gateway.watcher.poll() is True
    gateway.cli.rollback("be-famhp", condition=Precondition(if_absent=True), actor="cli:bob")
    assert gateway.watcher.poll() is True

    assert gateway.audited() == [
        ("alice", "put", "ch-swissmedic", "ok"),
        ("cli:bob", "merge", "be-famhp", "ok"),
        ("cli:bob", "retire", "be-famhp", "ok"),
        ("cli:bob", "rollback:2", "be-famhp", "ok"),
    ]
    assert gateway.endpoint() == "https://moved.example/as4"


def test_a_hand_edit_after_a_cli_edit_the_watcher_did_not_see_chains_on_the_cli_edit(gateway: Gateway) -> None:
    """Between two polls the CLI edits a profile and then someone edits it by hand: the watcher saw neither,
    yet the hand edit's entry starts where the CLI's ended (the audit log reads as one sequence)."""
    gateway.cli.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="cli:bob")
    by_hand = gateway.ch.read_text() + "enabled: false\n"
    gateway.ch.write_text(by_hand)

    assert gateway.watcher.poll() is True

    assert gateway.audited() == [
        ("cli:bob", "merge", "ch-swissmedic", "ok"),
        (DISK, "changed-on-disk", "ch-swissmedic", "activated"),
    ]
    merged, hand = gateway.editor.audit.entries()
    assert hand["before_sha256"] == merged["after_sha256"] and hand["after_sha256"] == sha256_text(by_hand)
    assert hand["diff"].endswith(" compression: false\n+enabled: false\n")
    assert [v.action for v in gateway.editor.history.versions("ch-swissmedic")] == [
        "found",
        "merge",
        "changed-on-disk",
    ]


def test_a_hand_edit_loaded_by_an_editors_reload_is_audited(gateway: Gateway) -> None:
    (gateway.folder / "be-famhp.yaml").write_text(BE + "compression: false\n")  # not polled yet

    gateway.editor.put("ch-swissmedic", MOVED, condition=ANY, actor="alice")

    assert gateway.audited() == [
        ("alice", "put", "ch-swissmedic", "ok"),
        (DISK, "changed-on-disk", "be-famhp", "activated"),
    ]
    assert gateway.editor.audit.entries()[-1]["reason"] == "profile 'ch-swissmedic' put by alice"
    assert gateway.watcher.poll() is None


def test_a_hand_copy_of_a_retired_profile_is_audited(gateway: Gateway) -> None:
    gateway.editor.retire("ch-swissmedic", condition=ANY, actor="alice")

    gateway.ch.write_text(CH)  # the same text, copied back by hand
    assert gateway.watcher.poll() is True

    assert gateway.audited()[-1] == (DISK, "added-on-disk", "ch-swissmedic", "activated")
    assert gateway.editor.history.retired("ch-swissmedic") is None


def test_a_certificate_replaced_on_disk_is_audited(gateway: Gateway) -> None:
    path = gateway.certificates / "ch-swissmedic.crt.pem"
    before = path.read_bytes()
    renewed = certificate("CH-SWISSMEDIC", key=rsa_key(2), not_before=NOW, days=700)
    write_certificate(path, renewed)

    assert gateway.watcher.poll() is True

    [entry] = gateway.editor.audit.entries()
    assert (entry["actor"], entry["action"], entry["profile"], entry["result"]) == (
        DISK,
        "certificates-changed-on-disk",
        None,
        "activated",
    )
    [file] = entry["files"]
    assert file["file"] == str(path)
    assert file["before_sha256"] == hashlib.sha256(before).hexdigest()
    assert file["after_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_caught_half_written_is_not_loaded(tmp_path: Path, pki: DevPki) -> None:
    """A suspended partner's profile rewritten in place: the first part is a valid profile too (without the
    closing 'enabled: false'); it must not be loaded, or queued messages would go out to the partner."""
    suspended = CH + "enabled: false\n"
    gateway = Gateway(tmp_path, pki, interval=5.0)
    gateway.ch.write_text(suspended)
    assert gateway.watcher.reload("test: suspended") is True
    rewritten = "# comment added by hand\n" + suspended
    cut = rewritten.index("enabled:")

    with gateway.ch.open("w") as handle:  # shell redirection, cp, many editors: in place, not by rename
        handle.write(rewritten[:cut])
        handle.flush()
        assert gateway.watcher.poll() is None
        handle.write(rewritten[cut:])
    assert gateway.watcher.poll() is None  # changed since the last poll: not settled yet
    assert gateway.swapped[-1].get("ch-swissmedic").profile.enabled is False

    assert gateway.watcher.poll() is True  # unchanged since the previous poll
    assert gateway.watcher.partners.get("ch-swissmedic").profile.enabled is False
    latest = gateway.editor.history.latest("ch-swissmedic")
    assert latest is not None and gateway.editor.history.text("ch-swissmedic", latest.number) == rewritten


def test_a_change_that_has_settled_is_loaded_at_the_first_poll(tmp_path: Path, pki: DevPki) -> None:
    gateway = Gateway(tmp_path, pki, interval=5.0)
    gateway.ch.write_text(MOVED)
    earlier = time.time() - 2
    os.utime(gateway.ch, (earlier, earlier))
    os.utime(gateway.folder, (earlier, earlier))

    assert gateway.watcher.poll() is True
    assert gateway.endpoint() == "https://moved.example/as4"
