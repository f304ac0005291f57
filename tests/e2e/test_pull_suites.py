"""Refusals of PullRequests are signed in the asking partner's suite, so its puller can read why it was refused;
a gateway without a key of that suite answers with a signed ebMS error, not an HTTP 500."""

from __future__ import annotations

import aiohttp

from gateway.as4 import (
    DEFAULT_MPC,
    ErrorReceived,
    Outgoing,
    PullRequest,
    SecurityPolicy,
    Suite,
    build_pull_request,
    parse_pull_answer,
)
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.profiles.keystore import OwnKeys, SuiteKeys
from tests.e2e.conftest import Harness

MPC = "urn:permit-gateway:mpc:be-to-ch"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"
V2 = Suite.EDELIVERY_2_0


def pull_profiles_2_0(harness: Harness) -> None:
    """Switzerland pulls from Belgium under edelivery-as4-2.0, on its own MPC."""
    folder = harness.tmp / "be-profiles"
    folder.mkdir()
    signing, encryption = harness.pki.files_for(CH).certificates(V2)
    (folder / "ch-swissmedic.yaml").write_text(
        "id: ch-swissmedic\nauthority_name: Swissmedic\ncountry: CH\nparty_id: CH-SWISSMEDIC\n"
        f"security:\n  suite: {V2.value}\n  signing_certificate: {signing.name}\n"
        f"  encryption_certificate: {encryption.name}\ntransport: pull\npull:\n  mpc: {MPC}\n"
    )
    harness.profile_folders = {BE: folder}


async def pull(
    harness: Harness, session: aiohttp.ClientSession, be: Running, message_id: str, mpc: str
) -> tuple[int, Outgoing, str, bytes]:
    request = build_pull_request(
        PullRequest(message_id=message_id, timestamp=harness.clock.now(), mpc=mpc),
        key=harness.keys(CH, V2),
        suite=V2,
    )
    async with session.post(
        f"{be.url}/as4", data=request.body, headers={"Content-Type": request.content_type}
    ) as r:
        return r.status, request, r.headers.get("Content-Type", ""), await r.read()


def read_error(harness: Harness, suite: Suite, request: Outgoing, content_type: str, body: bytes) -> ErrorReceived:
    """The answer as Switzerland's puller reads it: verified against Belgium's certificate of ``suite``."""
    policy = SecurityPolicy.for_suite(suite, signing_certificates=(harness.keys(BE, suite).certificate,))
    answer = parse_pull_answer(content_type, body, sent=request, policy=policy, now=harness.clock.now())
    assert isinstance(answer, ErrorReceived) and answer.signed
    return answer


async def test_a_refused_pull_request_of_a_2_0_partner_is_answered_signed_in_2_0(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    pull_profiles_2_0(harness)
    be = await harness.start(BE)
    status, request, content_type, body = await pull(harness, session, be, "p1@ch.test", DEFAULT_MPC)
    refused = read_error(harness, V2, request, content_type, body)
    assert status == 400 and refused.errors[0].code == "EBMS:0010"
    assert f"partner 'ch-swissmedic' pulls MPC {MPC!r}" in (refused.errors[0].detail or "")


async def test_a_gateway_holding_only_2_0_keys_refuses_with_a_signed_error_not_a_500(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    pull_profiles_2_0(harness)
    be = await harness.start(BE)
    pair = harness.keys(BE, V2)
    be.runner.app[NODE].pull_server.use_keys(OwnKeys(suites={V2: SuiteKeys(signing=pair, decryption=(pair,))}))
    status, request, content_type, body = await pull(harness, session, be, "p2@ch.test", DEFAULT_MPC)
    assert status == 400 and read_error(harness, V2, request, content_type, body).errors[0].code == "EBMS:0010"


async def test_without_a_key_of_the_partners_suite_a_pull_gets_a_signed_error_not_a_500(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    pull_profiles_2_0(harness)
    be = await harness.start(BE)
    pair = harness.keys(BE)
    only_1_15 = OwnKeys(suites={Suite.EDELIVERY_1_15: SuiteKeys(signing=pair, decryption=(pair,))})
    be.runner.app[NODE].pull_server.use_keys(only_1_15)
    status, request, content_type, body = await pull(harness, session, be, "p3@ch.test", MPC)
    refused = read_error(harness, Suite.EDELIVERY_1_15, request, content_type, body)
    assert status == 500 and refused.errors[0].code == "EBMS:0004"
    assert "the serving gateway cannot sign its answer" in (refused.errors[0].detail or "")
    assert "edelivery-as4-2.0" in (refused.errors[0].detail or "")
