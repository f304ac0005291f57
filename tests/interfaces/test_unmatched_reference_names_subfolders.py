"""A document that refers to a document of an authority none (or more than one) of the several profiles for its
country is of cannot go by itself: the refusal names both ways to name the partner, the outbox's partner
subfolders as well as ``?partner=``. Before, it named only the REST API's, and a national system that only
writes files was left without one."""

from __future__ import annotations

import aiohttp

from gateway.interfaces import folder
from tests.e2e.conftest import Harness, harness, session, submit  # noqa: F401
from tests.interfaces.test_partner_by_reference import _acknowledgement, _trade_so_far
from tests.interfaces.test_partner_choice_review import _outbound_parties, _profile

WAYS = (
    "or name the partner: through the outbox folder, drop the file in the subfolder named after the partner's "
    "profile id: outbox/ch-alt/ or outbox/ch-swissmedic/; through the REST API, "
    "POST /api/v1/documents?partner=PROFILE_ID"
)


async def test_a_reference_matching_no_profile_names_the_partner_subfolders_and_the_rest_parameter(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    await _trade_so_far(harness, session, be, "CH-KANTON")

    status, refused = await submit(session, be, _acknowledgement(harness, "CH-KANTON"))
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ak.xml").write_bytes(_acknowledgement(harness, "CH-KANTON"))
    await folder.scan(be.runner.app)

    assert status == 409, refused
    assert "to the authority whose document it refers to (CH-KANTON)" in refused["detail"], refused
    assert refused["detail"].endswith(WAYS), refused["detail"]
    reason = (be.settings.folders.rejected / "ak.xml.errors.txt").read_text()
    assert reason.startswith("ak.xml was not sent.") and WAYS in reason, reason
    assert await _outbound_parties(harness) == ["CH-SWISSMEDIC"]  # the ImportAuthorization only
