"""Which partner a submission goes to, as the error review found it: with two profiles for one country a document
that names no partner (the outbox folder's always) was told to "add a profile", and ``?partner=`` could send a
permit's trade data to an authority of a country that is no party to its trade."""

from __future__ import annotations

import aiohttp

from gateway.interfaces import folder
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from tests.e2e.conftest import RETRIES, Harness, example, harness, session, submit  # noqa: F401

IA = "BE-IA-2026-0001.xml"


def _profile(harness: Harness, stem: str, party_id: str, country: str, signed_by: str, extra: str = "") -> None:  # noqa: F811
    """One more partner profile beside the harness's Belgium and Switzerland, signing with ``signed_by``'s dev
    certificate (one certificate may be pinned for one partner only) at an endpoint nothing listens on."""
    (harness.tmp / "profiles" / f"{stem}.yaml").write_text(
        f"id: {stem}\nauthority_name: {stem}\ncountry: {country}\nparty_id: {party_id}\n"
        f"endpoint: http://127.0.0.1:9/as4\nsecurity:\n  signing_certificate: {signed_by.lower()}.crt.pem\n"
        f"{RETRIES}{extra}"
    )


def _exported_from_germany(harness: Harness) -> bytes:  # noqa: F811
    ia = example(IA, today=harness.clock.now())
    return ia.replace(b"<ExportingCountry>CH<", b"<ExportingCountry>DE<").replace(
        b"<CountryCode>CH<", b"<CountryCode>DE<"
    )


async def _outbound_parties(harness: Harness) -> list[str]:  # noqa: F811
    store = harness.running["BE-FAMHP"].runner.app[NODE].store
    return [r.to_party for r in await store.recent(limit=10, direction=Direction.OUTBOUND, state=None)]


async def test_two_profiles_for_the_country_name_the_rest_parameter_and_what_the_outbox_can_do(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())

    status, refused = await submit(session, be, ia)

    assert status == 409, refused
    detail = refused["detail"]
    assert "goes to CH (its exporting country), and 2 partner profiles are for CH: ch-alt, ch-swissmedic" in detail
    assert "name the partner: POST /api/v1/documents?partner=ch-alt or ?partner=ch-swissmedic" in detail
    assert "drop the file in the subfolder named after the partner's profile id: outbox/ch-alt/ or outbox/ch-swissmedic/" in detail
    assert "Add a profile" not in detail and "add the profile" not in detail
    assert await _outbound_parties(harness) == []
    status, sent = await submit(session, be, ia, "?partner=ch-swissmedic")
    assert (status, sent["to_party"]) == (202, "CH-SWISSMEDIC"), sent


async def test_the_outbox_rejects_a_file_it_cannot_route_saying_how_to_make_it_go(
    harness: Harness,  # noqa: F811
) -> None:
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))

    await folder.scan(be.runner.app)

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert "2 partner profiles are for CH: ch-alt, ch-swissmedic" in reason, reason
    assert "outbox/ch-alt/ or outbox/ch-swissmedic/" in reason, reason
    assert (be.settings.folders.rejected / "ia.xml").is_file()


async def test_with_the_other_profiles_for_the_country_suspended_a_document_goes_to_the_one_left(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """What the outbox folder, which cannot name a partner, is told to do: suspending was no help before, as a
    suspended profile still counted as a candidate."""
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM", "enabled: false\n")
    be = await harness.start("BE-FAMHP")

    status, sent = await submit(session, be, example(IA, today=harness.clock.now()))

    assert (status, sent["to_party"]) == (202, "CH-SWISSMEDIC"), sent


async def test_no_profile_for_the_country_says_to_add_one(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be = await harness.start("BE-FAMHP")

    status, refused = await submit(session, be, _exported_from_germany(harness))

    assert status == 409, refused
    assert "goes to DE (its exporting country), and there is no partner profile for DE" in refused["detail"]
    assert "add the profile of DE's competent authority" in refused["detail"]


async def test_a_named_partner_of_another_country_than_the_documents_counterpart_is_refused(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """An ImportAuthorization exported from Germany, named for Switzerland's authority, went to Switzerland."""
    _profile(harness, "de-bfarm", "DE-BFARM", "DE", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    ia = _exported_from_germany(harness)

    status, refused = await submit(session, be, ia, "?partner=ch-swissmedic")

    assert status == 409, refused
    detail = refused["detail"]
    assert "partner 'ch-swissmedic' is an authority of CH" in detail, detail
    assert "goes to DE (its exporting country)" in detail, detail
    assert "Name the profile of DE's competent authority (de-bfarm) or leave the partner out" in detail, detail
    assert await _outbound_parties(harness) == []
    status, sent = await submit(session, be, ia, "?partner=de-bfarm")
    assert (status, sent["to_party"]) == (202, "DE-BFARM"), sent
