"""One broken profile file among many holds back only itself: its last accepted version stays active, the other
files' changes take effect, and a gateway starts without it; conflicts between files still refuse the whole set."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import ProfileError
from gateway.profiles import DevPki
from gateway.profiles.check import check_folder
from gateway.profiles.loader import load_profile_folder
from gateway.profiles.metrics import REGISTRY
from gateway.profiles.watcher import ProfileWatcher, ReloadOutcome

from .conftest import NOW
from .helpers import profile_text
from .test_profiles_watcher import BE, CH, Harness, reloads

BROKEN_CH = CH.replace("country: CH", "country: Switzerland")
NEW_ENDPOINT = "https://new.be.example/as4"


def held_back() -> float:
    return REGISTRY.get_sample_value("permit_gateway_profiles_held_back") or 0.0


class Recorder:
    """The editor's side of the watcher: every outcome it is handed."""

    def __init__(self) -> None:
        self.reloads: list[ReloadOutcome] = []
        self.starts: list[ReloadOutcome] = []

    def record_reload(self, outcome: ReloadOutcome) -> None:
        self.reloads.append(outcome)

    def record_start(self, outcome: ReloadOutcome) -> None:
        self.starts.append(outcome)


@pytest.fixture
def harness(tmp_path: Path, pki: DevPki) -> Harness:
    return Harness(tmp_path, pki)


def test_a_broken_file_keeps_its_last_version_and_another_files_edit_takes_effect(harness: Harness) -> None:
    ch_before = harness.watcher.partners.get("ch-swissmedic").profile
    partial_before, refused_before = reloads("partial"), reloads("refused")
    harness.write("ch-swissmedic.yaml", BROKEN_CH)
    harness.write("be-famhp.yaml", BE.replace("https://as4.be-famhp.example/as4", NEW_ENDPOINT))
    recorder = Recorder()
    harness.watcher.record_with(recorder)

    with capture_logs() as logs:
        assert harness.watcher.poll() is True

    assert harness.endpoint("be-famhp") == NEW_ENDPOINT
    assert harness.watcher.partners.get("ch-swissmedic").profile == ch_before
    assert harness.swapped == [harness.watcher.partners]
    assert reloads("partial") == partial_before + 1 and reloads("refused") == refused_before
    assert held_back() == 1
    ch_file = str(harness.folder / "ch-swissmedic.yaml")
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["event"].startswith("partner profile file held back: its last accepted version stays active")
    assert error["file"] == ch_file and error["profile"] == "ch-swissmedic"
    assert error["errors"][0].startswith(f"{ch_file}:4:1 country: got 'Switzerland'")
    assert "profiles check" in error["fix"]
    summary = logs[-1]
    assert summary["event"] == "partner profiles reloaded"
    assert summary["changed"] == ["be-famhp"] and summary["held_back"] == [ch_file]
    assert ch_file in (harness.watcher.last_error or "")
    # the edit goes to the history as activated, the broken file as refused with its own errors
    [applied, refused] = recorder.reloads
    assert applied.activated and [c.path.name for c in applied.profiles] == ["be-famhp.yaml"]
    assert not refused.activated and [c.path.name for c in refused.profiles] == ["ch-swissmedic.yaml"]
    assert refused.errors[0].startswith(f"{ch_file}:4:1 country")

    # the broken file alone changing again is refused, as any change that would take no effect
    harness.write("ch-swissmedic.yaml", BROKEN_CH.replace("Switzerland", "Helvetia"))
    assert harness.watcher.poll() is False
    assert reloads("refused") == refused_before + 1
    assert harness.watcher.partners.get("ch-swissmedic").profile == ch_before

    harness.write("ch-swissmedic.yaml", CH.replace("Authority ch-swissmedic", "Fixed"))
    assert harness.watcher.poll() is True
    assert harness.watcher.partners.get("ch-swissmedic").profile.authority_name == "Fixed"
    assert harness.watcher.last_error is None and held_back() == 0


def test_a_new_broken_file_is_not_loaded_and_the_other_changes_take_effect(harness: Harness) -> None:
    harness.write("de-bfarm.yaml", profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE") + "retries: five\n")
    harness.write("be-famhp.yaml", BE.replace("https://as4.be-famhp.example/as4", NEW_ENDPOINT))

    with capture_logs() as logs:
        assert harness.watcher.poll() is True

    assert harness.endpoint("be-famhp") == NEW_ENDPOINT
    assert "de-bfarm" not in harness.watcher.partners.registry
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["event"].startswith("partner profile file held back: it is not loaded (a new file)")
    assert error["file"] == str(harness.folder / "de-bfarm.yaml") and error["profile"] is None


def test_a_party_id_claimed_from_a_broken_files_last_version_refuses_the_whole_change(harness: Harness) -> None:
    """The broken file's last accepted version is still in use: a new file claiming its PartyId conflicts with it,
    and the whole change is refused, the valid edit beside it too."""
    before = harness.watcher.partners
    refused_before = reloads("refused")
    harness.write("ch-swissmedic.yaml", BROKEN_CH)
    harness.write("ch-other.yaml", profile_text("ch-other", "ch-swissmedic.crt.pem", party="CH-SWISSMEDIC"))
    harness.write("be-famhp.yaml", BE.replace("https://as4.be-famhp.example/as4", NEW_ENDPOINT))

    with capture_logs() as logs:
        assert harness.watcher.poll() is False

    assert harness.watcher.partners is before and harness.swapped == []
    assert reloads("refused") == refused_before + 1
    [entry] = logs
    assert entry["event"] == "partner profile change refused; the previous profiles stay active"
    assert any("a PartyId must name one partner" in line for line in entry["errors"])
    assert any("(its last accepted version)" in line for line in entry["errors"])
    assert any(line.startswith(f"{harness.folder / 'ch-swissmedic.yaml'}:4:1") for line in entry["errors"])


def test_two_valid_files_claiming_one_party_id_beside_a_broken_file_refuse_the_whole_change(
    harness: Harness,
) -> None:
    before = harness.watcher.partners
    harness.write("ch-swissmedic.yaml", BROKEN_CH)
    harness.write("de-bfarm.yaml", profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE", party="BE-FAMHP"))

    assert harness.watcher.poll() is False
    assert harness.watcher.partners is before
    assert "a PartyId must name one partner" in (harness.watcher.last_error or "")


def test_a_start_leaves_out_a_broken_file_and_records_it_as_refused(harness: Harness) -> None:
    harness.write("ch-swissmedic.yaml", BROKEN_CH)
    with capture_logs() as logs:
        watcher = ProfileWatcher(
            harness.folder,
            certificates_dir=harness.certificates,
            clock=harness.clock,
            on_reload=print,
            interval=0.01,
        )

    assert [p.profile.id for p in watcher.partners] == ["be-famhp"]
    assert held_back() == 1
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["event"].startswith("partner profile file left out at start")
    assert error["file"] == str(harness.folder / "ch-swissmedic.yaml")
    recorder = Recorder()
    watcher.record_with(recorder)
    watcher.record_start()
    [refused] = recorder.reloads
    assert not refused.activated and [c.path.name for c in refused.profiles] == ["ch-swissmedic.yaml"]
    [start] = recorder.starts
    assert start.activated

    harness.write("ch-swissmedic.yaml", CH)  # fixed: loaded at the next poll
    assert watcher.poll() is True
    assert "ch-swissmedic" in watcher.partners.registry and watcher.last_error is None


def test_profiles_check_stays_strict(harness: Harness) -> None:
    harness.write("ch-swissmedic.yaml", BROKEN_CH)
    with pytest.raises(ProfileError, match="country: got 'Switzerland'"):
        load_profile_folder(harness.folder, certificates_dir=harness.certificates)
    found = check_folder(harness.folder, certificates_dir=harness.certificates, now=NOW, warning_days=30)
    assert any("country: got 'Switzerland'" in line for line in found.errors)
