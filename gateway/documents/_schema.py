"""XSD validation of permit documents, with a location and a fix for every schema error."""

from __future__ import annotations

import calendar
import re

from lxml import etree

from gateway.documents._findings import (
    MAX_FINDINGS,
    Finding,
    element_path,
    more_findings,
    path_prefix,
)
from gateway.documents.types import PERMITS_NAMESPACE, DocumentType
from gateway.xmlsafe import load_schema

_FACET_RANGE = (
    "Bring the value into the range the message gives: a BaseConversionFactor lies in (0, 1], quantities "
    "within 10^12 (a million tonnes in grams), line numbers up to 9999 and versions up to 999."
)
_FACET_LENGTH = "Shorten the value, or fill it in, to the length the message allows."
_DATATYPE = "SCHEMAV_CVC_DATATYPE_VALID_1_2_1"
_FACET_DIGITS = "Round the value to the number of digits the message allows."
_HINTS = {
    "SCHEMAV_ELEMENT_CONTENT": "Add the element the message says is expected here, or remove or move the "
    "unexpected one; {schema} gives the order of the elements.",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_3": "Remove the stray text; this element holds only child elements.",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_1": "Remove the attribute; {schema} does not define it on this element.",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_2": "Remove the attribute; {schema} does not define it on this element.",
    "SCHEMAV_CVC_COMPLEX_TYPE_4": "Add the required attribute the message names (on the root element: "
    'schemaVersion="1.0").',
    _DATATYPE: "Write the value in its type's format: dates as YYYY-MM-DD, numbers "
    "with a dot as decimal separator, booleans as true or false.",
    "SCHEMAV_CVC_PATTERN_VALID": "Write the value in the form the pattern shows: countries as two upper-case "
    "letters (BE), authority ids like BE-FAMHP, substance ids like morphine, "
    "unit codes like KGM, dates as YYYY-MM-DD without time zone.",
    "SCHEMAV_CVC_ENUMERATION_VALID": "Use one of the values the message lists; they are case-sensitive.",
    "SCHEMAV_CVC_IDC": "Give each SubstanceLine its own LineNumber.",
    "SCHEMAV_CVC_MINLENGTH_VALID": _FACET_LENGTH,
    "SCHEMAV_CVC_MAXLENGTH_VALID": _FACET_LENGTH,
    "SCHEMAV_CVC_LENGTH_VALID": _FACET_LENGTH,
    "SCHEMAV_CVC_MININCLUSIVE_VALID": _FACET_RANGE,
    "SCHEMAV_CVC_MINEXCLUSIVE_VALID": _FACET_RANGE,
    "SCHEMAV_CVC_MAXINCLUSIVE_VALID": _FACET_RANGE,
    "SCHEMAV_CVC_MAXEXCLUSIVE_VALID": _FACET_RANGE,
    "SCHEMAV_CVC_FRACTIONDIGITS_VALID": _FACET_DIGITS,
    "SCHEMAV_CVC_TOTALDIGITS_VALID": _FACET_DIGITS,
}
_INTERNAL = "SCHEMAV_INTERNAL"
_HINTS[_INTERNAL] = (
    "The schema validator could not check this value: write it without long runs of spaces or line breaks, "
    "or shorten it; {schema} gives its type. If it still fails, report it to the gateway operator."
)
_DEFAULT_HINT = "Correct the document as the message says; {schema} defines what is allowed here."


def schema_file(document_type: DocumentType) -> str:
    """The XSD of a document type, relative to ``gateway.xmlsafe.schema_root()``."""
    return f"permits/{document_type.value}.xsd"


def schema_findings(root: etree._Element, document_type: DocumentType) -> tuple[Finding, ...]:
    """All XSD errors of the tree, in document order; empty when it is valid."""
    schema = load_schema(schema_file(document_type))
    try:
        if schema.validate(root):
            return ()
    except etree.XMLSchemaValidateError:
        pass  # libxml2 gave up on a value (e.g. a pattern beyond its limits); its log still names the element
    prefix = path_prefix(document_type)
    entries = _kept(list(schema.error_log))
    if not entries:
        return (_unplaced(document_type),)
    # a path costs a walk of the tree: only the findings shown get one
    shown = tuple(_finding(entry, root, prefix, document_type) for entry in entries[:MAX_FINDINGS])
    hidden = len(entries) - len(shown)
    return (*shown, more_findings(hidden, "error", "XSD")) if hidden else shown


def _kept(entries: list[etree._LogEntry]) -> list[etree._LogEntry]:
    """Drop identity-constraint echoes, and all but the first of libxml2's internal-error call chain."""
    faulted = {entry.line for entry in entries if not _echo(entry)}
    kept = [entry for entry in entries if not (_echo(entry) and entry.line in faulted)]
    internal = [entry for entry in kept if entry.type_name == _INTERNAL]
    return [entry for entry in kept if entry.type_name != _INTERNAL or entry is internal[0]]


def _unplaced(document_type: DocumentType) -> Finding:
    return Finding(
        rule="XSD",
        severity="error",
        message="The schema validator could not check the document and did not say where.",
        hint=_HINTS[_INTERNAL].format(schema=f"schemas/xsd/{schema_file(document_type)}"),
    )


def _echo(entry: etree._LogEntry) -> bool:
    """libxml2's identity-constraint check repeats a value error already reported for the same element (the
    key field has no value to compare): it would tell the user to make line numbers unique, which is not
    what is wrong."""
    return entry.type_name == "SCHEMAV_CVC_IDC" and "No precomputed value available" in entry.message


def _finding(entry: etree._LogEntry, root: etree._Element, prefix: str, document_type: DocumentType) -> Finding:
    schema = f"schemas/xsd/{schema_file(document_type)}"
    return Finding(
        rule="XSD",
        severity="error",
        message=_message(entry).replace(f"{{{PERMITS_NAMESPACE}}}", f"{prefix}:"),
        line=entry.line or None,
        column=entry.column or None,
        path=_path(entry.path, root, prefix),
        hint=_hint(entry, schema),
    )


_DATE_VALUE = re.compile(r"'([0-9]{4})-([0-9]{2})-([0-9]{2})' is not a valid value of the atomic type")
# English whatever the locale (calendar.month_name follows LC_TIME), as every other finding is
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _hint(entry: etree._LogEntry, schema: str) -> str:
    if entry.type_name == _DATATYPE and (day := _impossible_day(entry.message)) is not None:
        return day
    return _HINTS.get(entry.type_name, _DEFAULT_HINT).format(schema=schema)


def _impossible_day(message: str) -> str | None:
    """For a value written YYYY-MM-DD that names no day (2026-02-30), what is wrong: the form is right."""
    found = _DATE_VALUE.search(message)
    if found is None:
        return None
    year, month, day = (int(part) for part in found.groups())
    value = "-".join(found.groups())
    if not 1 <= month <= 12:
        return f"{value} is not a day of the calendar: months run from 01 to 12. Correct the date (YYYY-MM-DD)."
    if year == 0:
        return f"{value} is not a day of the calendar: there is no year 0000. Correct the date (YYYY-MM-DD)."
    length = calendar.monthrange(year, month)[1]
    if 1 <= day <= length:
        return None
    return (
        f"{value} is not a day of the calendar ({_MONTHS[month - 1]} {year} has {length} days). Correct the date "
        "(YYYY-MM-DD)."
    )


def _message(entry: etree._LogEntry) -> str:
    if entry.type_name == _INTERNAL:
        return f"The schema validator gave up on this element's value ({entry.message.rstrip('.')})."
    return entry.message


def _path(libxml2_path: str | None, root: etree._Element, prefix: str) -> str | None:
    """libxml2 reports positional paths (``/*/*[6]/*[1]``); turn them into named ones."""
    if not libxml2_path:
        return None
    try:
        found = root.xpath(libxml2_path)
    except etree.XPathError:
        return libxml2_path
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        return element_path(found[0], prefix)
    return libxml2_path
