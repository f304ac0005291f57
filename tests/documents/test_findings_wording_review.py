"""The error review's findings on what validation tells people: the note on skipped cross-document rules listed
the rules not run as if they were the errors, and a document the XML parser refused without a place (an empty
one) was given line 0, column 0 and told to fix the syntax "at this position", a too large one to drop a DOCTYPE."""

from __future__ import annotations

import json
from datetime import date

import pytest

from gateway.documents import InMemoryContext, PermitDocumentRejected, validate_document
from gateway.xmlsafe import DEFAULT_MAX_BYTES


def _findings(data: bytes, as_of: date | None = None, context: InMemoryContext | None = None) -> list[dict]:  # type: ignore[type-arg]
    with pytest.raises(PermitDocumentRejected) as info:
        validate_document(data, as_of=as_of, context=context)
    return [f.to_json() for f in info.value.findings]


def test_the_note_on_skipped_cross_document_rules_names_the_errors_apart_from_the_rules_not_run(
    ea_bytes: bytes, as_of: date, context: InMemoryContext
) -> None:
    data = ea_bytes.replace(b"<ExportingCountry>CH<", b"<ExportingCountry>DE<")
    findings = _findings(data, as_of, context)

    errors = sorted({f["rule"] for f in findings if f["severity"] == "error"})
    (note,) = [f for f in findings if f["rule"] == "CONTEXT"]
    message = note["message"]
    assert message.startswith(
        f"the cross-document rules were not run, because the document has errors ({', '.join(errors)}); "
        "rules not run: "
    ), message
    not_run = message.split("rules not run: ")[1].split(", ")
    assert "X-022" in not_run and not set(errors) & set(not_run), message
    assert "Correct the errors first" in note["hint"]


@pytest.mark.parametrize("data", [b"", b" \n\t\n"], ids=["empty", "white-space"])
def test_an_empty_document_has_no_line_or_column_and_is_told_to_send_the_permit(data: bytes) -> None:
    (finding,) = _findings(data)

    assert (finding["line"], finding["column"]) == (None, None)
    assert finding["message"].startswith("permit document is empty")
    assert "Send the whole permit XML" in finding["hint"]
    assert "at this position" not in finding["hint"] and "DOCTYPE" not in finding["hint"]
    assert finding["text"].startswith("[XML] permit document is empty")
    assert '"line": null, "column": null' in json.dumps(finding)  # as the REST API and the openapi spec have it


def test_a_too_large_document_is_told_the_limit_not_about_a_doctype() -> None:
    (finding,) = _findings(b"<a>" + b" " * DEFAULT_MAX_BYTES + b"</a>")

    assert (finding["line"], finding["column"]) == (None, None)
    assert "over the limit of 16777216 bytes" in finding["message"]
    assert finding["hint"].startswith("Send a permit document of at most 16 MiB (16777216 bytes)")
    assert "DOCTYPE" not in finding["hint"]


def test_a_doctype_is_told_to_go_and_a_syntax_error_keeps_its_place() -> None:
    (doctype,) = _findings(b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><ImportAuthorization/>')
    (syntax,) = _findings(b"<ImportAuthorization>\n  <a>\n</ImportAuthorization>")

    assert doctype["hint"] == "Send the document without a DOCTYPE: DTDs and entity declarations are refused."
    assert "size" not in doctype["hint"]
    assert syntax["line"] == 3 and syntax["column"]
    assert syntax["hint"] == "Fix the XML syntax at this position; the document must be well-formed XML."
