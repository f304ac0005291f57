"""``profiles ping`` at an endpoint where another party's gateway answers (a profile naming the wrong endpoint):
the ebMS error it sent is shown, code and description, marked unverified, instead of the start of its XML."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.as4 import EbmsCode, EbmsError, KeyPair, build_error_signal
from gateway.clock import FixedClock
from gateway.outbound.ping import PingResult, Stage, ping
from gateway.profiles import DevPki, PartnerProfile, generate_dev_pki
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.model import Security
from gateway.profiles.trust import load_key_pair, partner_of
from gateway.settings import IdentitySettings
from tests.profiles.conftest import AUTHORITIES, NOW
from tests.profiles.helpers import default_structlog

US = IdentitySettings(party_id="BE-FAMHP", country="BE", authority_name="FAMHP")
REFUSAL = (
    "From PartyId 'BE-FAMHP': no partner profile with PartyId 'BE-FAMHP' of type "
    "urn:oasis:names:tc:ebcore:partyid-type:unregistered; known PartyIds: CH-SWISSMEDIC"
)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


def keys_of(pki: DevPki, party_id: str) -> KeyPair:
    files = pki.files_for(party_id)
    return load_key_pair(files.key, files.certificate, None, now=NOW)


@pytest.fixture
async def refusing_gateway(pki: DevPki, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """An endpoint answering as another gateway does to a sender it has no profile of: an EBMS:0010 error
    signal, signed with that gateway's key (``request.param``: whose), or unsigned (None)."""
    signer: str | None = request.param
    key = None if signer is None else keys_of(pki, signer)

    async def refuse(_: web.Request) -> web.Response:
        error = EbmsError(EbmsCode.PROCESSING_MODE_MISMATCH, REFUSAL)
        signal = build_error_signal(error, key=key, message_id=f"{uuid.uuid4()}@other.test", now=NOW)
        return web.Response(
            status=signal.http_status, body=signal.body, headers={"Content-Type": signal.content_type}
        )

    app = web.Application()
    app.router.add_post("/as4", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/as4"
    await server.close()


async def ping_ch_at(endpoint: str, pki: DevPki) -> PingResult:
    profile = PartnerProfile(
        id="ch-swissmedic",
        authority_name="Swissmedic",
        country="CH",
        party_id="CH-SWISSMEDIC",
        endpoint=endpoint,
        security=Security(signing_certificate=pki.files_for("CH-SWISSMEDIC").certificate),
    )
    async with aiohttp.ClientSession() as session:
        return await ping(
            partner_of(profile, now=NOW),
            identity=US,
            keys=OwnKeys.single(keys_of(pki, "BE-FAMHP")),
            session=session,
            clock=FixedClock(NOW),
            timeout=5.0,
        )


@pytest.mark.parametrize("refusing_gateway", ["BE-FAMHP", "DE-BFARM"], indirect=True)
async def test_an_error_signed_by_another_gateway_is_shown_unverified(refusing_gateway: str, pki: DevPki) -> None:
    result = await ping_ch_at(refusing_gateway, pki)

    assert not result.ok
    assert result.stage is Stage.HTTP and result.http_status is not None and result.http_status >= 400
    assert result.error_codes == ("EBMS:0010",)
    assert result.detail.startswith(f"HTTP {result.http_status} ")
    assert f"EBMS:0010 ProcessingModeMismatch: {REFUSAL} (unverified: " in result.detail
    assert "<?xml" not in result.detail, result.detail


@pytest.mark.parametrize("refusing_gateway", [None], indirect=True)
async def test_an_unsigned_error_is_marked_unverified(refusing_gateway: str, pki: DevPki) -> None:
    result = await ping_ch_at(refusing_gateway, pki)

    assert result.error_codes == ("EBMS:0010",)
    assert REFUSAL in result.detail and "unverified" in result.detail
