"""Editing profiles, the review's findings: a retire is validated like any edit, a change saved by hand while an
edit is checked is not overwritten, a merge patch keeps the comments of the keys it leaves, an unchanged PUT
of a refused file is refused, and an edit keeps the file's mode, owner and symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.files import write_atomically
from gateway.profiles import DevPki
from gateway.profiles import editor as editor_module
from gateway.profiles.editor import EditConflict, InvalidProfile, Precondition, ProfileEditor, apply_merge_patch
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import ProfileWatcher

from .conftest import NOW
from .helpers import profile_text

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
ANY = Precondition(if_match="*")
CH_ENDPOINT = "https://as4.ch-swissmedic.example/as4"


class Gateway:
    """A profile folder with a watcher (what the gateway runs) and the editor behind the admin API."""

    def __init__(self, tmp_path: Path, pki: DevPki) -> None:
        self.folder = tmp_path / "profiles"
        self.folder.mkdir()
        self.ch = self.folder / "ch-swissmedic.yaml"
        self.be = self.folder / "be-famhp.yaml"
        self.ch.write_text(CH)
        self.be.write_text(BE)
        self.clock = FixedClock(NOW)
        self.swapped: list[Partners] = []
        self.watcher = ProfileWatcher(
            self.folder, certificates_dir=pki.folder, clock=self.clock, on_reload=self.swapped.append
        )
        self.editor = ProfileEditor(
            self.folder,
            certificates_dir=pki.folder,
            data_dir=tmp_path / "data",
            clock=self.clock,
            on_change=self.watcher.reload,
        )
        self.watcher.record_with(self.editor)

    def active(self) -> list[str]:
        return [partner.profile.id for partner in self.watcher.partners]

    def break_be_by_hand(self) -> None:
        self.be.write_text(BE.replace("country: BE", "country: Belgium"))
        assert self.watcher.reload("test: a hand edit") is False


@pytest.fixture
def gateway(tmp_path: Path, pki: DevPki) -> Gateway:
    return Gateway(tmp_path, pki)


def test_retire_is_refused_when_the_folder_without_the_profile_would_not_load(gateway: Gateway) -> None:
    gateway.break_be_by_hand()

    with pytest.raises(InvalidProfile) as refused:
        gateway.editor.retire("ch-swissmedic", condition=ANY, actor="alice")

    assert refused.value.errors[0].startswith(f"{gateway.be}:4:1 country: got 'Belgium'")
    assert gateway.ch.read_text() == CH
    assert gateway.active() == ["be-famhp", "ch-swissmedic"]
    [entry] = gateway.editor.audit.entries("ch-swissmedic")
    assert (entry["actor"], entry["action"], entry["result"]) == ("alice", "retire", "refused")
    assert entry["errors"] == refused.value.errors
    assert gateway.editor.history.retired("ch-swissmedic") is None


def test_retire_of_a_valid_folder_takes_effect(gateway: Gateway) -> None:
    result = gateway.editor.retire("ch-swissmedic", condition=ANY, actor="alice")

    assert result.active and not gateway.ch.exists()
    assert gateway.active() == ["be-famhp"]
    assert [(e["action"], e["result"]) for e in gateway.editor.audit.entries()] == [("retire", "ok")]


def hand_edit_while_checking(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> None:
    """An operator saves ``path`` by hand while the editor validates (loads the whole folder)."""
    real = editor_module.load_profile_folder

    def load(*args: Any, **kwargs: Any) -> Any:
        path.write_text(text)
        return real(*args, **kwargs)

    monkeypatch.setattr(editor_module, "load_profile_folder", load)


def test_a_change_saved_by_hand_while_an_edit_is_checked_is_not_overwritten(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_hand = CH.replace(CH_ENDPOINT, "https://new-endpoint.example/as4")
    hand_edit_while_checking(monkeypatch, gateway.ch, by_hand)

    with pytest.raises(EditConflict, match="changed on disk while the edit was checked") as conflict:
        gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")

    assert "fetch it again and reapply the change" in str(conflict.value)
    assert gateway.ch.read_text() == by_hand
    assert [v.actor for v in gateway.editor.history.versions("ch-swissmedic")] == []
    assert gateway.editor.audit.entries() == []


def test_a_profile_created_by_hand_while_a_create_is_checked_is_not_overwritten(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    de = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")
    path = gateway.folder / "de-bfarm.yaml"
    hand_edit_while_checking(monkeypatch, path, de + "enabled: false\n")

    with pytest.raises(EditConflict, match="changed on disk while the edit was checked"):
        gateway.editor.put("de-bfarm", de, condition=Precondition(if_absent=True), actor="alice")

    assert path.read_text() == de + "enabled: false\n"


def test_a_change_saved_by_hand_while_a_retire_is_checked_is_not_lost(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_hand = CH + "enabled: false\n"
    hand_edit_while_checking(monkeypatch, gateway.ch, by_hand)

    with pytest.raises(EditConflict, match="changed on disk while the edit was checked"):
        gateway.editor.retire("ch-swissmedic", condition=ANY, actor="alice")

    assert gateway.ch.read_text() == by_hand


BASE = """\
# the partner's profile
id: ch-swissmedic
compression: false   # the partner cannot gunzip
# SUSPENDED 2026-02: see ticket 4711, do not re-enable without the CISO
enabled: false
security:
  first: 1  # first's own
  # about second
  second: 2
  third:
    - x
    - y  # y's own
  # about fourth
  fourth: 4
# about reception
reception: 3
"""


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"compression": None},
            BASE.replace("compression: false   # the partner cannot gunzip\n", ""),
        ),
        (
            {"security": {"first": None}},
            BASE.replace("  first: 1  # first's own\n", ""),
        ),
        (
            {"security": {"third": None}},
            BASE.replace("  third:\n    - x\n    - y  # y's own\n", ""),
        ),
        (
            {"security": None},
            BASE[: BASE.index("security:")] + BASE[BASE.index("# about reception") :],
        ),
        (
            {"id": None},
            BASE.replace("id: ch-swissmedic\n", ""),
        ),
    ],
)
def test_a_merge_patch_removing_a_key_keeps_the_comments_of_the_keys_after_it(
    patch: dict[str, Any], expected: str
) -> None:
    assert apply_merge_patch(BASE, patch, path=Path("x.yaml")) == expected


def test_an_unchanged_put_of_a_file_the_watcher_refused_is_refused(gateway: Gateway) -> None:
    gateway.ch.write_text(CH.replace(CH_ENDPOINT, "ftp://broken"))
    assert gateway.watcher.reload("test: a hand edit") is False
    current = gateway.editor.get("ch-swissmedic")

    with pytest.raises(InvalidProfile) as refused:
        gateway.editor.put("ch-swissmedic", current.text, condition=Precondition(if_match=current.etag), actor="a")

    assert refused.value.errors[0].startswith(f"{gateway.ch}:6:1 endpoint: got 'ftp://broken'")
    audited = [(e["actor"], e["action"], e["result"]) for e in gateway.editor.audit.entries()]
    assert audited == [("(file on disk)", "changed-on-disk", "refused"), ("a", "put", "refused")]
    assert gateway.watcher.partners.get("ch-swissmedic").profile.endpoint == CH_ENDPOINT


def test_an_unchanged_put_of_a_valid_file_reports_its_warnings(gateway: Gateway) -> None:
    gateway.editor.put("ch-swissmedic", CH + "enabled: false\n", condition=ANY, actor="a")

    again = gateway.editor.put("ch-swissmedic", CH + "enabled: false\n", condition=ANY, actor="a")

    assert (again.active, again.diff, again.version) == (True, "", 2)
    assert "partner 'ch-swissmedic' is disabled (enabled: false): nothing is exchanged with it" in again.warnings


def test_an_edit_keeps_the_mode_and_owner_of_the_file(gateway: Gateway) -> None:
    """A profile readable by the gateway's service account stays readable after an operator's edit."""
    gateway.ch.chmod(0o644)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(gateway.ch, *owner)

    gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="cli:root")

    after = gateway.ch.stat()
    assert "compression: false" in gateway.ch.read_text()
    assert stat.S_IMODE(after.st_mode) == 0o644
    assert (after.st_uid, after.st_gid) == owner


def test_an_edit_of_a_symlinked_profile_changes_the_target(gateway: Gateway, tmp_path: Path) -> None:
    """A profile linked from a configuration repository stays a link, and the repository gets the edit."""
    repository = tmp_path / "repository"
    repository.mkdir()
    target = repository / "ch-swissmedic.yaml"
    gateway.ch.rename(target)
    gateway.ch.symlink_to(target)

    result = gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="a")

    assert gateway.ch.is_symlink() and gateway.ch.resolve() == target
    assert "compression: false" in target.read_text()
    assert result.etag == gateway.editor.get("ch-swissmedic").etag
    assert not [p for p in repository.iterdir() if p != target]  # no temporary file left behind


def test_atomic_writes_elsewhere_keep_their_defaults(tmp_path: Path) -> None:
    """Payloads and inbox files are new files, private to the gateway; only a profile edit keeps attributes."""
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"old")
    existing.chmod(0o644)
    link = tmp_path / "link.bin"
    link.symlink_to(existing)

    write_atomically(existing, b"new")
    write_atomically(link, b"replaced")
    write_atomically(tmp_path / "new.bin", b"new", keep_attributes=True)

    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert not link.is_symlink() and link.read_bytes() == b"replaced"
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o600
