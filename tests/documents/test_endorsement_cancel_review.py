"""A cancelled ImportEndorsement in ``InMemoryContext``: it no longer counts for EN-005, no longer closes its
ExportAuthorization, and no longer says what the export drew from its ImportAuthorization."""

from __future__ import annotations

from decimal import Decimal

from gateway.documents import (
    DocumentKey,
    DocumentStatus,
    DocumentType,
    InMemoryContext,
    PermitDocument,
    validate_document,
    validation_report,
)
from tests.documents.conftest import AS_OF, EXAMPLES, Without

BE_IA = DocumentKey(DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001")
CH_EA = DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", "CH-EA-2026-0001")
FIRST = DocumentKey(DocumentType.IMPORT_ENDORSEMENT, "BE", "BE-EN-2026-0001")

CANCELLED_ENDORSEMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<Cancellation xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">
  <DocumentNumber>BE-CA-2026-0907</DocumentNumber><IssueDate>2026-11-26</IssueDate>
  <IssuingAuthority><CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>
    <AuthorityName>FAMHP</AuthorityName></IssuingAuthority>
  <ImportingCountry>BE</ImportingCountry><ExportingCountry>CH</ExportingCountry>
  <CancelledDocument><DocumentType>ImportEndorsement</DocumentType><DocumentNumber>BE-EN-2026-0001</DocumentNumber>
    <IssueDate>2026-11-26</IssueDate><IssuingAuthority><CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>
    <AuthorityName>FAMHP</AuthorityName></IssuingAuthority></CancelledDocument>
  <Reason>issuedInError</Reason><EffectiveDate>2026-11-26</EffectiveDate>
  <Remarks>Wrong quantity endorsed.</Remarks>
</Cancellation>
"""


def endorsement(number: str, *, short: bool = False) -> bytes:
    """BE-EN-2026-0001 renumbered; ``short``: 2 kg (1504 g base) of CH-EA-2026-0001's 2.5 kg received."""
    data = (EXAMPLES / "valid" / "BE-EN-2026-0001.xml").read_bytes().replace(b"BE-EN-2026-0001", number.encode())
    if short:
        data = data.replace(b'unitCode="KGM">2.5<', b'unitCode="KGM">2<').replace(b">1880.000<", b">1504.000<")
    return data


def cancellation() -> PermitDocument:
    return validate_document(CANCELLED_ENDORSEMENT, as_of=AS_OF)


def errors(data: bytes, context: InMemoryContext) -> list[str]:
    report = validation_report(data, as_of=AS_OF, context=context)
    return [f"{f.rule}: {f.message}" for f in report.findings if f.severity == "error"]


def test_a_corrected_endorsement_passes_once_the_earlier_one_is_cancelled(without: Without) -> None:
    endorsed = without()
    assert [e.split(":")[0] for e in errors(endorsement("BE-EN-2026-0002"), endorsed)] == ["EN-005"]
    corrected = without(extra=(cancellation(),))
    assert corrected.endorsements_of(CH_EA) == ()
    assert errors(endorsement("BE-EN-2026-0002"), corrected) == []
    second = validate_document(endorsement("BE-EN-2026-0002"), as_of=AS_OF, context=corrected)
    again = without(extra=(cancellation(), second))
    assert again.endorsements_of(CH_EA) == (second.key,)
    assert errors(endorsement("BE-EN-2026-0003"), again) == [
        "EN-005: ExportAuthorization CH-EA-2026-0001 is already endorsed (BE-EN-2026-0002)"
    ]


def test_a_cancelled_endorsement_no_longer_closes_the_export(without: Without) -> None:
    assert without().status(CH_EA, as_of=AS_OF) is DocumentStatus.CLOSED
    assert without(extra=(cancellation(),)).status(CH_EA, as_of=AS_OF) is DocumentStatus.OPEN


def test_a_cancelled_short_endorsement_no_longer_says_what_the_export_drew(without: Without) -> None:
    never_endorsed = without("BE-EN-2026-0001").remaining_base_grams(BE_IA, 1)
    assert never_endorsed is not None
    short = validate_document(endorsement("BE-EN-2026-0001", short=True), as_of=AS_OF)
    endorsed_short = without("BE-EN-2026-0001", extra=(short,))
    assert endorsed_short.remaining_base_grams(BE_IA, 1) == never_endorsed + Decimal(376)
    cancelled = without("BE-EN-2026-0001", extra=(short, cancellation()))
    assert cancelled.remaining_base_grams(BE_IA, 1) == never_endorsed
    assert FIRST not in cancelled.endorsements_of(CH_EA)
