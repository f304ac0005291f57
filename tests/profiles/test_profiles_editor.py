"""Editing profiles: validate first, keep every version, audit, roll back, retire."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.errors import ProfileError
from gateway.profiles import DevPki
from gateway.profiles.editor import (
    EditConflict,
    InvalidProfile,
    Precondition,
    ProfileEditor,
    ProfileNotFound,
    apply_merge_patch,
)
from gateway.profiles.history import AuditLog, UnknownVersion, sha256_text
from gateway.profiles.metrics import REGISTRY

from .conftest import NOW
from .helpers import certificate, profile_text, rsa_key, write_certificate

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
ANY = Precondition()


class Setup:
    def __init__(self, tmp_path: Path, pki: DevPki) -> None:
        self.folder = tmp_path / "profiles"
        self.folder.mkdir()
        (self.folder / "ch-swissmedic.yaml").write_text(CH)
        (self.folder / "be-famhp.yaml").write_text(BE)
        self.data = tmp_path / "data"
        self.clock = FixedClock(NOW)
        self.changes: list[str] = []
        self.editor = ProfileEditor(
            self.folder, certificates_dir=pki.folder, data_dir=self.data, clock=self.clock, on_change=self.changed
        )

    def changed(self, reason: str) -> bool:
        self.changes.append(reason)
        return True

    def etag(self, profile_id: str) -> str:
        return self.editor.get(profile_id).etag


@pytest.fixture
def setup(tmp_path: Path, pki: DevPki) -> Setup:
    return Setup(tmp_path, pki)


def test_read_and_list(setup: Setup) -> None:
    found = setup.editor.get("ch-swissmedic")

    assert found.text == CH and found.etag == sha256_text(CH)
    assert [p.id for p in setup.editor.profiles()] == ["be-famhp", "ch-swissmedic"]
    with pytest.raises(ProfileNotFound, match="no partner profile 'de-bfarm'"):
        setup.editor.get("de-bfarm")


def test_ids_that_are_no_slugs_are_refused_before_touching_a_path(setup: Setup) -> None:
    with pytest.raises(UnknownVersion, match="is not a profile id"):
        setup.editor.get("../secrets")
    with pytest.raises(UnknownVersion, match="is not a profile id"):
        setup.editor.put("../x", CH, condition=ANY, actor="t")


def test_put_writes_keeps_both_versions_and_audits(setup: Setup) -> None:
    new = CH.replace("as4.ch-swissmedic.example", "as4-2.ch-swissmedic.example")

    result = setup.editor.put(
        "ch-swissmedic", new, condition=Precondition(if_match=f'"{setup.etag("ch-swissmedic")}"'), actor="alice"
    )

    assert (setup.folder / "ch-swissmedic.yaml").read_text() == new
    assert (result.etag, result.version, result.active) == (sha256_text(new), 2, True)
    assert "+endpoint: https://as4-2.ch-swissmedic.example/as4" in result.diff
    versions = setup.editor.versions("ch-swissmedic")
    assert [(v.number, v.actor, v.action) for v in versions] == [(1, "(file)", "found"), (2, "alice", "put")]
    assert setup.editor.history.text("ch-swissmedic", 1) == CH
    assert (setup.data / "profile-history" / "ch-swissmedic" / "2.yaml").read_text() == new
    [entry] = setup.editor.audit.entries("ch-swissmedic")
    assert entry["actor"] == "alice" and entry["action"] == "put" and entry["result"] == "ok"
    assert entry["before_sha256"] == sha256_text(CH) and entry["after_sha256"] == sha256_text(new)
    assert "-endpoint: https://as4.ch-swissmedic.example/as4" in entry["diff"]
    assert setup.changes == ["profile 'ch-swissmedic' put by alice"]


def test_unchanged_text_writes_nothing(setup: Setup) -> None:
    result = setup.editor.put("ch-swissmedic", CH, condition=ANY, actor="alice")

    assert result.diff == "" and result.version is None
    assert setup.editor.versions("ch-swissmedic") == []
    assert setup.changes == []


def test_stale_etag_is_a_conflict(setup: Setup) -> None:
    with pytest.raises(EditConflict, match="changed since it was read"):
        setup.editor.put("ch-swissmedic", CH + "\n", condition=Precondition(if_match='"abc"'), actor="t")
    with pytest.raises(EditConflict, match="exists already"):
        setup.editor.put("ch-swissmedic", CH, condition=Precondition(if_absent=True), actor="t")
    with pytest.raises(EditConflict, match="does not exist"):
        setup.editor.put("de-bfarm", CH, condition=Precondition(if_match="*"), actor="t")


def test_invalid_edit_is_refused_with_every_error_and_nothing_changes(setup: Setup) -> None:
    refused = REGISTRY.get_sample_value("permit_gateway_profile_reload_total", {"result": "refused"}) or 0
    broken = CH.replace("country: CH", "country: Swiss").replace(
        "signing_certificate: ch", "signing_certificate: xx"
    )

    with pytest.raises(InvalidProfile) as caught:
        setup.editor.put("ch-swissmedic", broken, condition=ANY, actor="mallory")

    path = setup.folder / "ch-swissmedic.yaml"
    edited = "in the edited ch-swissmedic.yaml (not saved), line"
    assert [e.split(" security.")[0].split(" country:")[0] for e in caught.value.errors] == [
        f"{edited} 4 column 1",
        f"{edited} 10 column 3",
    ]
    assert "security.signing_certificate:" in caught.value.errors[1] and " country:" in caught.value.errors[0]
    assert path.read_text() == CH
    assert setup.editor.versions("ch-swissmedic") == []
    [entry] = setup.editor.audit.entries()
    assert entry["result"] == "refused" and entry["actor"] == "mallory" and len(entry["errors"]) == 2
    assert REGISTRY.get_sample_value("permit_gateway_profile_reload_total", {"result": "refused"}) == refused + 1
    assert setup.changes == []


def test_id_must_match_the_profile_edited(setup: Setup) -> None:
    with pytest.raises(InvalidProfile) as caught:
        setup.editor.put(
            "ch-swissmedic", CH.replace("id: ch-swissmedic", "id: ch-other"), condition=ANY, actor="t"
        )

    assert caught.value.errors == [
        "in the edited ch-swissmedic.yaml (not saved), line 2 column 1 id: got 'ch-other', expected 'ch-swissmedic' (the profile edited)"
    ]


def test_cross_file_checks_apply_to_an_edit(setup: Setup) -> None:
    stolen = BE.replace("party_id: BE-FAMHP", "party_id: CH-SWISSMEDIC")

    with pytest.raises(InvalidProfile) as caught:
        setup.editor.put("be-famhp", stolen, condition=ANY, actor="t")

    assert "a PartyId must name one partner" in caught.value.errors[0]


def test_expired_certificate_is_refused_unless_the_profile_is_disabled(setup: Setup, pki: DevPki) -> None:
    setup.clock.advance(timedelta(days=800))
    changed = CH.replace("Authority ch-swissmedic", "Swissmedic")

    with pytest.raises(InvalidProfile) as caught:
        setup.editor.put("ch-swissmedic", changed, condition=ANY, actor="t")
    assert "expired on" in caught.value.errors[0]

    result = setup.editor.put("ch-swissmedic", changed + "enabled: false\n", condition=ANY, actor="t")
    assert any("expired on" in w for w in result.warnings)
    assert any("is disabled" in w for w in result.warnings)


def test_soon_expiring_certificate_is_a_warning(setup: Setup) -> None:
    setup.clock.advance(timedelta(days=700))

    result = setup.editor.put("ch-swissmedic", CH + "compression: false\n", condition=ANY, actor="t")

    [warning] = result.warnings
    assert warning.startswith("partner 'ch-swissmedic' signing certificate (C=CH,O=Swissmedic,CN=CH-SWISSMEDIC")
    assert "expires in 30 days" in warning


def test_creating_a_profile_never_overwrites_a_file_that_holds_another(setup: Setup) -> None:
    """Profiles are found by the id they declare; a new one is written to ID.yaml. That file may hold another
    profile (renamed by hand), which the create would silently replace, without history or audit."""
    (setup.folder / "ch-swissmedic.yaml").rename(setup.folder / "de-bfarm.yaml")
    de = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")

    with pytest.raises(EditConflict, match="already holds another profile \\(id 'ch-swissmedic'\\)"):
        setup.editor.put("de-bfarm", de, condition=Precondition(if_absent=True), actor="t")

    assert (setup.folder / "de-bfarm.yaml").read_text() == CH
    assert setup.changes == []


def test_create_a_new_profile(setup: Setup) -> None:
    de = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")

    result = setup.editor.put("de-bfarm", de, condition=Precondition(if_absent=True), actor="t")

    assert result.path == setup.folder / "de-bfarm.yaml" and result.version == 1
    assert setup.editor.get("de-bfarm").text == de


def test_merge_keeps_comments_and_key_order(setup: Setup) -> None:
    result = setup.editor.merge(
        "ch-swissmedic",
        {
            "enabled": False,
            "security": {"signing_certificates": ["de-bfarm.crt.pem"]},
            "authority_name": "Swissmedic",
        },
        condition=Precondition(if_match=setup.etag("ch-swissmedic")),
        actor="t",
    )

    text = setup.editor.get("ch-swissmedic").text
    assert text == (
        "# ch-swissmedic: a partner of the tests\n"
        "id: ch-swissmedic\n"
        "authority_name: Swissmedic\n"
        "country: CH\n"
        "party_id: CH-SWISSMEDIC\n"
        "endpoint: https://as4.ch-swissmedic.example/as4\n"
        "\n"
        "security:\n"
        "  # the partner's certificate\n"
        "  signing_certificate: ch-swissmedic.crt.pem\n"
        "  signing_certificates:\n"
        "    - de-bfarm.crt.pem\n"
        "enabled: false\n"
    )
    assert result.action == "merge"


def test_merge_null_removes_a_key(setup: Setup) -> None:
    text = apply_merge_patch(CH + "compression: false\n", {"compression": None}, path=Path("x.yaml"))

    assert text == CH


def test_merge_into_a_broken_file_says_so(setup: Setup) -> None:
    (setup.folder / "ch-swissmedic.yaml").write_text("id: ch-swissmedic\nx: [\n")

    with pytest.raises(InvalidProfile, match="not valid YAML, so it cannot be merged"):
        setup.editor.merge("ch-swissmedic", {"enabled": False}, condition=ANY, actor="t")


def test_rollback_restores_an_earlier_version_as_a_new_one(setup: Setup) -> None:
    v2 = CH.replace("Authority ch-swissmedic", "Swissmedic v2")
    v3 = CH.replace("Authority ch-swissmedic", "Swissmedic v3")
    setup.editor.put("ch-swissmedic", v2, condition=ANY, actor="t")
    setup.editor.put("ch-swissmedic", v3, condition=ANY, actor="t")

    previous = setup.editor.rollback("ch-swissmedic", condition=ANY, actor="bob")
    assert setup.editor.get("ch-swissmedic").text == v2 and previous.action == "rollback:2"

    first = setup.editor.rollback("ch-swissmedic", 1, condition=ANY, actor="bob")
    assert setup.editor.get("ch-swissmedic").text == CH
    assert first.version == 5
    assert [v.action for v in setup.editor.versions("ch-swissmedic")] == [
        "found",
        "put",
        "put",
        "rollback:2",
        "rollback:1",
    ]
    with pytest.raises(UnknownVersion, match="has no version 9"):
        setup.editor.rollback("ch-swissmedic", 9, condition=ANY, actor="bob")


def test_rollback_is_validated(setup: Setup, pki: DevPki) -> None:
    setup.editor.put("ch-swissmedic", CH.replace("Authority ch-swissmedic", "v2"), condition=ANY, actor="t")
    setup.clock.advance(timedelta(days=800))

    with pytest.raises(InvalidProfile, match="expired on"):
        setup.editor.rollback("ch-swissmedic", 1, condition=ANY, actor="t")


def test_diff_between_versions(setup: Setup) -> None:
    setup.editor.put("ch-swissmedic", CH.replace("country: CH", "country: LI"), condition=ANY, actor="t")

    assert setup.editor.diff("ch-swissmedic") == setup.editor.diff("ch-swissmedic", 1)
    text = setup.editor.diff("ch-swissmedic", 1, to=2)
    assert "-country: CH\n+country: LI\n" in text
    assert text.startswith("--- ch-swissmedic version 1\n+++ ch-swissmedic version 2\n")


def test_change_made_by_hand_is_kept_in_the_history(setup: Setup) -> None:
    setup.editor.put("ch-swissmedic", CH + "compression: false\n", condition=ANY, actor="t")
    by_hand = CH + "compression: true\n"
    (setup.folder / "ch-swissmedic.yaml").write_text(by_hand)

    setup.editor.put("ch-swissmedic", CH, condition=ANY, actor="t")

    versions = setup.editor.versions("ch-swissmedic")
    assert [v.action for v in versions] == ["found", "put", "changed-on-disk", "put"]
    assert setup.editor.history.text("ch-swissmedic", 3) == by_hand


def test_retire_moves_the_file_into_the_history_and_rollback_brings_it_back(setup: Setup) -> None:
    result = setup.editor.retire(
        "ch-swissmedic", condition=Precondition(if_match=setup.etag("ch-swissmedic")), actor="t"
    )

    assert not (setup.folder / "ch-swissmedic.yaml").exists()
    assert result.etag is None and result.action == "retire"
    assert setup.editor.retired() == ["ch-swissmedic"]
    assert setup.editor.history.text("ch-swissmedic", 1) == CH
    with pytest.raises(ProfileNotFound, match="it was retired, see its history"):
        setup.editor.get("ch-swissmedic")
    assert setup.editor.audit.entries("ch-swissmedic")[-1]["action"] == "retire"
    with pytest.raises(ProfileError, match="does not exist, so it cannot match"):
        setup.editor.rollback("ch-swissmedic", 1, condition=Precondition(if_match="*"), actor="t")

    back = setup.editor.rollback("ch-swissmedic", condition=Precondition(if_absent=True), actor="t")

    assert back.path == setup.folder / "ch-swissmedic.yaml"
    assert setup.editor.get("ch-swissmedic").text == CH
    assert setup.editor.retired() == []
    assert setup.changes[0] == "profile 'ch-swissmedic' retired by t"


def test_audit_log_is_json_lines(setup: Setup) -> None:
    setup.editor.put("ch-swissmedic", CH + "enabled: false\n", condition=ANY, actor="t")
    setup.editor.retire("be-famhp", condition=ANY, actor="u")

    lines = (setup.data / "profile-audit.jsonl").read_text().splitlines()

    assert [json.loads(line)["profile"] for line in lines] == ["ch-swissmedic", "be-famhp"]
    assert setup.editor.audit.entries(limit=1)[0]["actor"] == "u"


def test_certificates_the_partner_rolls_over_to_can_be_added_by_merge(setup: Setup, pki: DevPki) -> None:
    renewed = certificate("CH-SWISSMEDIC", key=rsa_key(4), not_before=NOW, days=700)
    write_certificate(pki.folder / "ch-renewed.crt.pem", renewed)
    try:
        setup.editor.merge(
            "ch-swissmedic",
            {"security": {"signing_certificates": ["ch-renewed.crt.pem"]}},
            condition=ANY,
            actor="t",
        )
    finally:
        (pki.folder / "ch-renewed.crt.pem").unlink()

    assert "ch-renewed.crt.pem" in setup.editor.get("ch-swissmedic").text


def test_an_audit_line_a_crash_cut_short_costs_only_that_line(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.append({"profile": "ch-swissmedic", "action": "create"})
    with audit.path.open("a", encoding="utf-8") as handle:
        handle.write('{"profile": "ch-swissmedic", "act')  # the process died mid-write
    audit.append({"profile": "ch-swissmedic", "action": "update"})

    assert [e["action"] for e in audit.entries("ch-swissmedic")] == ["create", "update"]


def test_a_profile_with_windows_line_endings_keeps_the_etag_its_write_returned(setup: Setup) -> None:
    """The ETag is the hash of the file's bytes; reading with newline translation made it another hash, so
    the ETag a PUT returned was refused (412) and every edit recorded a 'changed on disk' version."""
    crlf = CH.replace("\n", "\r\n")

    written = setup.editor.put("ch-swissmedic", crlf, condition=ANY, actor="windows")

    assert setup.editor.get("ch-swissmedic").etag == written.etag
    merged = setup.editor.merge(
        "ch-swissmedic", {"compression": False}, condition=Precondition(if_match=f'"{written.etag}"'), actor="t"
    )
    assert [v.action for v in setup.editor.versions("ch-swissmedic")][-2:] == ["put", "merge"]
    assert merged.etag == setup.editor.get("ch-swissmedic").etag


def test_a_change_made_by_hand_is_audited_when_the_editor_next_sees_the_file(setup: Setup) -> None:
    """The audit log is complete: a hand edit between two API edits has an entry of its own, with its diff,
    and each entry's before is the previous one's after."""
    setup.editor.put("ch-swissmedic", CH + "compression: false\n", condition=ANY, actor="alice")
    path = setup.folder / "ch-swissmedic.yaml"
    path.write_text(path.read_text() + "enabled: false\n")  # by hand, on the server

    setup.editor.merge(
        "ch-swissmedic",
        {"compression": True},
        condition=Precondition(if_match=setup.etag("ch-swissmedic")),
        actor="bob",
    )

    entries = setup.editor.audit.entries("ch-swissmedic")
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("alice", "put"),
        ("(file)", "changed-on-disk"),
        ("bob", "merge"),
    ]
    assert "+enabled: false" in entries[1]["diff"]
    assert all(later["before_sha256"] == earlier["after_sha256"] for earlier, later in itertools.pairwise(entries))
