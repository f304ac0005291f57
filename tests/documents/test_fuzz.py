"""Invariant: any input either validates or raises PermitDocumentRejected, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.documents import PermitDocument, PermitDocumentRejected, validate_document
from gateway.xmlsafe import parse_xml
from tests.documents.conftest import EXAMPLES

VALID = [path.read_bytes() for path in sorted((EXAMPLES / "valid").glob("*.xml"))]
LEAF_TEXT = st.text(alphabet="0123456789-+.eEZ: ABCHKMGRLx", max_size=14)


def outcome(data: bytes) -> PermitDocument | PermitDocumentRejected:
    try:
        return validate_document(data)
    except PermitDocumentRejected as error:
        return error


def with_leaf_text(source: bytes, index: int, text: str) -> bytes:
    root = parse_xml(source)
    leaves = [el for el in root.iter(etree.Element) if len(el) == 0]
    leaves[index % len(leaves)].text = text
    return etree.tostring(root)


@settings(max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(VALID), index=st.integers(min_value=0), text=LEAF_TEXT)
def test_any_leaf_value_validates_or_is_rejected(source: bytes, index: int, text: str) -> None:
    assert isinstance(outcome(with_leaf_text(source, index, text)), PermitDocument | PermitDocumentRejected)


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
    assert isinstance(outcome(data), PermitDocument | PermitDocumentRejected)
