"""Every example behaves as its name says, checked through ``permit-gateway validate`` as a user would run it.

valid/ holds a document of every type; invalid/ one document per rule, named after it. Both folders are
validated on the day in as-of.txt against the same context: valid/ and context/ (documents and tables).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.documents import RULES, DocumentType
from gateway.interfaces import validate_cli
from tests.documents.conftest import AS_OF, CONTEXT_FOLDERS, EXAMPLES

RULE_IN_NAME = re.compile(r"^(?P<rule>[A-Z]+-\d{3}|[A-Z]+)-")
PSEUDO_RULES = {"XML", "ROOT", "XSD"}
SEVERITY = {rule.id: rule.severity for rule in RULES}
# With the shipped reference data no salt has a verified conversion factor, so X-020 (factor not checked)
# accompanies every line that names a salt; it has its own example, and test_rules covers when it fires.
AMBIENT = {"X-020"}


def named_rule(path: Path) -> str:
    match = RULE_IN_NAME.match(path.name)
    assert match, f"{path.name} does not start with a rule id"
    return match["rule"]


def validate(*args: str) -> tuple[int, dict[str, Any]]:
    app = typer.Typer()
    app.callback()(lambda: None)
    validate_cli.register(app)
    context = [arg for folder in CONTEXT_FOLDERS for arg in ("--context", str(folder))]
    result = CliRunner().invoke(app, ["validate", *args, "--as-of", AS_OF.isoformat(), *context, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def valid_run() -> tuple[int, dict[str, Any]]:
    return validate(str(EXAMPLES / "valid"))


@pytest.fixture(scope="module")
def invalid_run() -> tuple[int, dict[str, Any]]:
    return validate(str(EXAMPLES / "invalid"))


def by_file(run: tuple[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["source"].rsplit("/", 1)[-1]: doc for doc in run[1]["documents"]}


def test_the_examples_are_written_for_their_as_of_day() -> None:
    assert AS_OF.isoformat() == "2026-11-26"


def test_every_valid_example_is_valid_with_at_most_the_ambient_warning(
    valid_run: tuple[int, dict[str, Any]],
) -> None:
    code, report = valid_run
    assert code == 0
    for name, doc in by_file(valid_run).items():
        assert doc["valid"] and doc["context_used"], name
        assert set(doc["rules"]) <= AMBIENT, (name, doc["rules"])
    assert report["context"]["ignored"] == []


def test_there_is_a_valid_example_of_every_document_type(valid_run: tuple[int, dict[str, Any]]) -> None:
    assert {doc["document_type"] for doc in valid_run[1]["documents"]} == {t.value for t in DocumentType}


def test_the_demo_pair_passes_the_cross_document_rules(valid_run: tuple[int, dict[str, Any]]) -> None:
    docs = by_file(valid_run)
    for name in ("BE-IA-2026-0001.xml", "CH-EA-2026-0001.xml"):
        assert docs[name]["valid"] and not any(f["rule"] == "CONTEXT" for f in docs[name]["findings"])


def test_every_context_document_is_valid() -> None:
    code, report = validate(str(EXAMPLES / "context"))
    assert code == 0 and report["summary"]["rejected"] == 0


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.xml")), ids=lambda p: p.name)
def test_invalid_example_reports_exactly_its_rule(path: Path, invalid_run: tuple[int, dict[str, Any]]) -> None:
    rule = named_rule(path)
    doc = by_file(invalid_run)[path.name]
    assert rule in doc["rules"]
    assert set(doc["rules"]) - (AMBIENT - {rule}) == {rule}
    assert doc["valid"] is (SEVERITY.get(rule) == "warning"), "warnings are accepted, errors refused"


def test_every_rule_has_an_invalid_example() -> None:
    named = {named_rule(path) for path in (EXAMPLES / "invalid").glob("*.xml")}
    assert {rule.id for rule in RULES} <= named
    assert named - {rule.id for rule in RULES} <= PSEUDO_RULES


def test_invalid_folder_exits_1_and_counts_every_file(invalid_run: tuple[int, dict[str, Any]]) -> None:
    code, report = invalid_run
    files = list((EXAMPLES / "invalid").glob("*.xml"))
    assert code == 1
    assert report["summary"]["valid"] + report["summary"]["rejected"] == len(files)
    assert report["summary"]["valid"] == sum(SEVERITY.get(named_rule(path)) == "warning" for path in files)


def test_each_invalid_example_says_what_it_breaks() -> None:
    for path in (EXAMPLES / "invalid").glob("*.xml"):
        head = path.read_text().splitlines()[1]
        assert head.startswith(("<!-- Breaks ", "<!-- Warns ")), path.name


def test_readme_lists_every_invalid_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in (EXAMPLES / "invalid").glob("*.xml"):
        assert f"`{path.name}`" in readme, path.name
