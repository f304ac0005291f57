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
