"""A permit document is sent once. A national system that submits the same document again (it never heard our
answer, its job ran twice, an operator dropped the file a second time) gets the message that carries it, never
a second message under a new MessageId that the partner would have to take for a new permit."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp

from gateway.interfaces import folder
from gateway.interfaces.demo import (
    Running,
    exchange,
    message,
    wait_for,
)
from gateway.interfaces.keys import NODE
from gateway.settings import StoreSettings
from tests.e2e.conftest import Harness, example, import_exchanged, remaining_base_grams, submit

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"


async def outbound(session: aiohttp.ClientSession, gateway: Running) -> list[dict[str, Any]]:
    async with session.get(f"{gateway.url}/api/v1/messages?direction=outbound") as response:
        found: list[dict[str, Any]] = (await response.json())["messages"]
        return found


async def delivered_once(session: aiohttp.ClientSession, ch: Running, message_id: str) -> None:
    await wait_for(session, ch, message_id, "DELIVERED")
    assert len(list(ch.inbox.glob("*.xml"))) == 1


async def test_the_same_document_submitted_again_is_answered_with_its_message(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    first_status, first = await submit(session, be, ia)
    await wait_for(session, be, first["message_id"], "ACKNOWLEDGED")

    again_status, again = await submit(session, be, ia)

    assert (first_status, first["submitted_before"]) == (202, False)
    assert (again_status, again["submitted_before"]) == (200, True)
    assert (again["message_id"], again["state"]) == (first["message_id"], "ACKNOWLEDGED")
    assert [m["message_id"] for m in await outbound(session, be)] == [first["message_id"]]
    await delivered_once(session, ch, first["message_id"])
    # the checks' verdict is kept in both timelines, for audits: the same findings the submitter was told
    told = sorted(f["rule"] for f in first["warnings"] + first["notes"])
    for gateway, kind in ((be, "submitted"), (ch, "accept")):
        record = await message(session, gateway, first["message_id"])
        assert record is not None
        kept = next(e for e in record["events"] if e["kind"] == kind)["detail"]["findings"]
        assert sorted(f["rule"] for f in kept) == told and "X-020" in told, (gateway.name, kept)


async def test_an_export_submitted_again_does_not_draw_on_its_import_twice(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, ch = await import_exchanged(harness, session)
    ea = example(EA, today=harness.clock.now())
    sent = (await exchange(session, ch, be, ea, EA)).message_id

    status, again = await submit(session, ch, ea)

    assert (status, again["message_id"]) == (200, sent)
    assert await remaining_base_grams(session, ch) == ["1880", "1474"]


async def test_a_failed_message_goes_again_under_its_message_id_when_its_document_is_submitted_again(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())
    _, first = await submit(session, be, ia)
    message_id = first["message_id"]
    await wait_for(session, be, message_id, "RETRY_WAIT")
    harness.clock.advance(timedelta(hours=72))
    await be.runner.app[NODE].dispatcher.drain()
    assert (await message(session, be, message_id) or {})["state"] == "FAILED"
    ch = await harness.start("CH-SWISSMEDIC")

    status, again = await submit(session, be, ia)

    assert (status, again["message_id"], again["state"]) == (200, message_id, "RETRY_WAIT")
    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    resubmitted = next(e for e in done["events"] if e["kind"] == "resubmitted")
    assert resubmitted["detail"]["reason"] == "the national system submitted the same document again"
    failed_because = resubmitted["detail"]["failed_because"]
    assert failed_because.startswith(
        "EBMS:0301 MissingReceipt: no receipt, and the next retry would fall after its time to live"
    )
    assert "EBMS:0005 ConnectionFailure" in failed_because and "cannot connect" in failed_because
    await delivered_once(session, ch, message_id)


async def test_a_document_submitted_again_with_other_supporting_documents_or_to_another_partner_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())
    _, first = await submit(session, be, ia)

    form = aiohttp.FormData()
    form.add_field("document", ia, filename="permit.xml", content_type="application/xml")
    form.add_field("attachment", b"%PDF-1.7\n", filename="scan.pdf", content_type="application/pdf")
    status, refused = await submit(session, be, form)
    assert status == 409
    assert first["message_id"] in refused["detail"] and "with 0 supporting document(s)" in refused["detail"]
    assert "Amendment" in refused["detail"]

    status, refused = await submit(session, be, ia, "?partner=de-bfarm")
    assert status == 409
    assert "was sent to partner 'ch-swissmedic'" in refused["detail"], refused
    assert [m["message_id"] for m in await outbound(session, be)] == [first["message_id"]]


async def dropped(gateway: Running, name: str, data: bytes, sent_as: str | None = None) -> dict[str, Any]:
    """``data`` dropped in ``gateway``'s outbox as ``name`` and scanned: the ``.json`` beside the sent file."""
    outbox = gateway.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / name).write_bytes(data)
    await folder.scan(gateway.runner.app)
    found: dict[str, Any] = json.loads((outbox / "sent" / f"{sent_as or name}.json").read_text())
    return found


async def test_an_outbox_file_dropped_again_is_filed_with_the_message_that_carries_it(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())
    first = await dropped(be, "ia.xml", ia)
    again = await dropped(be, "ia-again.xml", ia)
    assert (first["submitted_before"], again["submitted_before"]) == (False, True)
    assert again["message_id"] == first["message_id"]


async def test_the_json_beside_a_sent_outbox_file_follows_its_message_to_failed_and_back(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A national system that only reads folders learns that a permit FAILED, why, and how to send it again;
    dropping the file again does, and both files then say ACKNOWLEDGED."""
    be = await harness.start("BE-FAMHP")
    sent = be.settings.folders.outbox / "sent"
    ia = example(IA, today=harness.clock.now())
    message_id = (await dropped(be, "ia.xml", ia))["message_id"]
    status = sent / "ia.xml.json"
    await wait_for(session, be, message_id, "RETRY_WAIT")
    harness.clock.advance(timedelta(hours=73))
    await be.runner.app[NODE].dispatcher.drain()

    assert await folder.report(be.runner.app) == 1
    failed = json.loads(status.read_text())
    assert failed["state"] == "FAILED" and failed["last_error"].startswith("EBMS:0301 MissingReceipt")
    assert "drop the same file in the outbox again" in failed["to_send_again"]
    assert await folder.report(be.runner.app) == 0, "nothing changed since"

    ch = await harness.start("CH-SWISSMEDIC")
    assert (await dropped(be, "ia.xml", ia, sent_as="ia.1.xml"))["message_id"] == message_id
    again = sent / "ia.1.xml.json"
    await wait_for(session, be, message_id, "ACKNOWLEDGED")
    await delivered_once(session, ch, message_id)

    assert await folder.report(be.runner.app) == 2
    for path in (status, again):
        done = json.loads(path.read_text())
        assert (done["state"], done["last_error"]) == ("ACKNOWLEDGED", None) and "to_send_again" not in done
    assert list((sent / folder.PENDING).iterdir()) == []


async def test_concurrent_submissions_of_one_document_make_one_message(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,
    session: aiohttp.ClientSession,
) -> None:
    """All pass the early check at once; the registry's unique document key lets one of them through."""
    be = await harness.start("BE-FAMHP", store=StoreSettings(url=store_url))
    ia = example(IA, today=harness.clock.now())

    answers = await asyncio.gather(*(submit(session, be, ia) for _ in range(8)))

    assert sorted(status for status, _ in answers) == [200] * 7 + [202]
    assert len({body["message_id"] for _, body in answers}) == 1
    assert len(await outbound(session, be)) == 1
    payloads = be.settings.data_dir / "payloads"
    kept = [p for p in payloads.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(kept) == 2, "the permit and the one message's wire bytes; the losers' wire files are gone"


async def test_a_permit_addressed_to_our_own_profile_is_refused_and_can_still_go_to_its_partner(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Sent to our own /as4, it failed as a reuse of our MessageId, and the document stayed tied to it for good."""
    be = await harness.start("BE-FAMHP")
    ia = example(IA, today=harness.clock.now())

    status, refused = await submit(session, be, ia, "?partner=be-famhp")

    assert status == 409, refused
    assert "'be-famhp' is this gateway's own profile (PartyId BE-FAMHP)" in refused["detail"]
    assert "name the profile of CH's competent authority, or leave the partner out" in refused["detail"]
    assert await outbound(session, be) == []
    status, sent = await submit(session, be, ia)
    assert status == 202 and sent["to_party"] == "CH-SWISSMEDIC", sent
