"""With several partner profiles for one country, a document that refers to a document of one of those
authorities (an acknowledgement of its ExportAuthorization, an endorsement, an ExportAuthorization answering its
ImportAuthorization) goes to that authority, from the REST API and from the outbox folder alike, which can name
no partner."""

from __future__ import annotations

import json

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


async def test_with_the_answered_authoritys_profile_suspended_the_one_enabled_profile_takes_it(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """What the refusal of a document naming no partner tells an outbox user to do (suspend the others) still
    holds when the document answers an authority whose profile was suspended (replaced by another id)."""
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM", "enabled: false\n")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be, "CH-ALT")

    status, sent = await submit(session, be, _acknowledgement(harness, "CH-ALT"))

    assert (status, sent["to_party"]) == (202, "CH-SWISSMEDIC"), sent


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
