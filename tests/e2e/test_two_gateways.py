"""Two gateways on loopback exchange permits over real AS4: HTTP, XML-DSig, XML-Enc, SQLite, inbox files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import traceback
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    ErrorReceived,
    Outgoing,
    Party,
    PartyId,
    Payload,
    ReceiptReceived,
    SecurityPolicy,
    UserMessageReceived,
    build_user_message,
    parse_incoming,
    parse_response,
)
from gateway.interfaces import folder
from gateway.interfaces.demo import Running, exchange, message, wait_for
from gateway.interfaces.keys import NODE
from gateway.outbound.dispatch import stored_message
from gateway.outbound.ping import Stage, ping
from gateway.settings import StoreSettings
from gateway.store import Direction
from tests.e2e.conftest import (
    UNREGISTERED,
    Harness,
    example,
    import_exchanged,
    metric,
    permit_user_message,
    remaining_base_grams,
)

IA = "BE-IA-2026-0001.xml"
EA = "CH-EA-2026-0001.xml"


async def test_import_authorization_crosses_and_the_export_authorization_answers(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    first = await exchange(session, be, ch, ia, IA)
    second = await exchange(session, ch, be, example(EA, today=harness.clock.now()), EA)
    sent = await message(session, be, first.message_id)
    assert sent is not None and sent["state"] == "ACKNOWLEDGED" and sent["attempts"] == 1
    kinds = [e["kind"] for e in sent["events"]]
    assert kinds == ["submitted", "receipt_ok"]
    received = await message(session, be, second.message_id)
    assert received is not None and received["state"] == "DELIVERED"
    assert received["document_number"] == "CH-EA-2026-0001"
    delivered = sorted(p.name for p in be.inbox.iterdir())
    assert len(delivered) == 2 and delivered[0].startswith("CH-EA-2026-0001.")
    meta = json.loads((be.inbox / delivered[0]).read_text())
    assert meta["message_id"] == second.message_id and meta["from_party"] == "CH-SWISSMEDIC"


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_evidence_of_an_exchange_can_be_fetched_and_verified_by_anyone(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Non-repudiation: the message as sent and the partner's signed receipt, byte for byte, verify with the
    parties' certificates alone; both gateways hold the same receipt."""
    be, ch = await import_exchanged(harness, session)
    (sent,) = await be.runner.app[NODE].store.recent(direction=Direction.OUTBOUND)
    path = f"/api/v1/messages/{sent.message_id}"

    status, headers, wire = await _get(session, f"{be.url}{path}/wire")
    assert status == 200 and headers["X-Permit-Wire-Sha256"] == hashlib.sha256(wire).hexdigest()
    be_keys, ch_keys = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC")
    opened = parse_incoming(
        headers["Content-Type"],
        wire,
        policy_for=lambda _: SecurityPolicy(signing_certificates=(be_keys.certificate,)),
        keys=[ch_keys],
        now=harness.clock.now(),
    )
    assert isinstance(opened, UserMessageReceived)
    assert opened.payloads[0].read() == example(IA, today=harness.clock.now())

    status, headers, receipt = await _get(session, f"{be.url}{path}/receipt")
    assert status == 200
    policy = SecurityPolicy(signing_certificates=(ch_keys.certificate,))
    verified = parse_response(
        headers["Content-Type"], receipt, sent=stored_message(sent), policy=policy, now=harness.clock.now()
    )
    assert isinstance(verified, ReceiptReceived) and verified.ref_to_message_id == sent.message_id
    assert (await _get(session, f"{ch.url}{path}/receipt"))[2] == receipt
    assert (await _get(session, f"{ch.url}{path}/wire"))[2] == wire, "the receiver keeps what it received"


async def test_no_file_is_synced_on_the_event_loop(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync waits for the disk; on the event loop it would stall every other request of the gateway."""
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    loop_thread, synced, on_loop = threading.get_ident(), [], []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(fd)
        if threading.get_ident() == loop_thread:
            on_loop.append("".join(traceback.format_stack(limit=8)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)
    assert synced, "the exchange stores payloads and delivers a file, so something must have been synced"
    assert on_loop == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=abc", "limit"),
        ("limit=501", "limit"),
        ("limit=%C2%B2", "limit"),
        ("direction=sideways", "direction"),
        ("state=LOST", "state"),
    ],
)
async def test_listing_messages_with_a_bad_parameter_is_a_bad_request(
    harness: Harness, session: aiohttp.ClientSession, query: str, named: str
) -> None:
    """Found by fuzzing the REST API: ``limit=abc`` was HTTP 500, an unknown direction listed both."""
    be = await harness.start("BE-FAMHP")
    async with session.get(f"{be.url}/api/v1/messages?{query}") as response:
        status, body = response.status, await response.json()
    assert status == 400 and body["detail"].startswith(f"{named} must be ")


async def test_invalid_permit_is_refused_at_submission_with_the_rule(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    bad = example("IA-001-importing-country-not-issuer.xml", today=harness.clock.now(), folder="invalid")
    async with session.post(f"{be.url}/api/v1/documents", data=bad) as response:
        body = await response.json()
    assert response.status == 422
    assert [f["rule"] for f in body["findings"] if f["severity"] == "error"] == ["IA-001"]
    assert all(f["hint"] for f in body["findings"])
    async with session.get(f"{be.url}/api/v1/messages") as listing:
        assert (await listing.json())["messages"] == []


def _forged_user_message(harness: Harness, document: bytes, message_id: str) -> tuple[str, bytes]:
    be_keys, ch_keys = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC")
    um = permit_user_message(harness, message_id)
    payload = Payload(content_id="permit@test", mime_type="application/xml", data=document)
    out = build_user_message(um, [payload], sender=be_keys, recipient_certificate=ch_keys.certificate)
    return out.content_type, out.body


async def _post_as4(
    session: aiohttp.ClientSession, url: str, content_type: str, body: bytes
) -> tuple[int, str, bytes]:
    async with session.post(f"{url}/as4", data=body, headers={"Content-Type": content_type}) as response:
        return response.status, response.headers["Content-Type"], await response.read()


async def _error_code(harness: Harness, status: int, content_type: str, body: bytes, *, about: str) -> str:
    """The EBMS code of Switzerland's signed error signal about the message ``about``."""
    policy = SecurityPolicy(signing_certificates=(harness.keys("CH-SWISSMEDIC").certificate,))
    sent = Outgoing(message_id=about, content_type="", body=b"")
    answer = parse_response(content_type, body, sent=sent, policy=policy, now=harness.clock.now())
    assert isinstance(answer, ErrorReceived) and answer.signed
    return answer.errors[0].code


async def test_tampered_messages_are_refused_and_not_delivered(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    content_type, body = _forged_user_message(harness, ia, "t1@be-famhp.test")
    edited = body.replace(b">ImportAuthorization</eb:Action>", b">ExportAuthorization</eb:Action>")
    status, answer_type, answer = await _post_as4(session, ch.url, content_type, edited)
    assert (
        status == 400
        and await _error_code(harness, status, answer_type, answer, about="t1@be-famhp.test") == "EBMS:0101"
    )
    cut = body.rindex(b"\r\n--MIMEBoundary") - 5
    flipped = body[:cut] + bytes([body[cut] ^ 0xFF]) + body[cut + 1 :]
    status, answer_type, answer = await _post_as4(session, ch.url, content_type, flipped)
    assert (
        status == 400
        and await _error_code(harness, status, answer_type, answer, about="t1@be-famhp.test") == "EBMS:0102"
    )
    assert await message(session, ch, "t1@be-famhp.test") is None
    assert not ch.inbox.exists() or list(ch.inbox.iterdir()) == []


async def test_a_retry_gets_the_original_receipt_and_is_delivered_once(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    content_type, body = _forged_user_message(harness, example(IA, today=harness.clock.now()), "r1@be-famhp.test")
    first = await _post_as4(session, ch.url, content_type, body)
    second = await _post_as4(session, ch.url, content_type, body)
    assert first[0] == second[0] == 200
    assert first[2] == second[2]
    await wait_for(session, ch, "r1@be-famhp.test", "DELIVERED")
    assert len(list(ch.inbox.glob("*.xml"))) == 1
    record = await message(session, ch, "r1@be-famhp.test")
    assert record is not None and [e["kind"] for e in record["events"]].count("duplicate") == 1


async def _receipted(
    harness: Harness, session: aiohttp.ClientSession, to: Running, document: bytes, message_id: str, **changes: Any
) -> None:
    """``document`` sent by hand to ``to`` as Belgium (or whoever ``changes`` make the sender); it must be
    answered with a signed receipt."""
    sender = changes.pop("sender", "BE-FAMHP")
    receiver = "CH-SWISSMEDIC" if sender == "BE-FAMHP" else "BE-FAMHP"
    keys, theirs = harness.keys(sender), harness.keys(receiver)
    payload = Payload(content_id="permit@test", mime_type="application/xml", data=document)
    sent = build_user_message(
        permit_user_message(harness, message_id, **changes),
        [payload],
        sender=keys,
        recipient_certificate=theirs.certificate,
    )
    status, answer_type, answer = await _post_as4(session, to.url, sent.content_type, sent.body)
    policy = SecurityPolicy(signing_certificates=(theirs.certificate,))
    receipt = parse_response(answer_type, answer, sent=sent, policy=policy, now=harness.clock.now())
    assert status == 200 and isinstance(receipt, ReceiptReceived), receipt


async def test_a_permit_resent_under_a_new_message_id_is_receipted_and_not_delivered_again(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A sender whose retries mint new MessageIds defeats duplicate detection by MessageId; the permit's own key
    does not let its document reach the national system twice."""
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    before = await metric(session, ch, "permit_gateway_duplicates_total", outcome="document_resent")
    for message_id in ("n1@be-famhp.test", "n2@be-famhp.test"):
        await _receipted(harness, session, ch, ia, message_id)

    await wait_for(session, ch, "n1@be-famhp.test", "DELIVERED")
    second = await message(session, ch, "n2@be-famhp.test")
    assert second is not None and second["state"] == "DUPLICATE"
    assert second["events"][-1]["detail"]["first_message_id"] == "n1@be-famhp.test"
    assert await metric(session, ch, "permit_gateway_duplicates_total", outcome="document_resent") == before + 1
    assert len(list(ch.inbox.glob("*.xml"))) == 1


async def test_one_permit_arriving_at_once_under_several_message_ids_is_delivered_once(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,
    session: aiohttp.ClientSession,
) -> None:
    """The registry's unique document key decides which one is delivered; the others wait for it to commit and
    are kept DUPLICATE, each with its signed receipt."""
    ch = await harness.start("CH-SWISSMEDIC", store=StoreSettings(url=store_url))
    ia = example(IA, today=harness.clock.now())
    ids = [f"c{n}@be-famhp.test" for n in range(6)]

    await asyncio.gather(*(_receipted(harness, session, ch, ia, message_id) for message_id in ids))

    records = [await message(session, ch, message_id) for message_id in ids]
    states = [str(r["state"]) for r in records if r is not None]
    assert states.count("DUPLICATE") == 5 and len(states) == 6, states
    first = next(r for r in records if r is not None and r["state"] != "DUPLICATE")
    await wait_for(session, ch, first["message_id"], "DELIVERED")
    assert len(list(ch.inbox.glob("*.xml"))) == 1


async def test_an_export_resent_under_a_new_message_id_does_not_draw_on_its_import_twice(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, _ = await import_exchanged(harness, session)
    ea = example(EA, today=harness.clock.now())
    from_ch = {
        "sender": "CH-SWISSMEDIC",
        "from_party": Party(party_ids=(PartyId(value="CH-SWISSMEDIC", type=UNREGISTERED),), role=ROLE_INITIATOR),
        "to_party": Party(party_ids=(PartyId(value="BE-FAMHP", type=UNREGISTERED),), role=ROLE_RESPONDER),
        "action": "ExportAuthorization",
    }
    for message_id in ("e1@ch-swissmedic.test", "e2@ch-swissmedic.test"):
        await _receipted(harness, session, be, ea, message_id, **from_ch)

    await wait_for(session, be, "e1@ch-swissmedic.test", "DELIVERED")
    second = await message(session, be, "e2@ch-swissmedic.test")
    assert second is not None and second["state"] == "DUPLICATE", second
    assert await remaining_base_grams(session, be) == ["1880", "1474"]


async def test_same_message_id_with_other_content_is_refused(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    first = _forged_user_message(harness, ia, "d1@be-famhp.test")
    other = _forged_user_message(harness, ia.replace(b"Mechelen", b"Antwerpen"), "d1@be-famhp.test")
    assert (await _post_as4(session, ch.url, *first))[0] == 200
    status, answer_type, answer = await _post_as4(session, ch.url, *other)
    assert (
        status == 400
        and await _error_code(harness, status, answer_type, answer, about="d1@be-famhp.test") == "EBMS:0003"
    )


async def test_same_message_id_and_permit_under_another_header_is_refused_naming_what_differs(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The stored receipt answers a retry; for a message whose signed header differs it would not match what
    was sent, and the sender could only report an invalid receipt."""
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    payload = Payload(content_id="permit@test", mime_type="application/xml", data=ia)
    be_keys, ch_cert = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC").certificate
    sent = []
    for conversation in ("c-1", "c-2"):
        um = permit_user_message(harness, "h1@be-famhp.test", conversation_id=conversation)
        out = build_user_message(um, [payload], sender=be_keys, recipient_certificate=ch_cert)
        sent.append(await _post_as4(session, ch.url, out.content_type, out.body))
    assert sent[0][0] == 200
    status, answer_type, answer = sent[1]
    policy = SecurityPolicy(signing_certificates=(ch_cert,))
    refused = parse_response(
        answer_type,
        answer,
        sent=Outgoing(message_id="h1@be-famhp.test", content_type="", body=b""),
        policy=policy,
        now=harness.clock.now(),
    )
    assert status == 400 and isinstance(refused, ErrorReceived)
    assert refused.errors[0].code == "EBMS:0003"
    assert "already received with different content (different ConversationId)" in (refused.errors[0].detail or "")


async def test_an_unlawful_permit_from_a_partner_is_refused_with_a_delivery_failure(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    bad = example("X-006-negative-quantity.xml", today=harness.clock.now(), folder="invalid")
    status, answer_type, answer = await _post_as4(
        session, ch.url, *_forged_user_message(harness, bad, "u1@be-famhp.test")
    )
    assert (
        status == 500
        and await _error_code(harness, status, answer_type, answer, about="u1@be-famhp.test") == "EBMS:0202"
    )
    record = await message(session, ch, "u1@be-famhp.test")
    assert record is not None and record["state"] == "REJECTED" and "X-006" in record["last_error"]
    assert not ch.inbox.exists() or list(ch.inbox.iterdir()) == []


async def test_a_permit_the_partner_refuses_fails_at_once_with_its_reason_and_is_not_resent(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Switzerland already holds BE-IA-2026-0001 with other content, so its checks refuse Belgium's: EBMS:0202
    is final, not a reason to resend the same refused permit until the retries run out."""
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    ia = example(IA, today=harness.clock.now())
    earlier = _forged_user_message(harness, ia.replace(b"Mechelen", b"Antwerpen"), "early@be-famhp.test")
    assert (await _post_as4(session, ch.url, *earlier))[0] == 200
    failures = {"direction": "out", "partner": "ch-swissmedic"}
    before = await metric(session, be, "permit_gateway_messages_failed_total", **failures)
    async with session.post(f"{be.url}/api/v1/documents", data=ia) as response:
        message_id = (await response.json())["message_id"]

    failed = await wait_for(session, be, message_id, "FAILED")
    assert failed["attempts"] == 1
    assert failed["last_error"].startswith("partner answered with an error signal: EBMS:0202 DeliveryFailure")
    assert "refused by the receiving authority's checks" in failed["last_error"]
    assert await metric(session, be, "permit_gateway_messages_failed_total", **failures) == before + 1


async def test_partner_down_then_back_gets_the_message_with_the_same_id(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        message_id = (await response.json())["message_id"]
    waiting = await wait_for(session, be, message_id, "RETRY_WAIT")
    async with session.get(f"{be.url}/api/v1/messages/{message_id}/receipt") as response:
        assert (
            response.status == 404
            and "is RETRY_WAIT and has no signed receipt" in (await response.json())["error"]
        )
    endpoint = f"http://127.0.0.1:{harness.ports['CH-SWISSMEDIC']}/as4"
    assert waiting["last_error"].startswith(f"EBMS:0005 ConnectionFailure: {endpoint}: cannot connect (")
    assert "Error" not in waiting["last_error"] and "check that the endpoint is up" in waiting["last_error"]
    ch = await harness.start("CH-SWISSMEDIC")
    harness.clock.advance(timedelta(seconds=80))
    be.runner.app[NODE].dispatch_pump.wake()
    done = await wait_for(session, be, message_id, "ACKNOWLEDGED")
    assert done["attempts"] == 2
    await wait_for(session, ch, message_id, "DELIVERED")


@pytest.mark.parametrize(
    ("waits", "attempts", "reported"),
    [
        ([timedelta(minutes=5)] * 3, 4, "no receipt after 4 attempts; last: EBMS:0005"),
        ([timedelta(hours=73)], 2, "its time to live ran out before it could be sent again; EBMS:0005"),
    ],
    ids=["retries", "time-to-live"],
)
async def test_a_partner_that_never_answers_fails_the_message_as_a_missing_receipt(
    harness: Harness, session: aiohttp.ClientSession, waits: list[timedelta], attempts: int, reported: str
) -> None:
    """The sending MSH reports in ebMS terms what no signal carries: EBMS:0301 after the last of its retries
    (three here) or at its time to live, with the EBMS:0005 of the last attempt."""
    be = await harness.start("BE-FAMHP")
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        message_id = (await response.json())["message_id"]
    await wait_for(session, be, message_id, "RETRY_WAIT")
    failures = {"direction": "out", "partner": "ch-swissmedic"}  # what config/alerts.yml alerts on
    before = await metric(session, be, "permit_gateway_messages_failed_total", **failures)
    failed_attempts = {"partner": "ch-swissmedic", "outcome": "failed"}
    attempts_before = await metric(session, be, "permit_gateway_send_attempts_total", **failed_attempts)
    for wait in waits:
        harness.clock.advance(wait)
        await be.runner.app[NODE].dispatcher.drain()

    failed = await message(session, be, message_id)
    assert failed is not None and (failed["state"], failed["attempts"]) == ("FAILED", attempts)
    assert await metric(session, be, "permit_gateway_messages_failed_total", **failures) == before + 1
    gave_up_after_an_attempt = failed["events"][-1]["detail"].get("attempt") is not None
    assert await metric(session, be, "permit_gateway_send_attempts_total", **failed_attempts) == (
        attempts_before + gave_up_after_an_attempt
    )
    async with session.get(f"{be.url}/api/v1/messages?direction=outbound&state=FAILED") as response:
        assert [m["message_id"] for m in (await response.json())["messages"]] == [message_id]
    async with session.get(f"{be.url}/api/v1/messages?state=ACKNOWLEDGED") as response:
        assert (await response.json())["messages"] == []
    assert failed["last_error"].startswith(f"EBMS:0301 MissingReceipt: {reported}"), failed["last_error"]


async def test_outbox_folder_sends_and_rejects_with_the_reason_beside(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    (outbox / "bad.xml").write_bytes(b"<ImportAuthorization")
    assert await folder.scan(be.runner.app) == 2
    sent = json.loads((outbox / "sent" / "ia.xml.json").read_text())
    await wait_for(session, ch, sent["message_id"], "DELIVERED")
    errors = (be.settings.folders.rejected / "bad.xml.errors.txt").read_text()
    assert "[XML]" in errors and "line 1" in errors
    assert (be.settings.folders.rejected / "bad.xml").read_bytes() == b"<ImportAuthorization"


async def test_an_outbox_file_that_fails_unexpectedly_stays_and_the_others_go(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error that is not the document's fault escaped the scan before, and the watcher task died with it.
    A fault of the gateway's own (not an outage) leaves the file taken and lets the others go; an outage holds
    them back (tests/interfaces/test_outbox_review.py)."""
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "a.xml").write_bytes(b"<first/>")
    (outbox / "b.xml").write_bytes(example(IA, today=harness.clock.now()))
    os.utime(outbox / "a.xml", ns=(10**12, 10**12))
    os.utime(outbox / "b.xml", ns=(2 * 10**12, 2 * 10**12))
    submitter = be.runner.app[NODE].submitter
    real_submit = submitter.submit

    async def fault_for_a(data: bytes, **kw: Any) -> Any:
        if data == b"<first/>":
            raise RuntimeError("a fault of the gateway's own")
        return await real_submit(data, **kw)

    monkeypatch.setattr(submitter, "submit", fault_for_a)
    assert await folder.scan(be.runner.app) == 2
    assert (outbox / folder.PROCESSING / "a.xml").read_bytes() == b"<first/>"  # taken, tried at the next scan
    assert (outbox / "sent" / "b.xml.json").exists()
    assert not (be.settings.folders.rejected / "a.xml").exists()

    monkeypatch.setattr(submitter, "submit", real_submit)  # fixed
    assert await folder.scan(be.runner.app) == 1
    assert (be.settings.folders.rejected / "a.xml").read_bytes() == b"<first/>"


async def test_a_store_out_of_reach_is_answered_503_with_retry_after(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart or failover is a moment to try again, not an internal error."""
    be = await harness.start("BE-FAMHP")

    async def unreachable(data: bytes, **kw: Any) -> Any:
        raise OperationalError(
            "INSERT INTO messages ...", {}, ConnectionResetError("server 10.1.2.3 closed the connection")
        )

    monkeypatch.setattr(be.runner.app[NODE].submitter, "submit", unreachable)
    before = await metric(session, be, "permit_gateway_store_unavailable_total", endpoint="api")
    async with session.post(f"{be.url}/api/v1/documents", data=example(IA, today=harness.clock.now())) as response:
        status, retry_after, body = response.status, response.headers.get("Retry-After"), await response.json()
    assert status == 503 and retry_after == "2" and body["error"] == "store unavailable"
    assert body["detail"].startswith("the message store cannot be reached (the database is down, restarting")
    assert "OperationalError" not in body["detail"] and "10.1.2.3" not in body["detail"]  # that is for the log
    assert body["detail"].endswith("send it again after 2 s (Retry-After)")
    assert await metric(session, be, "permit_gateway_store_unavailable_total", endpoint="api") == before + 1


async def test_ping_gets_a_signed_receipt_and_the_test_message_is_not_delivered(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    node = be.runner.app[NODE]
    result = await ping(
        node.partners.get("ch-swissmedic"),
        identity=node.settings.identity,
        keys=node.keys,
        session=session,
        clock=harness.clock,
    )
    assert result.stage is Stage.RECEIPT_OK, result.detail
    assert result.http_status == 200 and result.round_trip_ms is not None
    assert await message(session, ch, result.message_id) is None
    assert not ch.inbox.exists() or list(ch.inbox.iterdir()) == []
