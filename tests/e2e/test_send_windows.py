"""Partners that take requests and never answer (a firewall black-holing them, a hung gateway) do not fill the
node's send slots ([outbound].max_in_flight): each partner's lane starts with two messages in flight and falls
back to one after a time-out, so a healthy partner's messages do not wait for the hung ones' time-outs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from gateway.interfaces.demo import AUTHORITIES, wait_for
from gateway.profiles.devpki import DevAuthority, DevPki, generate_dev_pki
from gateway.settings import OutboundSettings
from tests.conftest import serving
from tests.e2e.conftest import Harness, example, submit
from tests.e2e.test_partner_lanes import IA, SilentPartner

HUNG = [("DE", "DE-BFARM"), ("FR", "FR-ANSM"), ("NL", "NL-CBG"), ("IT", "IT-AIFA")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """The demo's authorities and four more, each with its own key (one certificate is pinned for one partner)."""
    extra = [DevAuthority(party_id=party, authority_name=party, country=country) for country, party in HUNG]
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), (*AUTHORITIES, *extra), now=datetime.now(UTC))


def add_profile(harness: Harness, country: str, party: str, endpoint: str, extra: str = "") -> str:
    stem = party.lower()
    (harness.tmp / "profiles" / f"{stem}.yaml").write_text(
        f"id: {stem}\nauthority_name: {party}\ncountry: {country}\nparty_id: {party}\n"
        f"endpoint: {endpoint}\nsecurity:\n  signing_certificate: {stem}.crt.pem\n{extra}"
    )
    return stem


def numbered(harness: Harness, n: int, exporter: str) -> bytes:
    """An import from ``exporter``: a permit goes only to its trade's other country."""
    document = example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())
    return document.replace(b"<ExportingCountry>CH<", f"<ExportingCountry>{exporter}<".encode()).replace(
        b"<CountryCode>CH<", f"<CountryCode>{exporter}<".encode()
    )


async def test_four_partners_that_never_answer_do_not_make_a_healthy_one_wait_for_their_time_outs(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    time_out = 10.0  # the default limits (16 per partner, 64 in all): four hung partners could fill every slot
    hung = [SilentPartner() for _ in HUNG]
    servers = [serving("/as4", partner.handle) for partner in hung]
    for partner, server in zip(hung, servers, strict=True):
        partner.url = await server.__aenter__()
    try:
        for (country, party), partner in zip(HUNG, hung, strict=True):
            add_profile(harness, country, party, partner.url, "reception_awareness:\n  retry_delays_seconds: [600]\n")
        be = await harness.start("BE-FAMHP", outbound=OutboundSettings(http_timeout_seconds=time_out))
        await harness.start("CH-SWISSMEDIC")
        jobs = [
            submit(session, be, numbered(harness, 100 + 20 * i + k, country), f"?partner={party.lower()}")
            for i, (country, party) in enumerate(HUNG)
            for k in range(17)
        ]
        for status, body in await asyncio.gather(*jobs):
            assert status == 202, body
        while not all(partner.waiting >= 2 for partner in hung):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for more POSTs to the hung partners, had their lanes more
        first_hung = min(partner.arrival_times[0] for partner in hung)
        assert time.monotonic() - first_hung < time_out / 2, "the set-up took too long to show anything"

        status, body = await submit(session, be, example(IA, today=harness.clock.now()))
        assert status == 202, body
        await wait_for(session, be, body["message_id"], "ACKNOWLEDGED", timeout=3 * time_out)
        acknowledged = time.monotonic() - first_hung
        waiting = [partner.waiting for partner in hung]

        assert acknowledged < time_out, (
            f"Switzerland's permit waited for the hung partners' time-outs: acknowledged {acknowledged:.1f} s after "
            f"their first POST (time-out {time_out:g} s); POSTs waiting at them: {waiting}"
        )
        assert [partner.most_waiting for partner in hung] == [2, 2, 2, 2], "each lane starts with two in flight"
    finally:
        for partner in hung:
            partner.release.set()
        for server in servers:
            await server.__aexit__(None, None, None)


async def test_a_partner_that_timed_out_gets_one_message_at_a_time(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    time_out = 1.0
    silent = SilentPartner()
    async with serving("/as4", silent.handle) as silent.url:
        add_profile(harness, "DE", "DE-BFARM", silent.url, "reception_awareness:\n  retry_delays_seconds: [600]\n")
        be = await harness.start("BE-FAMHP", outbound=OutboundSettings(http_timeout_seconds=time_out))
        sent = []
        for n in range(101, 105):
            status, body = await submit(session, be, numbered(harness, n, "DE"), "?partner=de-bfarm")
            assert status == 202, body
            sent.append(body["message_id"])
        for message_id in sent:
            await wait_for(session, be, message_id, "RETRY_WAIT", timeout=10)
        silent.release.set()

    # two at first; once they timed out, one at a time, each after the one before it timed out
    assert silent.most_waiting == 2, silent.arrival_times
    first, second, third, fourth = silent.arrival_times
    assert second - first < time_out / 2
    assert third - first > time_out * 0.8 and fourth - third > time_out * 0.8
