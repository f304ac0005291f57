"""Documents per second through ``validate_document`` (parse, XSD, business rules), on one core.

    .venv/bin/python bench/validate.py [--seconds 5]

Prints a typical ImportAuthorization (the 2-line example) and a 200-line one, each without and with a
document context (the examples in valid/ and context/). The schemas are compiled once, before timing.
Target: 2,000 typical documents per second.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

from gateway.documents import ControlTables, DocumentContext, InMemoryContext, validate_document

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
TARGET = 2000


def typical() -> bytes:
    return (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()


def with_lines(count: int) -> bytes:
    """The typical document with ``count`` lines of 10 g of morphine sulfate, so that it stays within the
    examples' estimate."""
    text = typical().decode()
    lines = re.findall(r"  <SubstanceLine>.*?</SubstanceLine>\n", text, flags=re.S)
    small = lines[0].replace('unitCode="KGM">5<', 'unitCode="KGM">0.01<').replace(">3760.000<", ">7.520<")
    many = "".join(re.sub(r"<LineNumber>\d+<", f"<LineNumber>{n}<", small) for n in range(1, count + 1))
    return text.replace("".join(lines), many).replace("BE-IA-2026-0001", f"BE-IA-2026-{count:04d}").encode()


def examples_context() -> InMemoryContext:
    documents = [
        validate_document(path.read_bytes(), as_of=AS_OF)
        for folder in ("valid", "context")
        for path in sorted((EXAMPLES / folder).glob("*.xml"))
    ]
    return InMemoryContext(documents, ControlTables.load(EXAMPLES / "context"))


def rate(run: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Calls per second in the best of ``rounds`` rounds: other load on the machine only ever slows a round."""
    run()
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / rounds:
            for _ in range(10):
                run()
            count += 10
        best = max(best, count / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement (best of 5 rounds)")
    seconds = parser.parse_args().seconds
    context: DocumentContext = examples_context()
    cases = [
        ("typical ImportAuthorization (2 lines)", typical()),
        ("ImportAuthorization, 200 lines", with_lines(200)),
    ]
    print(f"{'document':40} {'bytes':>8} {'no context':>12} {'with context':>13}  (documents per second)")
    for name, data in cases:
        bare = rate(partial(validate_document, data, as_of=AS_OF), seconds)
        known = rate(partial(validate_document, data, as_of=AS_OF, context=context), seconds)
        print(f"{name:40} {len(data):>8} {bare:>12,.0f} {known:>13,.0f}")
    print(f"target: {TARGET:,} typical documents per second on one core")


if __name__ == "__main__":
    main()
