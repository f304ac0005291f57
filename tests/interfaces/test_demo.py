"""`permit-gateway demo` exits 0 with the timeline when every step verified, non-zero with the reason otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.interfaces.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_demo_exchanges_both_permits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Permit exchange timeline" in result.output
    assert result.output.count("signed receipt verified (attempt 1, HTTP 200") == 2
    assert "OK: ImportAuthorization BE→CH and ExportAuthorization CH→BE delivered" in result.output
    assert len(list((tmp_path / "ch-swissmedic" / "inbox").glob("BE-IA-2026-0001.*.xml"))) == 1
    assert len(list((tmp_path / "be-famhp" / "inbox").glob("CH-EA-2026-0001.*.xml"))) == 1


def test_demo_without_its_folders_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path), "--profiles", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "partner profile folder" in result.output and "not found" in result.output
