"""With several partner profiles for one country, a document that refers to a document of one of those
authorities (an acknowledgement of its ExportAuthorization, an endorsement, an ExportAuthorization answering its
ImportAuthorization) goes to that authority, from the REST API and from the outbox folder alike, which can name
no partner."""

from __future__ import annotations

import json
import re

import aiohttp

from gateway.documents import validate_document
from gateway.interfaces import folder
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from tests.e2e.conftest import Harness, example, harness, session, submit  # noqa: F401
from tests.interfaces.test_partner_choice_review import _outbound_parties, _profile

AK = "BE-AK-2026-0001.xml"  # acknowledges CH-EA-2026-0001, issued by CH-SWISSMEDIC
IA = "BE-IA-2026-0001.xml"  # refers to no Swiss document


EA = "CH-EA-2026-0001.xml"  # answers BE-IA-2026-0001


async def _trade_so_far(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    be: Running,
    authority: str = "CH-SWISSMEDIC",
) -> None:
    """Belgium's ImportAuthorization, sent to the Swiss authority named, and the ExportAuthorization that
    authority issued against it, received: what an acknowledgement of that export refers to."""
    today = harness.clock.now()
    status, sent = await submit(session, be, example(IA, today=today), "?partner=ch-swissmedic")
    assert status == 202, sent
    export = example(EA, today=today).replace(b"CH-SWISSMEDIC<", authority.encode() + b"<")
    document = validate_document(export, as_of=today.date())
    await be.runner.app[NODE].permits.record(document, direction=Direction.INBOUND, message_id="ea@ch.test")


def _acknowledgement(harness: Harness, authority: str = "CH-SWISSMEDIC") -> bytes:  # noqa: F811
    return example(AK, today=harness.clock.now()).replace(b"CH-SWISSMEDIC<", authority.encode() + b"<")


async def test_a_document_answering_one_of_several_authorities_goes_to_that_one(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be)

    status, sent = await submit(session, be, _acknowledgement(harness))

    assert (status, sent["to_party"]) == (202, "CH-SWISSMEDIC"), sent
    another = example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001<", b"BE-IA-2026-0002<")
    status, refused = await submit(session, be, another)
    assert status == 409, refused
    assert "2 partner profiles are for CH: ch-alt, ch-swissmedic" in refused["detail"]
    assert "it does for a document that refers to one of their documents" in refused["detail"]


async def test_the_outbox_sends_a_document_answering_one_of_several_authorities_to_that_one(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be)
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ak.xml").write_bytes(_acknowledgement(harness))

    await folder.scan(be.runner.app)

    status = json.loads((outbox / "sent" / "ak.xml.json").read_text())
    assert status["partner"] == "ch-swissmedic", status
    assert await _outbound_parties(harness) == ["CH-SWISSMEDIC", "CH-SWISSMEDIC"]
    assert not (be.settings.folders.rejected / "ak.xml.errors.txt").exists()


async def test_a_document_answering_an_authority_whose_profile_is_suspended_is_held_not_redirected(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """Before, it went to the one enabled profile of the country: another authority than the one it answers."""
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM", "enabled: false\n")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be, "CH-ALT")

    status, refused = await submit(session, be, _acknowledgement(harness, "CH-ALT"))

    assert status == 409, refused
    assert "ch-alt" in refused["detail"] and "suspended" in refused["detail"], refused
    assert await _outbound_parties(harness) == ["CH-SWISSMEDIC"]  # the ImportAuthorization only


def _cancellation_of_the_import(harness: Harness) -> bytes:  # noqa: F811
    """Belgium's cancellation of its ImportAuthorization BE-IA-2026-0001 (a document of its own)."""
    ia = example(IA, today=harness.clock.now()).decode()
    issued = re.search(r"<IssueDate>([0-9-]+)</IssueDate>", ia)
    assert issued is not None
    today = harness.clock.now().date().isoformat()
    authority = (
        "<CountryCode>BE</CountryCode><AuthorityId>BE-FAMHP</AuthorityId>"
        "<AuthorityName>Federal Agency for Medicines and Health Products</AuthorityName>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Cancellation xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">'
        f"<DocumentNumber>BE-CA-2026-0001</DocumentNumber><IssueDate>{today}</IssueDate>"
        f"<IssuingAuthority>{authority}</IssuingAuthority>"
        "<ImportingCountry>BE</ImportingCountry><ExportingCountry>CH</ExportingCountry>"
        "<CancelledDocument><DocumentType>ImportAuthorization</DocumentType>"
        f"<DocumentNumber>BE-IA-2026-0001</DocumentNumber><IssueDate>{issued.group(1)}</IssueDate>"
        f"<IssuingAuthority>{authority}</IssuingAuthority></CancelledDocument>"
        f"<Reason>applicantRequest</Reason><EffectiveDate>{today}</EffectiveDate>"
        "</Cancellation>"
    ).encode()


async def test_a_cancellation_of_our_document_goes_where_that_document_went(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """It refers to no Swiss document; of the two Swiss profiles it goes to the one our ImportAuthorization went
    to. Before, it was refused (REST) or rejected (the outbox) as if it named no partner."""
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    status, sent = await submit(session, be, example(IA, today=harness.clock.now()), "?partner=ch-alt")
    assert (status, sent["to_party"]) == (202, "CH-ALT"), sent

    status, cancelled = await submit(session, be, _cancellation_of_the_import(harness))

    assert (status, cancelled["to_party"]) == (202, "CH-ALT"), cancelled


async def test_a_reference_to_an_authority_without_a_profile_names_it_and_the_profiles(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be, "CH-KANTON")

    status, refused = await submit(session, be, _acknowledgement(harness, "CH-KANTON"))

    assert status == 409, refused
    detail = refused["detail"]
    assert "to the authority whose document it refers to (CH-KANTON)" in detail, detail
    assert "ch-alt (CH-ALT), ch-swissmedic (CH-SWISSMEDIC)" in detail, detail
    assert "Correct the AuthorityId in the document's reference" in detail, detail
    assert "?partner=PROFILE_ID" in detail, detail
    assert await _outbound_parties(harness) == ["CH-SWISSMEDIC"]  # the ImportAuthorization only
