"""A request body whose Content-Encoding cannot be undone (gzip that is not gzip; an encoding the gateway does not
decode) is refused naming the header and the fix, on a real gateway over loopback: 400 or 415 with a JSON
problem on the REST and admin APIs, an ebMS error signal on /as4 (as a malformed MIME body is), never a 500 with
a traceback in the log."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.conftest import Harness, example, harness  # noqa: F401
from tests.interfaces.test_admin import (  # noqa: F401 (pytest fixtures)
    AUTH,
    CH,
    URL,
    Admin,
    _default_logging,
    api,
    pki,
)

JUNK = b"junk, not gzip at all"
IA = "BE-IA-2026-0001.xml"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """A body sent with chunked transfer encoding: /as4 spools such a body to a file as it comes."""
    yield data


def _no_server_error(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("aiohttp")]
    assert errors == [], [r.getMessage() for r in errors]


async def _post(url: str, data: object, encoding: str, content_type: str = "application/xml") -> tuple[int, str]:
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_document_that_is_not_the_gzip_it_says_is_a_400_naming_the_encoding(
    harness: Harness,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    chunked: bool,
) -> None:
    be = await harness.start("BE-FAMHP")
    status, text = await _post(f"{be.url}/api/v1/documents", _chunks(JUNK) if chunked else JUNK, "gzip")

    assert status == 400, text
    assert "Content-Encoding: gzip" in text
    assert "send the body uncompressed" in text
    _no_server_error(caplog)


async def test_a_document_in_an_encoding_the_gateway_does_not_decode_is_a_415(harness: Harness) -> None:  # noqa: F811
    """aiohttp passes ``x-gzip`` through undecoded: its bytes were taken for the XML and refused as broken XML."""
    be = await harness.start("BE-FAMHP")
    status, text = await _post(
        f"{be.url}/api/v1/documents", gzip.compress(example(IA, today=harness.clock.now())), "x-gzip"
    )

    assert status == 415, text
    assert "Content-Encoding: x-gzip" in text
    assert "does not decode" in text


async def test_a_valid_gzip_document_is_still_taken(harness: Harness) -> None:  # noqa: F811
    be = await harness.start("BE-FAMHP")
    status, text = await _post(
        f"{be.url}/api/v1/documents", gzip.compress(example(IA, today=harness.clock.now())), "gzip"
    )

    assert status == 202, text


async def test_a_retry_reason_that_is_not_gzip_is_a_400(
    harness: Harness,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    be = await harness.start("BE-FAMHP")
    status, text = await _post(f"{be.url}/api/v1/messages/nope@x/retry", JUNK, "gzip", "application/json")

    assert status == 400, text
    assert "Content-Encoding: gzip" in text
    _no_server_error(caplog)


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_as4_request_that_is_not_gzip_gets_an_error_signal(
    harness: Harness,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    chunked: bool,
) -> None:
    """Answered as a malformed MIME body is: an ebMS error (EBMS:0007) the sender's AS4 stack can read."""
    be = await harness.start("BE-FAMHP")
    content_type = 'multipart/related; type="application/soap+xml"; boundary=b'
    status, text = await _post(f"{be.url}/as4", _chunks(JUNK) if chunked else JUNK, "gzip", content_type)

    assert status != 500, text
    assert "EBMS:0007" in text
    assert "Content-Encoding: gzip" in text
    assert "send the body uncompressed" in text
    _no_server_error(caplog)


async def test_an_admin_patch_or_put_that_is_not_gzip_is_a_400(
    api: Admin,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    etag = await api.etag("ch-swissmedic")
    for method, content_type in (("PATCH", "application/merge-patch+json"), ("PUT", "application/yaml")):
        headers = AUTH | {"If-Match": etag, "Content-Type": content_type, "Content-Encoding": "gzip"}
        async with api.client.request(method, f"{URL}/ch-swissmedic", data=JUNK, headers=headers) as response:
            body = await response.json()
            assert response.status == 400, body
        assert "Content-Encoding: gzip" in body["detail"]
        assert "send the body uncompressed" in body["fix"]
    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH
    _no_server_error(caplog)


async def test_a_small_compressed_as4_body_is_spooled_not_inflated_in_memory(harness: Harness) -> None:  # noqa: F811
    """130 KB of gzip on the wire that decodes to 64 MiB: kept in memory because of its size as sent, it took
    twice the decoded size, from a sender not yet known."""
    be = await harness.start("BE-FAMHP")
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)
    content_type = 'multipart/related; type="application/soap+xml"; boundary=b'
    tracemalloc.start()
    try:
        status, text = await _post(f"{be.url}/as4", bomb, "gzip", content_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(bomb) < 1024 * 1024 and status in (400, 413), text
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
