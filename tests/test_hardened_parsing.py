"""All XML parsing goes through gateway.xmlsafe: no stray parser is constructed anywhere else, and its errors
say where the input is broken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.xmlsafe import XmlInputError, parse_xml

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def test_only_xmlsafe_builds_parsers() -> None:
    offenders = []
    for path in GATEWAY.rglob("*.py"):
        if path.name == "xmlsafe.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"etree\.(fromstring|XMLParser|XML|parse)\(", line):
                offenders.append(f"{path.relative_to(GATEWAY.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_syntax_error_names_its_position_once() -> None:
    """lxml's message ends with the position too; it is given once, not twice."""
    with pytest.raises(XmlInputError) as caught:
        parse_xml(b"<a><b></a>", what="envelope")
    message = str(caught.value)
    assert message.startswith("envelope is not well-formed XML: ") and message.endswith(" (line 1, column 11)")
    assert message.count("column") == 1 and (caught.value.line, caught.value.column) == (1, 11)


@pytest.mark.parametrize("data", [b"", bytearray(b""), memoryview(b""), bytearray(b"<a>")])
def test_empty_or_broken_input_of_any_bytes_type_is_an_input_error(data: bytes) -> None:
    """A multipart part reads as a bytearray, which lxml misreads when empty: the same clear error, not a 500."""
    with pytest.raises(XmlInputError, match="not well-formed XML"):
        parse_xml(data, what="permit document")
