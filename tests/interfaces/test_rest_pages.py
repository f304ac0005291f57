"""The REST listings in pages (GET /messages, /inbox, /permits, /permits/overdue-endorsements), on a real gateway
over loopback with SQLite and PostgreSQL stores: walking the ``next`` cursors gives every row once, in order,
while rows are stored (and inbox permits acknowledged) between pages; a cursor cut short, edited, of another
listing or sent with other filters is a 400 naming the fix; and a download whose file is gone from the payload
store is a JSON 500 naming the file and how to get it back."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert

from gateway.interfaces import rest
from gateway.interfaces.keys import NODE
from gateway.profiles.devpki import DevPki
from gateway.store import Direction, Event, MessageStore
from gateway.store.schema import permit_documents
from tests.e2e.conftest import example
from tests.interfaces.test_rest_review_api import IA, Gateway, running
from tests.store.helpers import new_message

MESSAGES = "/api/v1/messages"
INBOX = "/api/v1/inbox"
PERMITS = "/api/v1/permits"
OVERDUE = "/api/v1/permits/overdue-endorsements"
PULL_PARTNER = "ch-swissmedic"  # its profile says delivery.method: rest-pull


# Switzerland's endpoint answers nothing; what Switzerland sends us waits for REST pull
REST_PULL = "delivery:\n  method: rest-pull\n"


@pytest.fixture
async def gateway(tmp_path: Path, pki: DevPki, store_url: str) -> AsyncIterator[Gateway]:
    async with running(tmp_path, pki, store_url, profile_extra=REST_PULL) as found:
        yield found


@pytest.fixture
async def sqlite_gateway(tmp_path: Path, pki: DevPki) -> AsyncIterator[Gateway]:
    async with running(tmp_path, pki, profile_extra=REST_PULL) as found:
        yield found


def _store(gateway: Gateway) -> MessageStore:
    store: MessageStore = gateway.running.runner.app[NODE].store
    return store


async def _finished(gateway: Gateway, n: int) -> str:
    """A message in a final state, so the gateway's own work leaves it alone: sent and FAILED, or received and
    REJECTED, in turn."""
    if n % 2:
        new = new_message(f"in-{n}-{uuid.uuid4().hex[:6]}@ch", direction=Direction.INBOUND)
        record, _ = await _store(gateway).add(new, then=Event.REJECT)
    else:
        record, _ = await _store(gateway).add(
            new_message(f"out-{n}-{uuid.uuid4().hex[:6]}@be"), then=Event.GIVE_UP
        )
    return record.message_id


async def _waiting(gateway: Gateway, n: int) -> str:
    """A permit Switzerland sent that waits in the inbox."""
    new = new_message(f"pull-{n}@ch", direction=Direction.INBOUND, partner_id=PULL_PARTNER)
    record, _ = await _store(gateway).add(new, then=Event.ACCEPT)
    return record.message_id


async def _walk(
    gateway: Gateway,
    path: str,
    key: str,
    first: dict[str, str],
    between: Callable[[int], Awaitable[None]],
    then: Callable[[int], dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Every row of a listing, following ``next`` from the first page (query ``first``); ``between(page)`` runs
    after each page, and ``then(page)`` gives the query sent with each cursor (default: ``first``'s)."""
    rows: list[dict[str, Any]] = []
    query = dict(first)
    for page in range(1000):
        status, body, _ = await gateway.call("GET", path, path, params=query)
        assert status == 200, body
        rows.extend(body[key])
        if body["next"] is None:
            return rows
        assert body[key], "a page before the last is not empty"
        await between(page)
        query = (then(page) if then else dict(first)) | {"cursor": body["next"]}
    raise AssertionError("the walk did not end")


async def test_every_message_is_listed_once_newest_first_across_pages_while_messages_arrive(
    gateway: Gateway,
) -> None:
    stored = [await _finished(gateway, n) for n in range(520)]  # more than the largest page
    arrived = iter(range(1000, 2000))

    async def arrive(page: int) -> None:
        stored.extend([await _finished(gateway, next(arrived)) for _ in range(3)])

    before = list(reversed(stored))
    walked = await _walk(gateway, MESSAGES, "messages", {"limit": "500"}, arrive)
    assert [m["message_id"] for m in walked] == before
    assert len(stored) > len(before), "messages were stored between the pages"

    before = list(reversed(stored))
    # the cursor keeps the filter: later pages send it alone, or with the same filter again
    walked = await _walk(
        gateway,
        MESSAGES,
        "messages",
        {"direction": "inbound", "limit": "45"},
        arrive,
        then=lambda page: {"limit": "45"} if page % 2 else {"direction": "inbound", "limit": "30"},
    )
    assert [m["message_id"] for m in walked] == [m for m in before if m.startswith("in-")]
    before = list(reversed(stored))
    failed = await _walk(gateway, MESSAGES, "messages", {"state": "failed", "limit": "100"}, arrive)
    assert [m["message_id"] for m in failed] == [m for m in before if m.startswith("out-")]

    # an empty page (?limit=0) says there is more, and its cursor goes on where it started
    status, body, _ = await gateway.call("GET", MESSAGES, MESSAGES, params={"limit": "0"})
    assert status == 200 and body["messages"] == [] and body["next"], body
    status, body, _ = await gateway.call("GET", MESSAGES, MESSAGES, params={"limit": "2", "cursor": body["next"]})
    assert [m["message_id"] for m in body["messages"]] == list(reversed(stored))[:2]


async def test_the_inbox_is_walked_oldest_first_each_permit_once_while_permits_arrive_and_are_acknowledged(
    gateway: Gateway,
) -> None:
    waiting = [await _waiting(gateway, n) for n in range(23)]

    async def arrive_and_ack(page: int) -> None:
        waiting.append(await _waiting(gateway, 100 + page))
        acked = waiting[page]  # one listed on an earlier page leaves the inbox
        status, body, _ = await gateway.call("POST", f"{INBOX}/{acked}/ack", f"{INBOX}/{{message_id}}/ack")
        assert status == 200 and body["acknowledged"], body

    walked = await _walk(gateway, INBOX, "messages", {"limit": "5", "partner": PULL_PARTNER}, arrive_and_ack)
    assert [
        m["message_id"] for m in walked
    ] == waiting  # those that came meanwhile at the end, none skipped or twice


async def _permit(gateway: Gateway, n: int, *, valid_until: date | None = None) -> str:
    """A permit in the registry: an ImportAuthorization of Germany, or, with ``valid_until``, an
    ExportAuthorization of Switzerland awaiting its endorsement."""
    now = gateway.now
    export = valid_until is not None
    number = f"{'CH-EA' if export else 'DE-IA'}-2026-{n:04d}"
    values = {
        "document_type": "ExportAuthorization" if export else "ImportAuthorization",
        "issuing_country": "CH" if export else "DE",
        "number": number,
        "version": 1,
        "status": "ISSUED",
        "issue_date": date(2026, 1, 2),
        "issuing_authority": "CH-SWISSMEDIC" if export else "DE-BFARM",
        "importing_country": "DE",
        "exporting_country": "CH",
        "valid_from": date(2026, 1, 2),
        "valid_until": valid_until or date(2027, 1, 2),
        "multiple_consignments": False,
        "estimate_year": 2026,
        "cited": {},
        "content_sha256": f"{n:064d}",
        "direction": "in",
        "message_id": f"m-{number}@test",
        "created_at": now,
        "updated_at": now,
    }
    async with _store(gateway).engine.begin() as conn:
        await conn.execute(insert(permit_documents).values(**values))
    return number


async def test_every_permit_is_listed_once_newest_first_across_pages_while_permits_are_registered(
    gateway: Gateway,
) -> None:
    numbers = [await _permit(gateway, n) for n in range(17)]
    overdue_since = gateway.now.date() - timedelta(days=40)
    exports = [
        await _permit(gateway, 100 + n, valid_until=overdue_since + timedelta(days=n // 3)) for n in range(14)
    ]
    registered = iter(range(200, 300))
    longer: list[str] = []  # each overdue a day longer than every one before it

    async def register(page: int) -> None:
        numbers.append(await _permit(gateway, next(registered)))
        longer_still = overdue_since - timedelta(days=1 + len(longer))
        longer.insert(0, await _permit(gateway, next(registered), valid_until=longer_still))

    before = list(reversed(numbers))
    walked = await _walk(gateway, PERMITS, "permits", {"type": "IA", "limit": "4"}, register)
    assert [p["number"] for p in walked] == before
    before = list(reversed(numbers))
    walked = await _walk(
        gateway, PERMITS, "permits", {"country": "DE", "limit": "3"}, register, then=lambda _: {"limit": "5"}
    )
    assert [p["number"] for p in walked] == before

    # the longest overdue first, those of one day in the order they were registered; three at a time share
    # a valid_until, and pages end between them. Those registered meanwhile are overdue longer than the
    # walk's position: they are not on its pages.
    before = longer + exports
    walked = await _walk(gateway, OVERDUE, "permits", {"limit": "2"}, register)
    assert [p["number"] for p in walked] == before
    assert walked[-1]["days_since_validity_ended"] == 36


async def test_a_cursor_cut_short_edited_of_another_listing_or_with_other_filters_is_a_400_naming_the_fix(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway
    for n in range(3):
        await _finished(gateway, n)
        await _permit(gateway, n)
    _, body, _ = await gateway.call("GET", MESSAGES, MESSAGES, params={"limit": "1", "direction": "outbound"})
    cursor = body["next"]
    _, permits, _ = await gateway.call("GET", PERMITS, PERMITS, params={"limit": "1"})
    middle = len(cursor) // 2
    edited = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
    cases = [
        (MESSAGES, {"cursor": "not a cursor!"}, "base64url"),
        (MESSAGES, {"cursor": cursor[:-4]}, "check sum"),
        (MESSAGES, {"cursor": edited}, "check sum"),
        (MESSAGES, {"cursor": "x" * 3000}, "ASCII characters"),
        (MESSAGES, {"cursor": ""}, "ASCII characters"),
        (PERMITS, {"cursor": cursor}, "GET /api/v1/messages"),
        (MESSAGES, {"cursor": permits["next"]}, "GET /api/v1/permits"),
        (INBOX, {"cursor": cursor}, "GET /api/v1/messages"),
        (OVERDUE, {"cursor": cursor}, "GET /api/v1/messages"),
    ]
    for path, query, named in cases:
        status, body, _ = await gateway.call("GET", path, path, params=query)
        assert status == 400 and named in body["detail"], (path, query, body)
        assert "without cursor" in body["fix"] and "cursor" in body["detail"], body
    status, body, _ = await gateway.call(
        "GET", MESSAGES, MESSAGES, params={"cursor": cursor, "direction": "inbound", "state": "FAILED"}
    )
    assert status == 400, body
    assert "direction=outbound" in body["detail"] and "direction=inbound&state=FAILED" in body["detail"], body
    assert "without cursor" in body["fix"] and "filters of the page it came from" in body["fix"]
    # the same filter, however it is spelt, goes on
    for query in ({"cursor": cursor, "direction": "outbound"}, {"cursor": cursor}):
        status, body, _ = await gateway.call("GET", MESSAGES, MESSAGES, params=query | {"limit": "1"})
        assert status == 200 and body["messages"][0]["direction"] == "outbound", body


async def test_a_download_whose_file_is_gone_is_a_json_500_naming_the_file_and_the_fix(
    sqlite_gateway: Gateway,
) -> None:
    gateway = sqlite_gateway
    form = aiohttp.FormData()
    form.add_field("document", example(IA, today=gateway.now), filename="permit.xml")
    form.add_field("attachment", b"%PDF-1.4 scan", filename="scan.pdf", content_type="application/pdf")
    status, body, _ = await gateway.call("POST", "/api/v1/documents", "/api/v1/documents", data=form)
    assert status == 202, body
    message_id, sha256 = body["message_id"], body["attachments"][0]["sha256"]
    record = await _store(gateway).find(Direction.OUTBOUND, message_id)
    assert record is not None and record.wire_sha256
    payloads = gateway.running.runner.app[NODE].payloads
    for lost, path, template in (
        (sha256, f"{MESSAGES}/{message_id}/attachments/1", f"{MESSAGES}/{{message_id}}/attachments/{{position}}"),
        (record.wire_sha256, f"{MESSAGES}/{message_id}/wire", f"{MESSAGES}/{{message_id}}/wire"),
    ):
        assert (await gateway.call("GET", path, template))[0] == 200
        payloads.path(lost).unlink()
        status, body, headers = await gateway.call("GET", path, template)
        assert status == 500 and headers["Content-Type"].startswith("application/json"), body
        assert lost in body["detail"] and "is missing" in body["detail"] and message_id in body["detail"], body
        assert (
            "restore the data folder from a backup" in body["fix"] and "submit the document again" in body["fix"]
        )


async def test_a_received_message_whose_file_is_gone_names_the_partner_as_the_fix(sqlite_gateway: Gateway) -> None:
    gateway = sqlite_gateway
    wire = gateway.running.runner.app[NODE].payloads.put(b"--boundary\r\nthe AS4 message\r\n--boundary--\r\n")
    new = new_message("received@ch", direction=Direction.INBOUND, partner_id=PULL_PARTNER)
    await _store(gateway).add(new, then=Event.ACCEPT, wire_sha256=wire, wire_content_type="multipart/related")
    path, template = f"{MESSAGES}/received@ch/wire", f"{MESSAGES}/{{message_id}}/wire"
    assert (await gateway.call("GET", path, template))[0] == 200
    gateway.running.runner.app[NODE].payloads.path(wire).unlink()
    status, body, _ = await gateway.call("GET", path, template)
    assert status == 500 and wire in body["detail"], body
    assert "ask the partner to send the message again" in body["fix"], body


def _minted(content: list[Any]) -> str:
    """A cursor anyone can make: its check sum catches mistakes, it proves nothing."""
    raw = json.dumps(content).encode()
    check = hashlib.sha256(rest._CURSOR_SALT + raw).digest()[: rest._CURSOR_CHECK_BYTES]
    return base64.urlsafe_b64encode(check + raw).rstrip(b"=").decode()


@pytest.mark.parametrize("days", ["abc", "99999999", "-5"])
async def test_what_a_made_up_cursor_carries_is_checked_like_a_query(sqlite_gateway: Gateway, days: str) -> None:
    cursor = _minted([1, "permits/overdue-endorsements", {"days": days}, None])
    status, body, _ = await sqlite_gateway.call("GET", OVERDUE, OVERDUE, params={"cursor": cursor})
    assert status == 400 and "days must be a whole number from 0 to 3650" in body["detail"], body
