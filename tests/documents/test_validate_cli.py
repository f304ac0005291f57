"""``permit-gateway validate``: exit status, text and JSON reports, context, reference overrides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from gateway.interfaces import validate_cli
from tests.documents.conftest import AS_OF, EXAMPLES

VALID = EXAMPLES / "valid"
IA = VALID / "BE-IA-2026-0001.xml"
EA = VALID / "CH-EA-2026-0001.xml"
BAD = EXAMPLES / "invalid" / "X-007-base-quantity-mismatch.xml"


def run(*args: str | Path) -> Result:
    app = typer.Typer()
    app.callback()(lambda: None)
    validate_cli.register(app)
    return CliRunner().invoke(app, ["validate", *map(str, args)])


def test_a_valid_document_exits_0_with_its_report() -> None:
    result = run(IA, "--as-of", AS_OF.isoformat())
    assert result.exit_code == 0
    first, *findings = result.stdout.splitlines()
    assert first == f"{IA}: valid: ImportAuthorization BE-IA-2026-0001 (0 error(s), 2 warning(s))"
    assert findings[0].startswith(
        "  line 49 (/ia:ImportAuthorization/ia:SubstanceLine[1]/ia:BaseConversionFactor): [X-020 warning]"
    )
    assert "[CONTEXT info]" in findings[-1]
    assert "Validation summary" not in result.stdout


def test_an_invalid_document_exits_1() -> None:
    result = run(BAD, "--as-of", AS_OF.isoformat())
    assert result.exit_code == 1
    assert "REJECTED: ImportAuthorization BE-IA-2026-0001 (1 error(s)" in result.stdout
    assert "[X-007] line 1: BaseQuantityGrams is 3750.000" in result.stdout


def test_several_files_end_with_a_summary_table() -> None:
    result = run(IA, BAD, "--as-of", AS_OF.isoformat())
    assert result.exit_code == 1
    assert "Validation summary" in result.stdout
    assert result.stdout.rstrip().endswith("1 valid, 1 rejected, 0 unreadable")


def test_a_missing_file_exits_2_after_checking_the_others() -> None:
    result = run(IA, EXAMPLES / "no-such.xml", "--as-of", AS_OF.isoformat(), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["summary"] == {"valid": 1, "rejected": 0, "unreadable": 1}
    assert report["unreadable"] == [{"source": str(EXAMPLES / "no-such.xml"), "problem": "no such file or folder"}]


def test_usage_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    bad_date = run(IA, "--as-of", "26.11.2026")
    assert bad_date.exit_code == 2 and "--as-of '26.11.2026' is not a date" in bad_date.stderr
    empty = run(tmp_path)
    assert empty.exit_code == 2 and "holds no *.xml files" in empty.stderr
    assert run().exit_code == 2
    assert run(IA, "--context", tmp_path / "missing").exit_code == 2


def test_a_bad_reference_table_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "units.csv").write_text("code,name,kind,grams_per_unit\nKGM,kilogram,mass,heavy\n")
    result = run(IA, "--reference", tmp_path)
    assert result.exit_code == 2
    assert f"{tmp_path / 'units.csv'}:2: grams_per_unit is 'heavy'" in result.stderr
    assert run(IA, "--reference", tmp_path / "missing").exit_code == 2


def test_a_bad_control_table_exits_2(tmp_path: Path) -> None:
    (tmp_path / "estimates.csv").write_text(
        "country,substance,year,base_grams,kind\nBE,morphine,2026,x,estimate\n"
    )
    result = run(IA, "--context", tmp_path)
    assert result.exit_code == 2 and "estimates.csv:2:" in result.stderr


def test_json_report_for_machines() -> None:
    result = run(
        VALID, "--as-of", AS_OF.isoformat(), "--context", VALID, "--context", EXAMPLES / "context", "--json"
    )
    report = json.loads(result.stdout)
    assert set(report) == {"as_of", "reference", "context", "documents", "unreadable", "summary"}
    assert report["as_of"] == "2026-11-26"
    assert [t["name"] for t in report["reference"]][:2] == ["substances.csv", "countries.csv"]
    assert report["context"]["documents"] == len(list(VALID.glob("*.xml"))) + len(
        list((EXAMPLES / "context").glob("*.xml"))
    )
    assert [t["name"] for t in report["context"]["tables"]] == [
        "estimates.csv",
        "prohibitions.csv",
        "import-requirements.csv",
    ]
    first = next(doc for doc in report["documents"] if doc["findings"])
    assert set(first) == {
        "source",
        "valid",
        "document_type",
        "number",
        "as_of",
        "context_used",
        "reference_version",
        "errors",
        "warnings",
        "rules",
        "findings",
    }
    assert set(first["findings"][0]) == {
        "rule",
        "severity",
        "message",
        "hint",
        "basis",
        "path",
        "line",
        "column",
        "text",
    }


def test_a_file_is_never_its_own_context() -> None:
    result = run(EA, "--as-of", AS_OF.isoformat(), "--context", VALID, "--context", EXAMPLES / "context")
    assert result.exit_code == 0 and "X-022" not in result.stdout and "EA-009" not in result.stdout


def test_a_rejected_context_document_is_left_out_with_a_note(tmp_path: Path) -> None:
    shutil.copy(IA, tmp_path / "ia.xml")
    shutil.copy(BAD, tmp_path / "bad.xml")
    result = run(EA, "--as-of", AS_OF.isoformat(), "--context", tmp_path)
    assert result.exit_code == 0
    assert f"context: {tmp_path / 'bad.xml'} left out, it is rejected (" in result.stderr
    assert "X-007" in result.stderr


def test_a_context_file_can_be_named_on_its_own() -> None:
    result = run(EA, "--as-of", AS_OF.isoformat(), "--context", IA, "--json")
    (doc,) = json.loads(result.stdout)["documents"]
    assert doc["valid"] and doc["context_used"] and set(doc["rules"]) == {"X-020", "X-028"}  # no estimates given


def test_many_files_show_progress_and_still_report_each(tmp_path: Path) -> None:
    for n in range(validate_cli.PROGRESS_FROM + 2):
        (tmp_path / f"ia-{n:02d}.xml").write_bytes(IA.read_bytes())
    result = run(tmp_path, "--as-of", AS_OF.isoformat())
    assert result.exit_code == 0
    assert result.stdout.count(": valid: ImportAuthorization") == validate_cli.PROGRESS_FROM + 2
    assert f"{validate_cli.PROGRESS_FROM + 2} valid, 0 rejected, 0 unreadable" in result.stdout


def test_the_summary_shows_file_names_and_numbers_as_they_are_never_as_markup(tmp_path: Path) -> None:
    shutil.copy(IA, tmp_path / "BE-IA-2026-0001 [draft].xml")
    text = IA.read_text(encoding="utf-8")
    (tmp_path / "bold.xml").write_text(text.replace(">BE-IA-2026-0001<", ">BE-IA[/b]<", 1), encoding="utf-8")
    result = run(tmp_path, "--as-of", AS_OF.isoformat())
    assert result.exit_code == 1, result.output
    assert "Validation summary" in result.stdout
    assert "BE-IA-2026-0001 [draft].xml" in result.stdout
    assert "ImportAuthorization BE-IA[/b]" in result.stdout


def _cancellation_of_ea_0001(effective: str) -> str:
    authority = (
        "<CountryCode>CH</CountryCode><AuthorityId>CH-SWISSMEDIC</AuthorityId>"
        "<AuthorityName>Swissmedic, Swiss Agency for Therapeutic Products</AuthorityName>"
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Cancellation xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">
  <DocumentNumber>CH-CA-2026-0001</DocumentNumber>
  <IssueDate>{AS_OF.isoformat()}</IssueDate>
  <IssuingAuthority>{authority}</IssuingAuthority>
  <ImportingCountry>BE</ImportingCountry>
  <ExportingCountry>CH</ExportingCountry>
  <CancelledDocument>
    <DocumentType>ExportAuthorization</DocumentType>
    <DocumentNumber>CH-EA-2026-0001</DocumentNumber>
    <IssueDate>2026-11-24</IssueDate>
    <IssuingAuthority>{authority}</IssuingAuthority>
  </CancelledDocument>
  <Reason>applicantRequest</Reason>
  <EffectiveDate>{effective}</EffectiveDate>
</Cancellation>
"""


def test_an_export_cancelled_from_a_later_day_still_draws_until_then(tmp_path: Path) -> None:
    """The import's line holds two exports' worth; CH-EA-2026-0001 and -0002 take it all, and the first is
    cancelled from 2026-12-10. A third export is refused (EA-009) before that day and fits from it: the validator
    counted every cancellation at once."""
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(IA, context)
    shutil.copy(EA, context)
    text = EA.read_text(encoding="utf-8")
    (context / "CH-EA-2026-0002.xml").write_text(text.replace("CH-EA-2026-0001", "CH-EA-2026-0002"))
    (context / "CH-CA-2026-0001.xml").write_text(_cancellation_of_ea_0001("2026-12-10"))
    third = tmp_path / "CH-EA-2026-0003.xml"
    third.write_text(text.replace("CH-EA-2026-0001", "CH-EA-2026-0003"))

    before = run(third, "--as-of", AS_OF.isoformat(), "--context", context, "--json")
    after = run(third, "--as-of", "2026-12-10", "--context", context, "--json")

    [early] = json.loads(before.stdout)["documents"]
    [late] = json.loads(after.stdout)["documents"]
    assert "EA-009" in early["rules"], early
    assert late["valid"] and "EA-009" not in late["rules"], late
