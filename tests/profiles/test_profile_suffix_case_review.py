"""A profile file whose suffix is written in capitals (``de-bfarm.YAML``, as some editors and file systems save
it) was silently left out: no partner loaded, and ``profiles check`` said the folder was fine without it. The
loader, the watcher, ``profiles check`` and the editor take it like any ``.yaml`` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import FixedClock
from gateway.profiles import DevPki
from gateway.profiles.check import check_folder
from gateway.profiles.editor import ProfileEditor
from gateway.profiles.loader import is_profile_file, load_profile_folder, profile_files
from gateway.profiles.watcher import ProfileWatcher

from .conftest import NOW
from .helpers import profile_text

CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
DE = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    return folder


@pytest.mark.parametrize("name", ["de-bfarm.YAML", "de-bfarm.Yml", "de-bfarm.YML"])
def test_a_profile_file_with_its_suffix_in_capitals_is_loaded_and_listed(
    name: str, folder: Path, pki: DevPki
) -> None:
    (folder / name).write_text(DE)

    loaded = load_profile_folder(folder, certificates_dir=pki.folder)

    assert sorted(p.id for p in loaded.registry) == ["ch-swissmedic", "de-bfarm"]
    assert loaded.files["de-bfarm"] == folder / name
    assert profile_files(folder)["de-bfarm"] == folder / name


def test_profiles_check_reports_a_broken_file_with_its_suffix_in_capitals(folder: Path, pki: DevPki) -> None:
    """It said OK: the file was never read."""
    (folder / "de-bfarm.YAML").write_text(DE.replace("country: DE", "country: Germany"))

    checked = check_folder(folder, certificates_dir=pki.folder, now=NOW, warning_days=30)

    assert not checked.ok
    assert any(f"{folder / 'de-bfarm.YAML'}:4:1 country: got 'Germany'" in error for error in checked.errors), (
        checked.errors
    )


def test_the_watcher_takes_a_file_added_with_its_suffix_in_capitals(folder: Path, pki: DevPki) -> None:
    watcher = ProfileWatcher(
        folder, certificates_dir=pki.folder, clock=FixedClock(NOW), on_reload=lambda _: None, interval=0.01
    )
    (folder / "de-bfarm.YAML").write_text(DE)

    assert watcher.poll() is True
    assert "de-bfarm" in watcher.partners.registry


def test_the_editor_lists_and_reads_a_file_with_its_suffix_in_capitals(
    folder: Path, pki: DevPki, tmp_path: Path
) -> None:
    (folder / "de-bfarm.YAML").write_text(DE)
    editor = ProfileEditor(folder, certificates_dir=pki.folder, data_dir=tmp_path / "data", clock=FixedClock(NOW))

    assert [p.id for p in editor.profiles()] == ["ch-swissmedic", "de-bfarm"]
    assert editor.get("de-bfarm").path == folder / "de-bfarm.YAML"


def test_hidden_files_and_other_suffixes_are_still_no_profiles() -> None:
    assert not is_profile_file(Path(".de-bfarm.YAML"))
    assert not is_profile_file(Path("de-bfarm.YAML.swp"))
    assert not is_profile_file(Path("de-bfarm.yaml~"))
    assert is_profile_file(Path("de-bfarm.yaml"))
