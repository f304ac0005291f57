"""All XML parsing goes through gateway.xmlsafe: no stray parser is constructed anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

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
