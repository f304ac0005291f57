"""``permit-gateway messages retry`` on a FAILED message whose partner's profile was corrected since it was built
(a mistyped PartyId): the CLI builds it anew under a new MessageId that supersedes it, as the REST retry does,
and the running gateway delivers it. It resent the stale signed bytes, exited 0, and the partner refused them
again. The document then leads to the new message, also once retention has purged the FAILED one."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest
from typer.testing import CliRunner

from gateway.interfaces import messages_cli
from gateway.interfaces.cli import app
from gateway.interfaces.demo import message, wait_for
from gateway.interfaces.keys import NODE
from gateway.store import State
from gateway.store.retention import purge
from tests.e2e.conftest import Harness, example, submit
from tests.e2e.test_resend_rebuilt import BE, CH, IA, _fixed, _own_profiles


async def test_a_cli_retry_after_the_partners_party_id_was_fixed_builds_it_anew_and_it_is_delivered(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = _own_profiles(harness, lambda t: t.replace("party_id: CH-SWISSMEDIC", "party_id: CH-SWISSMEDC"))
    be = await harness.start(BE)
    ch = await harness.start(CH)
    ia = example(IA, today=harness.clock.now())
    _, first = await submit(session, be, ia)
    old = first["message_id"]
    failed = await wait_for(session, be, old, "FAILED")
    assert "EBMS:0010" in failed["last_error"]
    _fixed(be, profile, lambda t: t.replace("party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDIC"))
    monkeypatch.setattr(messages_cli, "settings_of", lambda _config: harness.settings(BE))

    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["messages", "retry", old, "--reason", "profile fixed", "--config", "unused"]
    )

    out = " ".join(result.output.split())
    assert result.exit_code == 0, out
    before = await message(session, be, old)
    assert before is not None and before["state"] == "FAILED"
    (superseded,) = [e for e in before["events"] if e["kind"] == "superseded"]
    new = superseded["detail"]["superseded_by"]
    assert superseded["detail"]["reason"] == "operator (CLI): profile fixed"
    assert f"{new} was built anew from its document and supersedes {old}" in out
    assert f"{new} is SUBMITTED: a running gateway sends it at its next sweep" in out
    harness.clock.advance(timedelta(minutes=1))  # the CLI dates it by the system clock, not the test's
    be.runner.app[NODE].dispatch_pump.wake()
    done = await wait_for(session, be, new, "ACKNOWLEDGED")
    assert done["conversation_id"] == before["conversation_id"]
    await wait_for(session, ch, new, "DELIVERED")
    assert len(list(ch.inbox.glob("*.xml"))) == 1

    # the FAILED message is purged (failed_days), its successor kept: the document still leads to the successor
    node = be.runner.app[NODE]
    keep = {State.FAILED: timedelta(days=30), State.ACKNOWLEDGED: timedelta(days=365)}
    report = await purge(node.store, node.payloads, keep, now=harness.clock.now() + timedelta(days=31))
    assert report.by_state == {State.FAILED: 1} and await message(session, be, old) is None
    status, again = await submit(session, be, ia)
    assert (status, again.get("message_id"), again.get("submitted_before")) == (200, new, True), again
