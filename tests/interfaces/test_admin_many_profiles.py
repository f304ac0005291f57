"""The admin API of a running gateway (``create_app``) with many partners: an authority exchanges with up to
~190 countries. Reading the profiles parses each file a few times at most, off the event loop, so /health (and
/as4, on the same loop) keeps answering while an administrator lists them."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.clock import FixedClock
from gateway.interfaces.node import create_app
from gateway.profiles import DevPki, editor, generate_dev_pki, loader
from gateway.profiles.history import sha256_text
from gateway.settings import settings_from_dict
from tests.profiles.conftest import AUTHORITIES, NOW
from tests.profiles.helpers import certificate, default_structlog, profile_text, rsa_key, write_certificate

TOKEN = "many-profiles-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "/api/v1/admin/profiles"
PARTNERS = 60


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES[:1], now=NOW)


def partner_folder(root: Path) -> tuple[Path, Path]:
    """``PARTNERS`` valid profiles, each with its own certificate (all of one key: made in a few milliseconds)."""
    folder, certificates = root / "profiles", root / "certificates"
    folder.mkdir()
    certificates.mkdir()
    for number in range(PARTNERS):
        partner = f"partner-{number:02d}"
        cert = certificate(partner.upper(), key=rsa_key(0), not_before=NOW - timedelta(days=1), days=365)
        write_certificate(certificates / f"{partner}.crt.pem", cert)
        (folder / f"{partner}.yaml").write_text(profile_text(partner, f"{partner}.crt.pem"))
    return folder, certificates


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    folder: Path


@pytest.fixture
async def gateway(tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("MANY_ADMIN_TOKEN", TOKEN)
    folder, certificates = partner_folder(tmp_path)
    own = pki.files_for("BE-FAMHP")
    settings = settings_from_dict(
        {
            "identity": {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"},
            "data_dir": str(tmp_path / "var"),
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
            "keys": {"private_key": str(own.key), "certificate": str(own.certificate)},
            "profiles": {"folder": str(folder), "certificates": str(certificates), "poll_seconds": 60},
            "admin": {"token_env": "MANY_ADMIN_TOKEN"},
        },
        base=tmp_path,
    )
    app = create_app(settings, clock=FixedClock(NOW), watch_outbox=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Gateway(client, folder)


def count_yaml_reads(monkeypatch: pytest.MonkeyPatch, *, pause: float = 0.0) -> Counter[str]:
    """How often each profile file's YAML is parsed, wherever the admin API and the editor parse it; ``pause``
    makes each parse that much slower (a larger folder, a slower disk)."""
    parsed: Counter[str] = Counter()
    real = loader.read_yaml_text

    def counting(text: str, path: Path, *args: Any, **kwargs: Any) -> Any:
        parsed[Path(path).name] += 1
        time.sleep(pause)
        return real(text, path, *args, **kwargs)

    monkeypatch.setattr(loader, "read_yaml_text", counting)
    monkeypatch.setattr(editor, "read_yaml_text", counting)
    return parsed


async def test_listing_many_profiles_parses_each_file_at_most_once(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = count_yaml_reads(monkeypatch)

    async with gateway.client.get(URL, headers=AUTH) as response:
        assert response.status == 200
        listed = (await response.json())["profiles"]

    assert [p["id"] for p in listed] == [f"partner-{n:02d}" for n in range(PARTNERS)]
    assert all(p["active"] and p["etag"] for p in listed)
    assert len(parsed) == PARTNERS and max(parsed.values()) == 1, parsed.most_common(3)
    parsed.clear()
    for path in ("", "/partner-59", "/partner-59/history"):
        async with gateway.client.get(f"{URL}{path}", headers=AUTH) as response:
            assert response.status == 200, path
    assert sum(parsed.values()) == 0, parsed  # no file changed: the ids are known by the files' bytes


async def test_a_file_changed_on_disk_is_parsed_again_and_listed_under_its_new_id(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gateway.client.get(URL, headers=AUTH) as response:
        assert response.status == 200
    parsed = count_yaml_reads(monkeypatch)
    changed = profile_text("partner-new", "partner-00.crt.pem", party="PARTNER-00")
    (gateway.folder / "partner-00.yaml").write_text(changed)

    async with gateway.client.get(URL, headers=AUTH) as response:
        listed = {p["id"]: p for p in (await response.json())["profiles"]}
    async with gateway.client.get(f"{URL}/partner-new", headers=AUTH) as response:
        assert response.status == 200 and await response.text() == changed

    assert "partner-00" not in listed and listed["partner-new"]["etag"] == sha256_text(changed)
    assert parsed == Counter({"partner-00.yaml": 1})


async def test_health_answers_while_many_profiles_are_listed(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe from another thread, as a load balancer's is: it must not wait for the listing."""
    count_yaml_reads(monkeypatch, pause=0.002)
    health = str(gateway.client.make_url("/health"))
    listed = threading.Event()
    answered: list[tuple[float, float]] = []  # (when, after how long)

    def probe() -> None:
        while True:
            asked = time.monotonic()
            with urllib.request.urlopen(health, timeout=60) as answer:
                assert answer.status == 200
            answered.append((time.monotonic(), time.monotonic() - asked))
            if listed.is_set():
                return
            time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    listing = asyncio.create_task(gateway.client.get(URL, headers=AUTH))
    await asyncio.sleep(0)  # the request is under way
    prober.start()
    response = await listing
    done = time.monotonic()
    listed.set()
    await asyncio.to_thread(prober.join, 60)

    assert response.status == 200 and len((await response.json())["profiles"]) == PARTNERS
    during = [wait for when, wait in answered if when < done]
    assert during, answered  # the probes were answered while the listing ran
    assert max(wait for _, wait in answered) < 1.0, answered
