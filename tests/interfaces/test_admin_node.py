"""The running gateway (``create_app``): profile changes through the admin API and the folder, and a key
rollover made with the CLI, all take effect without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.as4 import Suite
from gateway.clock import FixedClock
from gateway.interfaces import admin
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.interfaces.node import Node, create_app
from gateway.profiles import DevPki, generate_dev_pki
from gateway.profiles.editor import ProfileEditor
from gateway.profiles.keystore import generate_key, import_key, rollover, subject_name
from gateway.profiles.metrics import REGISTRY
from gateway.profiles.model import Tls
from gateway.settings import settings_from_dict
from gateway.store import Direction, NewMessage
from tests.profiles.conftest import AUTHORITIES, NOW
from tests.profiles.helpers import default_structlog, profile_text

TOKEN = "node-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSPHRASE = "node-keystore-passphrase"
URL = "/api/v1/admin/profiles"
CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    folder: Path
    keystore: Path

    @property
    def node(self) -> Node:
        return self.client.app[NODE]


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def gateway(tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("TEST_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_KEYSTORE_PASSPHRASE", PASSPHRASE)
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    keystore = tmp_path / "keystore"
    files = pki.files_for("BE-FAMHP")
    import_key(
        keystore,
        PASSPHRASE.encode(),
        key_file=files.key,
        certificate_file=files.certificate,
        key_passphrase=None,
        now=NOW,
    )
    settings = settings_from_dict(
        {
            "identity": {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"},
            "data_dir": str(tmp_path / "var"),
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
            "keys": {"keystore": str(keystore), "passphrase_env": "TEST_KEYSTORE_PASSPHRASE"},
            "profiles": {"folder": str(folder), "certificates": str(pki.folder), "poll_seconds": 0.05},
            "admin": {"token_env": "TEST_ADMIN_TOKEN"},
        },
        base=tmp_path,
    )
    app = create_app(settings, clock=FixedClock(NOW), watch_outbox=False)
    app.router.add_routes(admin.routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Gateway(client, folder, keystore)


def services_use(node: Node, expected: object) -> bool:
    return (
        node.partners is expected
        and node.submitter._partners is expected
        and node.dispatcher._partners is expected
        and node.receiver._partners is expected
    )


async def test_admin_edit_swaps_the_partners_of_every_service(gateway: Gateway) -> None:
    before = gateway.node.partners
    etag = (await gateway.client.get(f"{URL}/ch-swissmedic", headers=AUTH)).headers["ETag"]
    changed = CH.replace("https://as4.ch-swissmedic.example/as4", "https://moved.example/as4")

    response = await gateway.client.put(f"{URL}/ch-swissmedic", data=changed, headers=AUTH | {"If-Match": etag})

    assert response.status == 200 and (await response.json())["active"] is True
    node = gateway.node
    assert node.partners is not before
    assert node.partners.get("ch-swissmedic").profile.endpoint == "https://moved.example/as4"
    assert services_use(node, node.partners)


async def test_folder_change_is_picked_up_and_a_broken_one_refused(gateway: Gateway) -> None:
    (gateway.folder / "de-bfarm.yaml").write_text(profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE"))
    await eventually(lambda: "de-bfarm" in gateway.node.partners.registry)
    assert services_use(gateway.node, gateway.node.partners)
    good = gateway.node.partners

    (gateway.folder / "de-bfarm.yaml").write_text("id: de-bfarm\ncountry: Deutschland\n")
    listing: dict[str, object] = {}

    async def refused() -> bool:
        listing.update(await (await gateway.client.get(URL, headers=AUTH)).json())
        return listing["last_refusal"] is not None

    for _ in range(250):
        if await refused():
            break
        await asyncio.sleep(0.02)
    assert gateway.node.partners is good
    assert any("country: got 'Deutschland'" in line for line in listing["last_refusal"])  # type: ignore[attr-defined]


async def test_key_rollover_with_the_cli_reaches_the_running_node(gateway: Gateway) -> None:
    old = gateway.node.keys.signing.certificate
    subject = subject_name("BE-FAMHP", "FAMHP", "BE")
    upcoming = generate_key(gateway.keystore, PASSPHRASE.encode(), subject=subject, now=NOW)
    await eventually(lambda: len(gateway.node.keys.decryption[Suite.EDELIVERY_1_15]) == 2)

    rollover(gateway.keystore, PASSPHRASE.encode(), now=NOW)

    await eventually(lambda: gateway.node.keys.signing.certificate == upcoming.certificate)
    node = gateway.node
    assert [k.certificate for k in node.keys.decryption[Suite.EDELIVERY_1_15]] == [upcoming.certificate, old]
    assert node.submitter._keys is node.keys
    assert node.receiver._keys is node.keys


async def test_expiry_is_checked_at_start(gateway: Gateway) -> None:
    labels = {"owner": "ch-swissmedic", "purpose": "signing", "subject": "C=CH,O=Swissmedic,CN=CH-SWISSMEDIC"}
    assert REGISTRY.get_sample_value("permit_gateway_certificate_expiry_days", labels) == 730
    own = {
        "owner": "self",
        "purpose": "current",
        "subject": gateway.node.keys.signing.certificate.subject.rfc4514_string(),
    }
    assert REGISTRY.get_sample_value("permit_gateway_certificate_expiry_days", own) == 730


async def test_retiring_a_partner_with_messages_on_their_way_needs_force(gateway: Gateway) -> None:
    waiting = NewMessage(
        direction=Direction.OUTBOUND,
        message_id="m-1@be-famhp.test",
        conversation_id="c-1",
        partner_id="ch-swissmedic",
        from_party="BE-FAMHP",
        to_party="CH-SWISSMEDIC",
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        payload_sha256="0" * 64,
        payload_mime_type="application/xml",
        next_attempt_at=NOW + timedelta(days=1),
    )
    await gateway.node.store.add(waiting)
    etag = (await gateway.client.get(f"{URL}/ch-swissmedic", headers=AUTH)).headers["ETag"]

    refused = await gateway.client.delete(f"{URL}/ch-swissmedic", headers=AUTH | {"If-Match": etag})

    assert refused.status == 409
    assert "1 message(s) to 'ch-swissmedic' are still on their way" in (await refused.json())["error"]
    assert "ch-swissmedic" in gateway.node.partners.registry
    forced = await gateway.client.delete(f"{URL}/ch-swissmedic?force=true", headers=AUTH | {"If-Match": etag})
    assert forced.status == 200
    assert "ch-swissmedic" not in gateway.node.partners.registry


async def test_edit_with_a_time_to_live_not_below_the_duplicate_window_is_refused(gateway: Gateway) -> None:
    before = gateway.node.partners
    etag = (await gateway.client.get(f"{URL}/ch-swissmedic", headers=AUTH)).headers["ETag"]
    patch = {"reception_awareness": {"time_to_live_hours": 720}}  # the default [inbound] window is 720 hours

    refused = await gateway.client.patch(f"{URL}/ch-swissmedic", json=patch, headers=AUTH | {"If-Match": etag})

    assert refused.status == 422
    [error] = (await refused.json())["errors"]
    assert "in the edited ch-swissmedic.yaml (not saved), line 12 column 3 reception_awareness.time_to_live_hours: time_to_live_hours = 720 is not below" in error
    assert "[inbound].duplicate_window_hours = 720" in error
    assert (gateway.folder / "ch-swissmedic.yaml").read_text() == CH
    assert gateway.node.partners is before

    patch = {"reception_awareness": {"time_to_live_hours": 719}}
    accepted = await gateway.client.patch(f"{URL}/ch-swissmedic", json=patch, headers=AUTH | {"If-Match": etag})
    assert accepted.status == 200
    assert gateway.node.partners.get("ch-swissmedic").profile.reception_awareness.time_to_live_hours == 719


async def test_a_slow_profile_edit_and_reload_do_not_stall_the_other_requests(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validating and loading many partners' profiles and certificates takes a while; it happens in a worker
    thread, so the AS4 endpoint and the API keep answering meanwhile."""
    from gateway.profiles import watcher as watcher_module

    slow = 0.6
    real_load, real_validate = watcher_module.load_profile_folder, ProfileEditor._validate

    def slow_load(*args: Any, **kw: Any) -> Any:
        time.sleep(slow)
        return real_load(*args, **kw)

    def slow_validate(self: ProfileEditor, *args: Any, **kw: Any) -> Any:
        time.sleep(slow)
        return real_validate(self, *args, **kw)

    monkeypatch.setattr(watcher_module, "load_profile_folder", slow_load)
    monkeypatch.setattr(ProfileEditor, "_validate", slow_validate)
    etag = (await gateway.client.get(f"{URL}/ch-swissmedic", headers=AUTH)).headers["ETag"]
    changed = CH.replace("https://as4.ch-swissmedic.example/as4", "https://moved.example/as4")
    started = time.monotonic()
    edit = asyncio.create_task(
        gateway.client.put(f"{URL}/ch-swissmedic", data=changed, headers=AUTH | {"If-Match": etag})
    )
    await asyncio.sleep(0.1)
    waits = []
    while not edit.done():
        asked = time.monotonic()
        async with gateway.client.get("/health") as health:
            assert health.status == 200
        waits.append(time.monotonic() - asked)
        await asyncio.sleep(0.05)
    response = await edit
    assert response.status == 200 and (await response.json())["active"] is True
    assert time.monotonic() - started >= 2 * slow  # validated by the editor, then loaded by the watcher
    assert len(waits) >= 5 and max(waits) < slow / 2, waits
    assert gateway.node.partners.get("ch-swissmedic").profile.endpoint == "https://moved.example/as4"


async def test_a_reload_drops_the_tls_contexts_so_a_replaced_ca_bundle_is_read_again(
    gateway: Gateway, pki: DevPki, tmp_path: Path
) -> None:
    bundle = tmp_path / "partner-ca.pem"
    bundle.write_bytes(pki.ca_certificate.read_bytes())
    tls = Tls(ca_bundle=bundle)
    node = gateway.node
    sending, pulling = node.dispatcher._tls, node.puller._tls
    first = sending.get(tls)
    assert first is not None and sending.get(tls) is first and pulling.get(tls) is not None
    other_ca = generate_dev_pki(tmp_path / "other", AUTHORITIES[:1], now=NOW).ca_certificate
    bundle.write_bytes(other_ca.read_bytes())  # the administrator replaces the bundle under the same path

    assert gateway.client.app[PROFILE_WATCHER].reload("test: the CA bundle changed")

    again = sending.get(tls)
    assert again is not None and again is not first
    assert [c["serialNumber"] for c in again.get_ca_certs()] != [c["serialNumber"] for c in first.get_ca_certs()]
    assert pulling.get(tls) is not None
