"""A PullRequest takes only messages assigned to the MPC it names (ebMS 3.0 core 3.4): a message signed for
another MPC, queued before its partner's profile changed, is not handed out there to be refused for good."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest

from gateway.interfaces import node
from gateway.interfaces.demo import message, submit, wait_for
from tests.e2e.conftest import Harness, example, metric

MPC = "urn:permit-gateway:mpc:be-to-ch"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"
IA = "BE-IA-2026-0001.xml"
AWARENESS = "reception_awareness:\n  retries: 3\n  retry_delays_seconds: [60]\n  receipt_timeout_seconds: 5\n"


def profile(party: str, stem: str, name: str, rest: str) -> str:
    return (
        f"id: {stem}\nauthority_name: {name}\ncountry: {party[:2]}\nparty_id: {party}\n"
        f"security:\n  signing_certificate: {stem}.crt.pem\n{rest}"
    )


async def test_a_message_queued_for_push_is_not_pulled_on_the_mpc_its_partner_pulls_now(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switzerland pulls when its interval is up, not at the next tick of a second
    monkeypatch.setattr(node, "PULL_TICK_SECONDS", 0.1)
    be_folder, ch_folder = harness.tmp / "be-profiles", harness.tmp / "ch-profiles"
    be_folder.mkdir()
    ch_folder.mkdir()
    unreachable = f"endpoint: http://127.0.0.1:{harness.ports[CH]}/as4\n{AWARENESS}"  # Switzerland is not up
    (be_folder / "ch-swissmedic.yaml").write_text(profile(CH, "ch-swissmedic", "Swissmedic", unreachable))
    pulls = f"pull:\n  mpc: {MPC}\n  receive_by_pulling: true\n  interval_seconds: 1\n"
    endpoint = f"endpoint: http://127.0.0.1:{harness.ports[BE]}/as4\n"
    (ch_folder / "be-famhp.yaml").write_text(profile(BE, "be-famhp", "FAMHP", endpoint + pulls))
    harness.profile_folders = {BE: be_folder, CH: ch_folder}
    be = await harness.start(BE)
    queued = (await submit(session, be, example(IA, today=harness.clock.now())))["message_id"]
    await wait_for(session, be, queued, "RETRY_WAIT")

    await harness.stop(BE)  # the administrator switches Switzerland to pulling on its own MPC
    pulling = f"transport: pull\npull:\n  mpc: {MPC}\n{AWARENESS}"
    (be_folder / "ch-swissmedic.yaml").write_text(profile(CH, "ch-swissmedic", "Swissmedic", pulling))
    harness.clock.advance(timedelta(seconds=61))  # the queued message's retry is due
    be = await harness.start(BE)
    await harness.start(CH)
    newer = await submit(session, be, example(IA, today=harness.clock.now()).replace(b"0001", b"0002"))
    await wait_for(session, be, newer["message_id"], "ACKNOWLEDGED")  # signed for the MPC Switzerland pulls
    empty = await metric(session, be, "permit_gateway_pulls_served_total", outcome="empty")
    async with asyncio.timeout(10):  # more PullRequests, each of which the queued message could have answered
        while await metric(session, be, "permit_gateway_pulls_served_total", outcome="empty") < empty + 2:
            await asyncio.sleep(0.05)

    waiting = await message(session, be, queued)
    assert waiting is not None and waiting["state"] == "RETRY_WAIT", waiting
    assert "pulled" not in [event["kind"] for event in waiting["events"]]
