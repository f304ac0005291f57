"""The log says where a started gateway listens, and that it stopped: an operator reading it after a restart
could not tell the address, nor whether the last stop was clean."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.e2e.conftest import Harness, harness  # noqa: F401


async def test_started_names_the_address_and_stopped_is_said(harness: Harness) -> None:  # noqa: F811
    port = harness.ports["BE-FAMHP"]
    with capture_logs() as logs:
        await harness.start("BE-FAMHP")
        await harness.stop("BE-FAMHP")

    [started] = [e for e in logs if e["event"] == "gateway started"]
    assert started["listening"] == f"http://127.0.0.1:{port}"
    assert started["as4_url"] == f"http://127.0.0.1:{port}/as4"
    [stopped] = [e for e in logs if e["event"] == "gateway stopped"]
    assert stopped["party"] == "BE-FAMHP" and stopped["node"] == started["node"]
