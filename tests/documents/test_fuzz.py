"""Invariant: any input either validates or raises PermitDocumentRejected, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.documents import (
    ControlTables,
    InMemoryContext,
    PermitDocument,
    PermitDocumentRejected,
    validate_document,
)
from gateway.xmlsafe import parse_xml
from tests.documents.conftest import AS_OF, EXAMPLES

VALID = [path.read_bytes() for path in sorted((EXAMPLES / "valid").glob("*.xml"))]
# Values at and past the schemas' bounds (a 30-digit quantity once crashed a rule's decimal rounding) are
# drawn as well as short random text.
LEAF_TEXT = st.text(alphabet="0123456789-+.eEZ: ABCHKMGRLx", max_size=14) | st.sampled_from(
    ["6" + "0" * 29, "-" + "9" * 30, "1000000000000", "1000000000000.000001", "4294967297", "9999", "999", "1000"]
)
# Mutants are also checked against the examples' context, as of their day, so the cross-document rules see
# every odd value too.
CONTEXT = InMemoryContext(
    [validate_document(data, as_of=AS_OF) for data in VALID], ControlTables.load(EXAMPLES / "context")
)


def outcomes(data: bytes) -> list[PermitDocument | PermitDocumentRejected]:
    found: list[PermitDocument | PermitDocumentRejected] = []
    for as_of, context in ((None, None), (AS_OF, CONTEXT)):
        try:
            found.append(validate_document(data, as_of=as_of, context=context))
        except PermitDocumentRejected as error:
            found.append(error)
    return found


def with_leaf_text(source: bytes, index: int, text: str) -> bytes:
    root = parse_xml(source)
    leaves = [el for el in root.iter(etree.Element) if len(el) == 0]
    leaves[index % len(leaves)].text = text
    return etree.tostring(root)


@settings(max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(VALID), index=st.integers(min_value=0), text=LEAF_TEXT)
def test_any_leaf_value_validates_or_is_rejected(source: bytes, index: int, text: str) -> None:
    for outcome in outcomes(with_leaf_text(source, index, text)):
        assert isinstance(outcome, PermitDocument | PermitDocumentRejected)


@settings(max_examples=300, derandomize=True)
@given(
    source=st.sampled_from(VALID),
    start=st.integers(min_value=0),
    length=st.integers(0, 40),
    insert=st.binary(max_size=8),
)
def test_any_byte_splice_validates_or_is_rejected(source: bytes, start: int, length: int, insert: bytes) -> None:
    start %= len(source)
    data = source[:start] + insert + source[start + length :]
    for outcome in outcomes(data):
        assert isinstance(outcome, PermitDocument | PermitDocumentRejected)
