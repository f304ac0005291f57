"""Two real gateways (Belgium, Switzerland) on loopback ports, with a dev PKI and profiles made for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.as4 import ROLE_INITIATOR, ROLE_RESPONDER, KeyPair, Party, PartyId, Suite, UserMessage
from gateway.clock import FixedClock
from gateway.documents import PERMITS_SERVICE
from gateway.interfaces.demo import AUTHORITIES, Running, gateway_settings, start_gateway, write_profiles
from gateway.interfaces.keys import NODE
from gateway.profiles.certificates import load_certificate, load_private_key
from gateway.profiles.devpki import DevPki
from gateway.profiles.suitekeys import suite_pair
from gateway.profiles.trust import load_key_pair
from gateway.settings import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
RETRIES = "reception_awareness:\n  retries: 3\n  retry_delays_seconds: [60, 120]\n"
EXAMPLES = ROOT / "examples"


@dataclass
class Harness:
    tmp: Path
    pki: DevPki
    clock: FixedClock
    ports: dict[str, int]
    running: dict[str, Running]
    profile_folders: dict[str, Path] = field(default_factory=dict)
    """A gateway's own profile folder (by party id); without one, the shared ``tmp/profiles``."""

    def settings(self, party_id: str, **sections: Any) -> Settings:
        """The test settings of ``party_id``'s gateway, with whole ``sections`` replaced (``store=...``)."""
        authority = next(a for a in AUTHORITIES if a.party_id == party_id)
        settings = gateway_settings(
            authority,
            self.pki,
            port=self.ports[party_id],
            data_dir=self.tmp / "data",
            profiles=self.profile_folders.get(party_id, self.tmp / "profiles"),
        )
        return settings.model_copy(update=sections)

    async def start(self, party_id: str, **sections: Any) -> Running:
        gateway = await start_gateway(party_id[:2], self.settings(party_id, **sections), self.clock)
        self.running[party_id] = gateway
        return gateway

    async def stop(self, party_id: str) -> None:
        gateway = self.running.pop(party_id)
        await gateway.runner.cleanup()

    def keys(self, party_id: str, suite: Suite = Suite.EDELIVERY_1_15) -> KeyPair:
        files = self.pki.files_for(party_id)
        if suite is Suite.EDELIVERY_1_15:
            return load_key_pair(files.key, files.certificate, None, now=self.clock.now())
        found = files.suites[suite]
        return suite_pair(
            suite,
            load_private_key(found.key, None),
            load_certificate(found.certificate),
            load_private_key(found.agreement_key, None),
            load_certificate(found.agreement_certificate),
            what=f"{party_id} {suite.value} dev keys",
        )

    def use_suites(self, suites: dict[str, Suite]) -> None:
        """Rewrite the profiles before the gateways start: ``suites`` maps a PartyId to the suite of its profile
        (what the other gateway expects of it and sends it)."""
        endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in self.ports.items()}
        write_profiles(self.tmp / "profiles", endpoints, extra=RETRIES, pki=self.pki, suites=suites)


@pytest.fixture
async def harness(tmp_path: Path, pki: DevPki) -> AsyncIterator[Harness]:
    ports = {a.party_id: free_port() for a in AUTHORITIES}
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in ports.items()}
    write_profiles(profiles, endpoints, extra=RETRIES)
    harness = Harness(tmp=tmp_path, pki=pki, clock=FixedClock(datetime.now(UTC)), ports=ports, running={})
    yield harness
    for party_id in list(harness.running):
        await harness.stop(party_id)


@dataclass
class StoreOutage:
    """A gateway's SQLite database in a folder of its own, which ``cut`` takes away (a database that cannot be
    opened: SQLite's 'unable to open database file') and ``restore`` puts back."""

    folder: Path
    gateway: Running | None = None

    @property
    def away(self) -> Path:
        return self.folder.with_name(f"{self.folder.name}-away")

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.folder / 'gateway.db'}"

    async def cut(self) -> None:
        assert self.gateway is not None
        await self.gateway.runner.app[NODE].store.engine.dispose()  # the pooled connection goes; no new one opens
        self.folder.rename(self.away)

    def restore(self) -> None:
        self.away.rename(self.folder)


@pytest.fixture
def store_outage(harness: Harness) -> Iterator[StoreOutage]:
    """Put back at the end of the test, before the harness stops the gateway."""
    outage = StoreOutage(harness.tmp / "database")
    yield outage
    if outage.away.exists():
        outage.restore()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def example(name: str, *, today: datetime, folder: str = "valid") -> bytes:
    """An example permit, re-dated from the day the examples were written for to ``today``."""
    from datetime import date

    from gateway.interfaces.demo import redate

    as_of = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
    return redate((EXAMPLES / folder / name).read_bytes(), (today.date() - as_of).days)


async def submit(session: aiohttp.ClientSession, gateway: Running, data: Any, query: str = "") -> tuple[int, Any]:
    """POST a permit (bytes, or a form with supporting documents) to the submission API: (status, JSON)."""
    async with session.post(f"{gateway.url}/api/v1/documents{query}", data=data) as response:
        return response.status, await response.json()


async def import_exchanged(harness: Harness, session: aiohttp.ClientSession) -> tuple[Running, Running]:
    """Both gateways started, and Belgium's ImportAuthorization delivered to Switzerland."""
    from gateway.interfaces.demo import exchange

    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")
    ia = "BE-IA-2026-0001.xml"
    await exchange(session, be, ch, example(ia, today=harness.clock.now()), ia)
    return be, ch


async def remaining_base_grams(session: aiohttp.ClientSession, gateway: Running) -> list[str]:
    """What is left on each line of BE-IA-2026-0001, as ``gateway`` has it."""
    async with session.get(f"{gateway.url}/api/v1/permits/ImportAuthorization/BE/BE-IA-2026-0001") as response:
        return [line["remaining_base_grams"] for line in (await response.json())["lines"]]


async def metric(session: aiohttp.ClientSession, gateway: Running, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on ``gateway``'s /metrics whose labels include ``labels`` (the registry
    is the process's: compare before and after)."""
    async with session.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


UNREGISTERED = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"


def permit_user_message(harness: Harness, message_id: str, **changes: str) -> UserMessage:
    """An ImportAuthorization's UserMessage from Belgium to Switzerland, built by hand as a partner would."""
    fields: dict[str, object] = {
        "message_id": message_id,
        "timestamp": harness.clock.now(),
        "from_party": Party(party_ids=(PartyId(value="BE-FAMHP", type=UNREGISTERED),), role=ROLE_INITIATOR),
        "to_party": Party(party_ids=(PartyId(value="CH-SWISSMEDIC", type=UNREGISTERED),), role=ROLE_RESPONDER),
        "service": PERMITS_SERVICE,
        "action": "ImportAuthorization",
        "conversation_id": "c-1",
    }
    return UserMessage(**(fields | changes))  # type: ignore[arg-type]
