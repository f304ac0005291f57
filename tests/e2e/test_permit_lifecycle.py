"""Two gateways keep the permit registry in step: Belgium sends the ImportAuthorization, Switzerland the
ExportAuthorization that draws on it; what is left shows on both sides, and what no longer fits is refused."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import aiohttp

from gateway.interfaces.demo import Running, exchange
from gateway.settings import DocumentSettings
from tests.e2e.conftest import EXAMPLES, Harness, example, import_exchanged, submit

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"
IA_PATH = "ImportAuthorization/BE/BE-IA-2026-0001"


async def get_json(session: aiohttp.ClientSession, gateway: Running, path: str) -> tuple[int, Any]:
    async with session.get(f"{gateway.url}/api/v1/{path}") as response:
        return response.status, await response.json()


async def start_with_tables(harness: Harness, party_id: str) -> Running:
    """A gateway whose ``[documents] tables`` is the examples' control tables folder."""
    return await harness.start(party_id, documents=DocumentSettings(tables=EXAMPLES / "context"))


def second_export(first: bytes) -> bytes:
    """CH-EA-2026-0002: 3 KGM of the morphine salt (2256 g base) on the same import line."""
    return (
        first.replace(b"CH-EA-2026-0001", b"CH-EA-2026-0002")
        .replace(b'"KGM">2.5<', b'"KGM">3<')
        .replace(b">1880.000<", b">2256.000<")
    )


async def test_an_export_draws_on_the_import_on_both_gateways_and_no_more_than_remains(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, ch = await import_exchanged(harness, session)
    today = harness.clock.now()
    await exchange(session, ch, be, example(EA, today=today), EA)

    status, refused = await submit(session, ch, second_export(example(EA, today=today)))
    assert status == 422
    assert [f["rule"] for f in refused["findings"] if f["severity"] == "error"] == ["EA-009"]
    assert "1880" in next(f["message"] for f in refused["findings"] if f["rule"] == "EA-009")

    for gateway, direction in ((be, "outbound"), (ch, "inbound")):
        status, permit = await get_json(session, gateway, f"permits/{IA_PATH}")
        assert status == 200, gateway.name
        assert (permit["status"], permit["direction"], permit["version"]) == ("PARTIALLY_USED", direction, 1)
        assert [line["remaining_base_grams"] for line in permit["lines"]] == ["1880", "1474"]
        against = [(a["number"], a["status"], a["lines"][0]["drawn_base_grams"]) for a in permit["against"]]
        assert against == [("CH-EA-2026-0001", "ISSUED", "1880")], gateway.name
        status, _ = await get_json(session, gateway, "permits/EA/CH/CH-EA-2026-0002")
        assert status == 404, "the refused export was not recorded"

    status, listing = await get_json(session, be, "permits?type=EA&country=CH&status=ISSUED")
    assert status == 200 and [p["number"] for p in listing["permits"]] == ["CH-EA-2026-0001"]
    assert listing["permits"][0]["refers_to"]["number"] == "BE-IA-2026-0001"


async def test_a_number_taken_by_other_content_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())
    first_status, first = await submit(session, be, ia)
    again_status, _ = await submit(session, be, ia)
    other_status, other = await submit(session, be, ia.replace(b"Mechelen", b"Antwerpen"))
    assert (first_status, again_status, other_status) == (202, 200, 422)
    assert [f["rule"] for f in other["findings"] if f["severity"] == "error"] == ["X-022"]
    status, listing = await get_json(session, be, "permits?type=IA")
    assert status == 200 and len(listing["permits"]) == 1
    assert listing["permits"][0]["message_id"] == first["message_id"]


async def test_an_export_not_endorsed_in_time_is_listed_overdue(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    today = harness.clock.now()
    await exchange(session, be, ch, example(IA, today=today), IA)
    await exchange(session, ch, be, example(EA, today=today), EA)
    _, permit = await get_json(session, ch, "permits/EA/CH/CH-EA-2026-0001")
    harness.clock.advance(date.fromisoformat(permit["valid_until"]) - today.date() + timedelta(days=11))
    for gateway in (be, ch):
        status, overdue = await get_json(session, gateway, "permits/overdue-endorsements")
        assert status == 200 and overdue["days"] == 10
        assert [(p["number"], p["days_since_validity_ended"]) for p in overdue["permits"]] == [
            ("CH-EA-2026-0001", 11)
        ]
        _, later = await get_json(session, gateway, "permits/overdue-endorsements?days=11")
        assert later["permits"] == []


async def test_bad_permit_queries_are_answered_400(harness: Harness, session: aiohttp.ClientSession) -> None:
    be = await harness.start("BE-FAMHP")
    for path in ("permits?type=Visa", "permits?status=LOST", "permits/overdue-endorsements?days=-1"):
        status, body = await get_json(session, be, path)
        assert status == 400 and body["error"] == "bad request", path
    status, body = await get_json(session, be, f"permits/{IA_PATH}")
    assert status == 404 and "BE-IA-2026-0001" in body["error"]


async def test_the_control_tables_in_the_settings_are_consulted(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await start_with_tables(harness, "CH-SWISSMEDIC")
    prohibited = example("X-029-import-prohibited.xml", today=harness.clock.now(), folder="invalid")
    status, refused = await submit(session, ch, prohibited)
    assert status == 422
    assert [f["rule"] for f in refused["findings"] if f["severity"] == "error"] == ["X-029"]
