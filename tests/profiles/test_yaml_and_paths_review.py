"""A security review of the profile loader, editor and watcher: YAML the library fails to build, aliases, long
error reports, paths the system refuses, files outside the certificates folder, changes found on disk that
must be audited, and a FIFO in place of a watched certificate."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.errors import ProfileError
from gateway.profiles import DevPki
from gateway.profiles.editor import InvalidProfile, Precondition, ProfileEditor, apply_merge_patch
from gateway.profiles.loader import load_profile_text, profile_files
from gateway.profiles.watcher import ProfileWatcher

from .conftest import MINIMAL, NOW
from .helpers import default_structlog, profile_text

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
ANY = Precondition(if_match="*")


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


def _load(text: str, pki: DevPki, path: Path = Path("/profiles/ch-swissmedic.yaml")) -> str:
    with pytest.raises(ProfileError) as caught:
        load_profile_text(text, path=path, certificates_dir=pki.folder)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("2026-02-30", 17),  # a date that does not exist: ValueError
        ("9" * 5000, 17),  # over Python's 4300 digits: ValueError
        ("!!int 0xZZ", 17),
        ("!!float abc", 17),
        ("!!bool maybe", 17),  # KeyError
        ("!!omap [a: 1, a: 2]", 17),  # AssertionError
        ("!!int " + ":".join(str(n) for n in range(1, 41)), 17),  # a long sexagesimal int
    ],
    ids=["impossible-date", "huge-int", "hex-int", "float-tag", "bool-tag", "omap-duplicate", "sexagesimal"],
)
def test_a_value_the_yaml_library_cannot_build_is_a_profile_error_at_its_line(
    value: str, column: int, pki: DevPki
) -> None:
    """Found by the review: the library raised a plain ValueError, KeyError or AssertionError, which an edit
    answered with 500 and no audit, and the watcher, the list and the CLI with a traceback."""
    text = MINIMAL.replace("authority_name: Swissmedic", f"authority_name: {value}")
    error = _load(text, pki)

    assert error.startswith(f"/profiles/ch-swissmedic.yaml:3:{column}: not valid YAML: cannot read the value")
    assert "quote it to make it text, or write a valid value" in error
    assert len(error) < 600


def test_a_broken_file_in_the_folder_still_lets_every_profile_be_listed_and_read(
    pki: DevPki, tmp_path: Path
) -> None:
    (tmp_path / "ch-swissmedic.yaml").write_text(CH)
    (tmp_path / "zz-broken.yaml").write_text("id: zz-broken\nauthority_name: 2026-02-30\n")
    editor = ProfileEditor(tmp_path, certificates_dir=pki.folder, data_dir=tmp_path / "d", clock=FixedClock(NOW))

    assert profile_files(tmp_path) == {
        "ch-swissmedic": tmp_path / "ch-swissmedic.yaml",
        "zz-broken": tmp_path / "zz-broken.yaml",
    }
    assert editor.get("zz-broken").text.startswith("id: zz-broken")
    # another file's edit is not stopped by it: written, audited, and the broken file named in its warnings
    result = editor.put("ch-swissmedic", CH.replace("Authority", "The authority"), condition=ANY, actor="t")
    said = f"{tmp_path / 'zz-broken.yaml'}:2:17: not valid YAML: cannot read the value '2026-02-30'"
    assert any(said in warning for warning in result.warnings), result.warnings
    assert editor.audit.entries(limit=10)[-1]["result"] == "ok"


def test_the_watcher_refuses_such_a_file_and_records_why(pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "ch-swissmedic.yaml").write_text(CH)
    watcher = ProfileWatcher(tmp_path, certificates_dir=pki.folder, clock=FixedClock(NOW), on_reload=print)
    (tmp_path / "zz-broken.yaml").write_text("id: zz-broken\nauthority_name: !!bool maybe\n")

    assert watcher.reload("test", found_on_disk=True) is False
    assert watcher.last_error is not None and "zz-broken.yaml:2:17: not valid YAML" in watcher.last_error


def test_merging_into_such_a_file_says_where_it_is_broken(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfile) as caught:
        apply_merge_patch("id: x\nauthority_name: 2026-02-30\n", {"enabled": False}, path=Path("x.yaml"))

    assert caught.value.errors[0].startswith("x.yaml:2:17: not valid YAML: cannot read the value")
    assert "not valid YAML, so it cannot be merged" in caught.value.errors[-1]


def test_a_merge_patch_nested_deeper_than_a_profile_is_refused_before_it_is_applied() -> None:
    """Found by the review: a patch 300 objects deep raised RecursionError (500)."""
    patch: dict[str, object] = {}
    inner = patch
    for _ in range(300):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]

    with pytest.raises(InvalidProfile) as caught:
        apply_merge_patch(CH, patch, path=Path("x.yaml"))

    assert caught.value.errors == [
        "x.yaml: the merge patch is nested more than 16 levels deep, deeper than a partner profile may be; send "
        "only the keys to change"
    ]


def test_a_scalar_alias_is_refused_at_its_place_and_the_error_stays_small(pki: DevPki) -> None:
    """Found by the review: one 3.8 KB scalar and 20000 aliases of it (an 84 KB body) made a 159 MB error, sent
    back and written to the audit log: shared mappings and lists were refused, repeated scalars were not."""
    value = "/".join(["d" * 200] * 19)
    aliases = ", ".join(["*a"] * 20000)
    text = f"x0: &a {value}\n" + MINIMAL.replace(
        "security:\n", f"security:\n  signing_certificates: [{aliases}]\n"
    )

    error = _load(text, pki)

    lines = error.splitlines()
    assert lines[0] == (
        "/profiles/ch-swissmedic.yaml:9:26: a YAML alias (*a) repeats the value of an anchor; partner profiles "
        "do not use anchors and aliases: write the value out where it is needed"
    )
    assert len(lines) == 51 and lines[-1] == "/profiles/ch-swissmedic.yaml: and 19950 more like these"
    assert len(error) < 20_000


def test_one_alias_of_a_short_value_is_refused_too(pki: DevPki) -> None:
    text = MINIMAL.replace("authority_name: Swissmedic", "authority_name: &n Swissmedic") + "  subject: *n\n"

    assert _load(text, pki).startswith("/profiles/ch-swissmedic.yaml:10:12: a YAML alias (*n) repeats the value")


def test_many_problems_are_reported_fifty_at_a_time_with_each_value_shortened(pki: DevPki) -> None:
    names = ", ".join(f"missing-{n}-{'x' * 1000}.pem" for n in range(200))
    text = MINIMAL.replace("security:\n", f"security:\n  signing_certificates: [{names}]\n")

    lines = _load(text, pki).splitlines()

    assert len(lines) == 51 and lines[-1] == "/profiles/ch-swissmedic.yaml: and 150 more like these"
    assert all(len(line) < 1000 for line in lines)


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        ('"a\\0b"', "got 'a\\x00b', which holds a NUL character; expected a file name"),
        ("x" * 300, "(300 characters); a file name has at most 255 bytes and a path 4096"),
    ],
    ids=["nul", "long-name"],
)
def test_a_path_the_system_refuses_is_reported_on_its_line(named: str, expected: str, pki: DevPki) -> None:
    """Found by the review: a NUL raised ValueError, a 300-character name OSError (both 500 through the API)."""
    text = MINIMAL + f"tls:\n  client_certificate: ch-swissmedic.crt.pem\n  client_key: {named}\n"

    error = _load(text, pki)

    assert error.startswith("/profiles/ch-swissmedic.yaml:12:3 tls.client_key: ")
    assert expected in error


def test_an_edit_may_name_files_only_in_the_certificates_folder(pki: DevPki, tmp_path: Path) -> None:
    """Found by the review: through an edit an admin token could tell which files of the host exist
    ('/etc/shadow holds no X.509 certificate' against 'is not a file'); only the TLS key was confined."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    editor = ProfileEditor(folder, certificates_dir=pki.folder, data_dir=tmp_path / "d", clock=FixedClock(NOW))

    for named in ("/etc/hostname", "/nonexistent/x.pem", "../../../../../etc/passwd"):
        with pytest.raises(InvalidProfile) as caught:
            editor.put("ch-swissmedic", CH.replace("ch-swissmedic.crt.pem", named), condition=ANY, actor="t")
        [error] = caught.value.errors
        assert error.startswith(
            f"in the edited ch-swissmedic.yaml (not saved), line 10 column 3 security.signing_certificate: got {named!r}, which is outside "
            f"{pki.folder}; a file an edit (the admin API, 'permit-gateway profiles') names must be in that folder"
        )


def test_a_file_outside_that_the_operator_named_stays_editable(pki: DevPki, tmp_path: Path) -> None:
    """A profile written on disk may name a certificate anywhere (relative names resolve against the folder,
    absolute ones are the operator's choice): an edit that keeps it is accepted."""
    outside = tmp_path / "elsewhere" / "ch.pem"
    outside.parent.mkdir()
    outside.write_bytes(pki.files_for("CH-SWISSMEDIC").certificate.read_bytes())
    folder = tmp_path / "profiles"
    folder.mkdir()
    text = CH.replace("ch-swissmedic.crt.pem", str(outside))
    (folder / "ch-swissmedic.yaml").write_text(text)
    editor = ProfileEditor(folder, certificates_dir=pki.folder, data_dir=tmp_path / "d", clock=FixedClock(NOW))

    result = editor.put("ch-swissmedic", text.replace("Authority", "The authority"), condition=ANY, actor="t")

    assert result.version is not None


def _audit(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "data" / "profile-audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _watched(pki: DevPki, tmp_path: Path) -> tuple[Path, ProfileWatcher]:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    clock = FixedClock(NOW)
    watcher = ProfileWatcher(folder, certificates_dir=pki.folder, clock=clock, on_reload=lambda _: None)
    editor = ProfileEditor(folder, certificates_dir=pki.folder, data_dir=tmp_path / "data", clock=clock)
    watcher.record_with(editor)
    return folder, watcher


def test_a_hand_edit_beside_an_unreadable_file_is_versioned_and_audited(pki: DevPki, tmp_path: Path) -> None:
    """Found by the review: a file nested too deeply made the recorder raise on it (RecursionError) and drop the
    other changes of the same reload; the hand edit then became active at the next reload, unaudited."""
    folder, watcher = _watched(pki, tmp_path)
    (folder / "ch-swissmedic.yaml").write_text(CH.replace("# ch-swissmedic", "# ch-swissmedic edited by hand"))
    (folder / "a-broken.yaml").write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")

    # the hand edit applies, the broken file is held back
    assert watcher.reload("test", found_on_disk=True) is True
    (folder / "a-broken.yaml").unlink()
    assert watcher.reload("test", found_on_disk=True) is True

    entries = [(e["profile"], e["action"], e["result"]) for e in _audit(tmp_path)]
    assert entries == [
        ("ch-swissmedic", "changed-on-disk", "activated"),
        ("a-broken", "added-on-disk", "refused"),
        ("a-broken", "removed-on-disk", "activated"),
    ]


def test_a_change_that_cannot_be_versioned_is_still_audited_and_the_others_recorded(
    pki: DevPki, tmp_path: Path
) -> None:
    folder, watcher = _watched(pki, tmp_path)
    history = tmp_path / "data" / "profile-history"
    history.mkdir(parents=True)
    (history / "be-famhp").write_text("not a folder")  # its versions cannot be kept
    (folder / "be-famhp.yaml").write_text(profile_text("be-famhp", "be-famhp.crt.pem", country="BE"))
    (folder / "ch-swissmedic.yaml").write_text(CH.replace("# ch-swissmedic", "# ch-swissmedic edited by hand"))

    assert watcher.reload("test", found_on_disk=True) is True

    entries = _audit(tmp_path)
    assert [(e["profile"], e["action"], e["result"], e["version"]) for e in entries] == [
        ("be-famhp.yaml", "changed-on-disk", "activated", None),
        ("ch-swissmedic", "changed-on-disk", "activated", 2),
    ]
    assert entries[0]["file"] == str(folder / "be-famhp.yaml") and entries[0]["before_sha256"] is None
    assert isinstance(entries[0]["after_sha256"], str) and "diff" not in entries[0]


def test_a_fifo_in_place_of_a_watched_certificate_does_not_hang_the_poll(pki: DevPki, tmp_path: Path) -> None:
    """Found by the review: the poll read the FIFO and waited for a writer forever, holding the lock every edit
    needs."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert = certs / "ch-swissmedic.crt.pem"
    cert.write_bytes(pki.files_for("CH-SWISSMEDIC").certificate.read_bytes())
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    watcher = ProfileWatcher(folder, certificates_dir=certs, clock=FixedClock(NOW), on_reload=lambda _: None)
    cert.unlink()
    os.mkfifo(cert)
    outcome: list[bool] = []
    poll = threading.Thread(target=lambda: outcome.append(watcher.reload("test", found_on_disk=True)), daemon=True)
    poll.start()
    poll.join(5)
    hung = poll.is_alive()
    if hung:  # the old code: give it a writer so that the thread ends
        os.close(os.open(cert, os.O_WRONLY | os.O_NONBLOCK))
        poll.join(5)

    assert not hung
    assert outcome == [False]
    assert watcher.last_error is not None and "is not a file" in watcher.last_error
