"""A FAILED message whose signed bytes can no longer be delivered is built anew when it is sent again: our profile
of the partner named the wrong encryption certificate or a mistyped PartyId when it was built, or it is past the
partner's duplicate window. The new message has a new MessageId, the same conversation, and the timelines of
both name each other. And the partner's answers: one we cannot verify says it is our check that failed, and one
larger than any signal is not read whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.as4 import MAX_SIGNAL_BYTES
from gateway.interfaces.demo import Running, message, wait_for, write_profiles
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from tests.conftest import free_port
from tests.e2e.conftest import RETRIES, Harness, example, submit

IA = "BE-IA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"


def _own_profiles(harness: Harness, change: Callable[[str], str], endpoint: str | None = None) -> Path:
    """Belgium's own profile folder, its profile of Switzerland edited by ``change``."""
    folder = harness.tmp / "be-profiles"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    if endpoint is not None:
        endpoints[CH] = endpoint
    write_profiles(folder, endpoints, extra=RETRIES)
    (folder / "be-famhp.yaml").unlink()  # Belgium's profile of itself: it pins the certificate the tests misuse
    profile = folder / "ch-swissmedic.yaml"
    profile.write_text(change(profile.read_text()))
    harness.profile_folders[BE] = folder
    return profile


def _fixed(be: Running, profile: Path, change: Callable[[str], str]) -> None:
    profile.write_text(change(profile.read_text()))
    assert be.runner.app[PROFILE_WATCHER].reload("test: the admin fixed the profile")


def _wrong_encryption(text: str) -> str:
    return text.replace(
        "signing_certificate: ch-swissmedic.crt.pem\n",
        "signing_certificate: ch-swissmedic.crt.pem\n  encryption_certificate: be-famhp.crt.pem\n",
    )


def _right_encryption(text: str) -> str:
    return text.replace("  encryption_certificate: be-famhp.crt.pem\n", "")


def _events(found: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in found["events"] if e["kind"] == kind]


async def _retry(session: aiohttp.ClientSession, gateway: Running, message_id: str) -> tuple[int, Any]:
    url = f"{gateway.url}/api/v1/messages/{message_id}/retry"
    async with session.post(url, json={"reason": "profile fixed"}) as response:
        return response.status, await response.json()


async def _superseded(session: aiohttp.ClientSession, be: Running, ch: Running, old: str, new: str) -> None:
    """``new`` delivered in ``old``'s place, each timeline naming the other, in one conversation."""
    assert new != old
    done = await wait_for(session, be, new, "ACKNOWLEDGED")
    before = await message(session, be, old)
    assert before is not None and before["state"] == "FAILED"
    (superseded,) = _events(before, "superseded")
    assert superseded["detail"]["superseded_by"] == new
    (supersedes,) = _events(done, "supersedes")
    assert supersedes["detail"]["supersedes"] == old
    assert done["conversation_id"] == before["conversation_id"]
    await wait_for(session, ch, new, "DELIVERED")
    assert len(list(ch.inbox.glob("*.xml"))) == 1


async def _failed_submission(harness: Harness, session: aiohttp.ClientSession, be: Running, ia: bytes) -> Any:
    """``ia`` submitted to Belgium's gateway, once its message is FAILED (within 30 s)."""
    _, first = await submit(session, be, ia)
    async with asyncio.timeout(30):
        found = await message(session, be, first["message_id"])
        while found is not None and found["state"] != "FAILED":
            await asyncio.sleep(0.05)
            found = await message(session, be, first["message_id"])
    assert found is not None
    return found


async def test_a_document_resubmitted_after_its_partners_encryption_certificate_was_fixed_goes_built_anew(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    profile = _own_profiles(harness, _wrong_encryption)
    be = await harness.start(BE)
    ch = await harness.start(CH)
    ia = example(IA, today=harness.clock.now())
    with_error = await _failed_submission(harness, session, be, ia)
    old = with_error["message_id"]
    assert "EBMS:0102" in with_error["last_error"]
    _fixed(be, profile, _right_encryption)

    status, again = await submit(session, be, ia)

    assert (status, again["submitted_before"], again["supersedes"]) == (202, True, old), again
    await _superseded(session, be, ch, old, again["message_id"])
    because = _events((await message(session, be, old)) or {}, "superseded")[0]["detail"]["because"]
    assert "encrypted for" in because and "security.encryption_certificate" in because
    # the document submitted once more is answered with the message that carries it now
    status, third = await submit(session, be, ia)
    assert (status, third["message_id"]) == (200, again["message_id"])
    # and the superseded message is no longer retried: it names its successor
    status, refused = await _retry(session, be, old)
    assert status == 409 and again["message_id"] in refused["detail"]


async def test_an_operator_retry_after_a_mistyped_party_id_was_fixed_goes_built_anew(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    profile = _own_profiles(harness, lambda t: t.replace("party_id: CH-SWISSMEDIC", "party_id: CH-SWISSMEDC"))
    be = await harness.start(BE)
    ch = await harness.start(CH)
    _, first = await submit(session, be, example(IA, today=harness.clock.now()))
    old = first["message_id"]
    failed = await wait_for(session, be, old, "FAILED")
    assert "EBMS:0010" in failed["last_error"]
    _fixed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDIC"))

    status, retried = await _retry(session, be, old)

    assert (status, retried["supersedes"]) == (202, old), retried
    await _superseded(session, be, ch, old, retried["message_id"])
    because = _events((await message(session, be, old)) or {}, "superseded")[0]["detail"]["because"]
    assert "CH-SWISSMEDC" in because and "party_id" in because


async def test_a_retry_past_the_duplicate_window_goes_built_anew(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be = await harness.start(BE)
    _, first = await submit(session, be, example(IA, today=harness.clock.now()))
    old = first["message_id"]
    await wait_for(session, be, old, "RETRY_WAIT")
    harness.clock.advance(timedelta(hours=72))
    await be.runner.app[NODE].dispatcher.drain()
    assert (await message(session, be, old) or {})["state"] == "FAILED"
    harness.clock.advance(be.runner.app[NODE].partners.max_age or timedelta(days=30))
    ch = await harness.start(CH)

    status, retried = await _retry(session, be, old)

    assert (status, retried["supersedes"]) == (202, old), retried
    await _superseded(session, be, ch, old, retried["message_id"])


async def test_an_answer_we_cannot_verify_says_our_check_failed_and_shows_the_partners_error_unverified(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Our profile of Switzerland pins Belgium's own certificate: Switzerland cannot decrypt (EBMS:0102), and we
    cannot verify its signed error signal."""
    _own_profiles(
        harness, lambda t: t.replace("signing_certificate: ch-swissmedic", "signing_certificate: be-famhp")
    )
    be = await harness.start(BE)
    await harness.start(CH)
    _, first = await submit(session, be, example(IA, today=harness.clock.now()))

    found = await wait_for(session, be, first["message_id"], "RETRY_WAIT")

    reason = _events(found, "send_failed")[0]["detail"]["reason"]
    assert "our check of partner 'ch-swissmedic'" in reason, reason
    assert "security.signing_certificate" in reason and "id: ch-swissmedic" in reason, reason
    assert "unverified: EBMS:0102 FailedDecryption" in reason, reason


async def test_an_answer_larger_than_any_signal_is_a_failed_attempt_naming_the_limit(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    sent: list[int] = []

    async def flood(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/soap+xml"})
        await response.prepare(request)
        chunk = b" " * (1024 * 1024)
        try:
            for _ in range(64):  # 64 MiB at most, far past the limit
                await response.write(chunk)
                sent.append(len(chunk))
        except (ConnectionError, aiohttp.ClientError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/as4", flood)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        _own_profiles(harness, lambda t: t, endpoint=f"http://127.0.0.1:{port}/as4")
        be = await harness.start(BE)
        _, first = await submit(session, be, example(IA, today=harness.clock.now()))

        found = await wait_for(session, be, first["message_id"], "RETRY_WAIT")
    finally:
        await runner.cleanup()

    reason = _events(found, "send_failed")[0]["detail"]["reason"]
    assert f"more than {MAX_SIGNAL_BYTES} bytes" in reason, reason[:300]
    assert sum(sent) < 64 * 1024 * 1024


async def test_a_file_dropped_again_after_the_profile_was_fixed_reports_the_message_built_anew(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """The outbox's .json said the document was a first submission, and did not name the FAILED message."""
    import json

    from gateway.interfaces import folder

    profile = _own_profiles(harness, _wrong_encryption)
    be = await harness.start(BE)
    ch = await harness.start(CH)
    ia = example(IA, today=harness.clock.now())
    old = (await _failed_submission(harness, session, be, ia))["message_id"]
    _fixed(be, profile, _right_encryption)
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "ia.xml").write_bytes(ia)

    assert await folder.scan(be.runner.app) == 1

    summary = json.loads((outbox / "sent" / "ia.xml.json").read_text())
    assert (summary["submitted_before"], summary["supersedes"]) == (True, old)
    await _superseded(session, be, ch, old, summary["message_id"])


async def test_an_operator_retry_after_the_agreement_was_set_goes_built_anew(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Switzerland's profile of Belgium names an agreement, Belgium's of Switzerland none: the partner refuses with
    EBMS:0010, the operator sets ``agreement`` as it says, and the retry must carry the AgreementRef (the stored
    bytes have none: sent again they failed the same way however often)."""
    agreement = "agreement:\n  value: urn:fdc:incb.org:i2es:agreement\n"
    profile = _own_profiles(harness, lambda text: text)
    switzerlands_profile_of_belgium = harness.tmp / "profiles" / "be-famhp.yaml"
    switzerlands_profile_of_belgium.write_text(switzerlands_profile_of_belgium.read_text() + agreement)
    be = await harness.start(BE)
    ch = await harness.start(CH)
    _, first = await submit(session, be, example(IA, today=harness.clock.now()))
    old = first["message_id"]
    failed = await wait_for(session, be, old, "FAILED")
    assert "EBMS:0010" in failed["last_error"] and "no AgreementRef" in failed["last_error"]
    _fixed(be, profile, lambda text: text + agreement)

    status, retried = await _retry(session, be, old)

    assert (status, retried["supersedes"]) == (202, old), retried
    await _superseded(session, be, ch, old, retried["message_id"])
    because = _events((await message(session, be, old)) or {}, "superseded")[0]["detail"]["because"]
    assert "the AgreementRef was none and is now 'urn:fdc:incb.org:i2es:agreement' (agreement)" in because
