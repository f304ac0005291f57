"""Editing profiles, the second review's findings: a change whose writer stopped before its audit entry is
audited at the next start or edit (once), an edit cannot point delivery.folder outside the inbox, a merge patch
that replaces a list keeps the comments after it, and a weak ETag does not satisfy If-Match."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.clock import FixedClock
from gateway.profiles import DevPki
from gateway.profiles.editor import (
    EditConflict,
    InvalidProfile,
    Precondition,
    ProfileEditor,
    ProfileFile,
    apply_merge_patch,
)
from gateway.profiles.history import sha256_text
from gateway.profiles.watcher import ProfileWatcher
from gateway.settings import FolderSettings
from tests.interfaces.test_admin import AUTH, TOKEN, URL, admin_app

from .conftest import NOW
from .helpers import profile_text

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
ANY = Precondition(if_match="*")


class Killed(BaseException):
    """The process stopping at this point (nothing after it runs, not even except Exception)."""


class Gateway:
    """A profile folder, data folder and [folders] as a gateway has them; ``start()`` is a (re)start."""

    def __init__(self, tmp_path: Path, pki: DevPki, *, folders: bool = True) -> None:
        self.folder = tmp_path / "profiles"
        self.folder.mkdir()
        (self.folder / "ch-swissmedic.yaml").write_text(CH)
        (self.folder / "be-famhp.yaml").write_text(BE)
        self.pki, self.data = pki, tmp_path / "var"
        var = self.data
        self.folders = FolderSettings(inbox=var / "inbox", outbox=var / "outbox", rejected=var / "rejected")
        self.with_folders = folders
        self.editor = self.start()

    def start(self) -> ProfileEditor:
        clock = FixedClock(NOW)
        watcher = ProfileWatcher(
            self.folder, certificates_dir=self.pki.folder, clock=clock, on_reload=lambda _: None
        )
        editor = ProfileEditor(
            self.folder,
            certificates_dir=self.pki.folder,
            data_dir=self.data,
            clock=clock,
            on_change=watcher.reload,
            folders=self.folders if self.with_folders else None,
        )
        watcher.record_with(editor)
        watcher.record_start()
        return editor

    def killed_before_audit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The editor's process stops right before it writes the audit entry of its next change."""
        real = self.editor.audit.append

        def append(entry: dict[str, Any]) -> None:
            if entry.get("result") == "ok":
                raise Killed(entry["action"])
            real(entry)

        monkeypatch.setattr(self.editor.audit, "append", append)

    def entries(self, profile_id: str = "ch-swissmedic") -> list[dict[str, Any]]:
        return self.editor.audit.entries(profile_id, limit=1000)


@pytest.fixture
def gateway(tmp_path: Path, pki: DevPki) -> Gateway:
    return Gateway(tmp_path, pki)


# --- a change whose writer stopped before its audit entry ------------------------------------------------


def test_an_edit_killed_before_its_audit_entry_is_audited_at_the_next_start(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = CH + "compression: false\n"
    gateway.killed_before_audit(monkeypatch)
    with pytest.raises(Killed):
        gateway.editor.put("ch-swissmedic", changed, condition=Precondition(if_match=sha256_text(CH)), actor="eve")
    assert (gateway.folder / "ch-swissmedic.yaml").read_text() == changed  # in force, and in the history
    monkeypatch.undo()

    restarted = gateway.start()
    [entry] = [
        e for e in restarted.audit.entries("ch-swissmedic") if e.get("after_sha256") == sha256_text(changed)
    ]
    assert entry["recovered"] is True and entry["actor"] == "eve" and entry["action"] == "put"
    assert entry["at"] == NOW.isoformat() and entry["version"] == 2 and entry["result"] == "ok"
    assert entry["before_sha256"] == sha256_text(CH)
    assert "+compression: false" in entry["diff"]

    gateway.start()  # audited once: a further start finds nothing missing
    assert [e.get("recovered") for e in gateway.entries()].count(True) == 1


def test_an_edit_killed_before_its_audit_entry_is_audited_by_the_next_edit(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI killed while the gateway runs: the file is what the history's latest version holds, so the
    watcher skips it; the next writer (any profile) audits it before its own change."""
    changed = CH + "compression: false\n"
    gateway.killed_before_audit(monkeypatch)
    with pytest.raises(Killed):
        gateway.editor.put("ch-swissmedic", changed, condition=ANY, actor="cli:root")
    monkeypatch.undo()

    gateway.editor.merge("be-famhp", {"compression": False}, condition=ANY, actor="alice")
    ch = gateway.entries()
    assert [(e["action"], e["actor"], e.get("recovered")) for e in ch] == [
        ("added-on-disk", "(file on disk)", None),
        ("put", "cli:root", True),
    ]
    be = gateway.entries("be-famhp")
    assert [(e["action"], e.get("recovered")) for e in be] == [("added-on-disk", None), ("merge", None)]


def test_a_retire_killed_before_its_audit_entry_is_audited_at_the_next_start(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway.killed_before_audit(monkeypatch)
    with pytest.raises(Killed):
        gateway.editor.retire("ch-swissmedic", condition=ANY, actor="eve")
    assert not (gateway.folder / "ch-swissmedic.yaml").exists()
    monkeypatch.undo()

    gateway.start()
    [entry] = [e for e in gateway.entries() if e["action"] == "retire"]
    assert entry["recovered"] is True and entry["actor"] == "eve" and entry["at"] == NOW.isoformat()
    assert entry["before_sha256"] == sha256_text(CH) and entry["after_sha256"] is None
    assert "-id: ch-swissmedic" in entry["diff"]
    gateway.start()
    assert [e["action"] for e in gateway.entries()] == ["added-on-disk", "retire"]


def test_edits_that_completed_are_audited_once_across_restarts(gateway: Gateway) -> None:
    editor = gateway.editor
    editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")
    editor.retire("ch-swissmedic", condition=ANY, actor="alice")
    editor.rollback("ch-swissmedic", condition=Precondition(if_absent=True), actor="bob")
    editor.retire("ch-swissmedic", condition=ANY, actor="bob")
    gateway.start()
    gateway.start().merge("be-famhp", {"compression": False}, condition=ANY, actor="alice")
    actions = [(e["action"], e["actor"]) for e in gateway.entries()]
    assert actions == [
        ("added-on-disk", "(file on disk)"),
        ("merge", "alice"),
        ("retire", "alice"),
        ("rollback:2", "bob"),
        ("retire", "bob"),
    ]
    assert not any(e.get("recovered") for e in editor.audit.entries(limit=1000))


# --- delivery.folder confined for edits ----------------------------------------------------------------


def _deliver_to(editor: ProfileEditor, folder: str) -> None:
    editor.merge("ch-swissmedic", {"delivery": {"folder": folder}}, condition=ANY, actor="eve")


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("{var}/outbox", "the outbox ([folders].outbox)"),
        ("{var}/outbox/../outbox/sub", "the outbox ([folders].outbox)"),
        ("{var}/rejected", "the rejected folder ([folders].rejected)"),
        (".", "the partner profile folder ([profiles].folder)"),
        ("{pki}", "the certificates folder ([profiles].certificates)"),
        ("{var}/profile-history", "the gateway's data folder (data_dir)"),
        ("{var}", "the gateway's data folder (data_dir)"),
        ("/etc/cron.d", "outside the inbox ([folders].inbox: {var}/inbox)"),
        ("../elsewhere", "outside the inbox ([folders].inbox: {var}/inbox)"),
        ("{var}/inbox/../../outside", "outside the inbox ([folders].inbox: {var}/inbox)"),
    ],
)
def test_an_edit_cannot_deliver_outside_the_inbox(gateway: Gateway, target: str, named: str) -> None:
    var, pki = gateway.data.resolve(), gateway.pki.folder.resolve()
    with pytest.raises(InvalidProfile) as refused:
        _deliver_to(gateway.editor, target.format(var=var, pki=pki))
    [error] = refused.value.errors
    assert error.startswith("in the edited ch-swissmedic.yaml (not saved), line ")
    assert " delivery.folder: got " in error and named.format(var=var) in error
    assert f"Name a folder inside {var / 'inbox'}, or leave delivery.folder out" in error
    assert (gateway.folder / "ch-swissmedic.yaml").read_text() == CH


def test_a_symbolic_link_into_the_outbox_is_followed(gateway: Gateway, tmp_path: Path) -> None:
    (gateway.data / "outbox").mkdir(parents=True)
    (gateway.data / "inbox").mkdir()
    (gateway.data / "inbox" / "ch").symlink_to(gateway.data / "outbox")
    with pytest.raises(InvalidProfile, match=r"inside the outbox \(\[folders\]\.outbox\)"):
        _deliver_to(gateway.editor, str(gateway.data / "inbox" / "ch"))


def test_an_edit_may_deliver_into_the_inbox_and_keep_a_folder_set_on_disk(gateway: Gateway) -> None:
    inbox = gateway.data / "inbox"
    _deliver_to(gateway.editor, str(inbox / "ch"))
    _deliver_to(gateway.editor, str(inbox))
    assert "folder: " in (gateway.folder / "ch-swissmedic.yaml").read_text()

    # the operator's own choice, made on disk, stays editable
    (gateway.folder / "ch-swissmedic.yaml").write_text(CH + "delivery:\n  folder: /srv/national/ch\n")
    gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")
    assert "folder: /srv/national/ch" in (gateway.folder / "ch-swissmedic.yaml").read_text()
    with pytest.raises(InvalidProfile, match="outside the inbox"):
        _deliver_to(gateway.editor, "/srv/national/other")


def test_without_the_folders_an_edit_cannot_name_a_new_delivery_folder(tmp_path: Path, pki: DevPki) -> None:
    gateway = Gateway(tmp_path, pki, folders=False)
    with pytest.raises(InvalidProfile) as refused:
        _deliver_to(gateway.editor, str(tmp_path / "var" / "inbox" / "ch"))
    [error] = refused.value.errors
    assert "this editor was not told the gateway's inbox ([folders].inbox)" in error
    assert "leave delivery.folder out" in error
    gateway.editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")  # others edit


# --- a merge patch replacing a block keeps the comments after it ------------------------------------------

TEXT = """\
id: x
documents:
  send:
    - ImportAuthorization
  receive:       # what we accept
    - ImportAuthorization
    - ExportAuthorization   # the last one

# payload handling: agreed on 2026-01-12, ticket OPS-4711
compression: true
contacts:
  - name: desk
    email: desk@example.org
# end of profile: reviewed 2026-02-01
"""


@pytest.mark.parametrize(
    "patch",
    [
        {"documents": {"receive": ["Acknowledgement"]}},
        {"documents": {"receive": []}},
        {"documents": {"receive": "Acknowledgement"}},
        {"documents": ["a", "b"]},
        {"documents": {"send": None, "receive": [{"nested": ["Acknowledgement"]}]}},
    ],
)
def test_replacing_a_block_keeps_the_comment_lines_after_it(patch: dict[str, Any]) -> None:
    merged = apply_merge_patch(TEXT, patch, path=Path("x.yaml"))
    assert "\n# payload handling: agreed on 2026-01-12, ticket OPS-4711\ncompression: true\n" in merged
    assert "# the last one" not in merged  # the replaced entry's own end-of-line comment goes with it


def test_replacing_the_last_block_keeps_the_comment_that_ends_the_file() -> None:
    merged = apply_merge_patch(
        TEXT, {"contacts": [{"name": "new", "email": "n@example.org"}]}, path=Path("x.yaml")
    )
    assert merged.endswith("  - name: new\n    email: n@example.org\n# end of profile: reviewed 2026-02-01\n")


# --- If-Match compares strongly ---------------------------------------------------------------------------


def test_a_weak_etag_matches_only_the_same_bytes() -> None:
    """A proxy that compresses answers weakens the ETag; its value is still the file's SHA-256."""
    found = ProfileFile(id="ch-swissmedic", path=Path("ch.yaml"), text=CH)
    Precondition(if_match=f'W/"{found.etag}"').check("ch-swissmedic", found)
    with pytest.raises(EditConflict, match="changed since it was read"):
        Precondition(if_match=f'W/"{"0" * 64}"').check("ch-swissmedic", found)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[TestClient[Any, Any]]:
    watcher = ProfileWatcher(
        gateway.folder, certificates_dir=gateway.pki.folder, clock=FixedClock(NOW), on_reload=lambda _: None
    )
    async with TestClient(TestServer(admin_app(gateway.editor, watcher, TOKEN), host="127.0.0.1")) as client:
        yield client


async def test_the_admin_api_takes_the_etag_a_proxy_weakened(client: TestClient[Any, Any], gateway: Gateway) -> None:
    async with client.get(f"{URL}/ch-swissmedic", headers=AUTH) as read:
        etag = read.headers["ETag"]
    stale = {"If-Match": 'W/"' + "0" * 64 + '"'}
    async with client.patch(f"{URL}/ch-swissmedic", json={"compression": False}, headers=AUTH | stale) as refused:
        assert refused.status == 412
    assert (gateway.folder / "ch-swissmedic.yaml").read_text() == CH
    weak = {"If-Match": f"W/{etag}"}
    async with client.patch(f"{URL}/ch-swissmedic", json={"compression": False}, headers=AUTH | weak) as ok:
        assert ok.status == 200


# --- a rollback restores a certificate the operator named on disk -----------------------------------------


def test_a_retired_profile_naming_an_operators_certificate_can_be_rolled_back(
    gateway: Gateway, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "operator-certs"
    elsewhere.mkdir()
    (elsewhere / "ch.pem").write_bytes((gateway.pki.folder / "ch-swissmedic.crt.pem").read_bytes())
    (gateway.folder / "ch-swissmedic.yaml").write_text(
        CH.replace("ch-swissmedic.crt.pem", str(elsewhere / "ch.pem"))
    )
    editor = gateway.start()  # found on disk: the operator's choice
    editor.merge("ch-swissmedic", {"compression": False}, condition=ANY, actor="alice")
    editor.retire("ch-swissmedic", condition=ANY, actor="alice")
    restored = editor.rollback("ch-swissmedic", condition=Precondition(if_absent=True), actor="alice")
    assert restored.action == "rollback:3"
    assert str(elsewhere / "ch.pem") in (gateway.folder / "ch-swissmedic.yaml").read_text()

    # a file no version found on disk named stays refused, rollback or not
    editor.retire("ch-swissmedic", condition=ANY, actor="alice")
    other = editor.history.text("ch-swissmedic", 3).replace(str(elsewhere / "ch.pem"), str(tmp_path / "x.pem"))
    editor.history.add("ch-swissmedic", other, at=NOW, actor="alice", action="put", file="ch-swissmedic.yaml")
    with pytest.raises(InvalidProfile, match=r"outside .*a file an edit .* names must be in that folder"):
        editor.rollback("ch-swissmedic", 5, condition=Precondition(if_absent=True), actor="alice")
