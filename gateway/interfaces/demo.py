"""``permit-gateway demo``: two competent authorities exchange a permit pair over real AS4 on loopback.

Belgium's national system submits an ImportAuthorization to Belgium's gateway; Switzerland's gateway
receives it, and Switzerland's national system answers with the ExportAuthorization that references it.
Each run starts from empty stores (the dev PKI is kept). Everything on the way is the production path: XSD and business rules, gzip, XML-DSig, XML-Enc, the store,
signed receipts with NRI, and delivery to the inbox folder.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from lxml import etree
from rich.console import Console
from rich.table import Table

from gateway.as4 import Suite
from gateway.clock import Clock, SystemClock
from gateway.errors import GatewayError
from gateway.interfaces.node import create_app
from gateway.profiles.devpki import DevAuthority, DevPki, generate_dev_pki
from gateway.profiles.loader import load_profiles
from gateway.settings import Settings, settings_from_dict
from gateway.xmlsafe import parse_xml

AUTHORITIES = (
    DevAuthority(
        party_id="BE-FAMHP", authority_name="Federal Agency for Medicines and Health Products", country="BE"
    ),
    DevAuthority(party_id="CH-SWISSMEDIC", authority_name="Swissmedic", country="CH"),
)
IMPORT_AUTHORIZATION = "BE-IA-2026-0001.xml"
EXPORT_AUTHORIZATION = "CH-EA-2026-0001.xml"
WAIT_SECONDS = 30.0


class DemoFailed(GatewayError):
    """A step of the demo did not verify; the message says which and why."""


@dataclass(slots=True)
class Running:
    """One started gateway: its settings, its runner and its base URL."""

    name: str
    settings: Settings
    runner: web.AppRunner
    url: str

    @property
    def inbox(self) -> Path:
        return self.settings.folders.inbox


def gateway_settings(
    authority: DevAuthority,
    pki: DevPki,
    *,
    port: int,
    data_dir: Path,
    profiles: Path,
    outbound: dict[str, float] | None = None,
) -> Settings:
    files = pki.files_for(authority.party_id)
    folder = data_dir / authority.party_id.lower()
    suite_keys = {
        key: {
            "private_key": str(found.key),
            "certificate": str(found.certificate),
            "agreement_key": str(found.agreement_key),
            "agreement_certificate": str(found.agreement_certificate),
        }
        for key, found in (
            ("edelivery_2_0", files.suites[Suite.EDELIVERY_2_0]),
            ("edelivery_2_0_ecc", files.suites[Suite.EDELIVERY_2_0_ECC]),
        )
    }
    data = {
        "identity": {
            "party_id": authority.party_id,
            "country": authority.country,
            "authority_name": authority.authority_name,
        },
        "http": {"host": "127.0.0.1", "port": port},
        "data_dir": str(folder),
        "keys": {"private_key": str(files.key), "certificate": str(files.certificate), **suite_keys},
        "store": {"url": f"sqlite+aiosqlite:///{folder / 'gateway.db'}"},
        "profiles": {"folder": str(profiles), "certificates": str(pki.folder)},
        "folders": {
            "outbox": str(folder / "outbox"),
            "inbox": str(folder / "inbox"),
            "rejected": str(folder / "rejected"),
        },
        "outbound": outbound or {"sweep_seconds": 5.0, "http_timeout_seconds": 10.0},
    }
    return settings_from_dict(data, base=data_dir)


def write_profiles(
    folder: Path,
    endpoints: Mapping[str, str],
    *,
    extra: str = "",
    pki: DevPki | None = None,
    suites: Mapping[str, Suite] | None = None,
) -> None:
    """One partner profile per demo authority (for tests and benchmarks): its endpoint, its dev certificate,
    and ``extra`` YAML appended to each (for example a ``reception_awareness`` section). ``suites`` (with
    ``pki``) gives a PartyId's profile another security suite than eDelivery AS4 1.15, with the certificates
    of that suite."""
    folder.mkdir(parents=True, exist_ok=True)
    for authority in AUTHORITIES:
        stem = authority.party_id.lower()
        suite = (suites or {}).get(authority.party_id, Suite.EDELIVERY_1_15)
        security = f"security:\n  signing_certificate: {stem}.crt.pem\n"
        if suite is not Suite.EDELIVERY_1_15:
            if pki is None:
                raise ValueError("a profile with a 2.0 suite needs the pki that holds its certificates")
            signing, encryption = pki.files_for(authority.party_id).certificates(suite)
            security = (
                f"security:\n  suite: {suite.value}\n  signing_certificate: {signing.name}\n"
                f"  encryption_certificate: {encryption.name}\n"
            )
        (folder / f"{stem}.yaml").write_text(
            f"id: {stem}\nauthority_name: {authority.authority_name}\ncountry: {authority.country}\n"
            f"party_id: {authority.party_id}\nendpoint: {endpoints[authority.party_id]}\n{security}{extra}"
        )


def listen_ports(profiles: Path, pki: DevPki) -> dict[str, int]:
    """Each demo authority listens where its partners' profiles say its endpoint is."""
    registry = load_profiles(profiles, certificates_dir=pki.folder)
    ports = {}
    for authority in AUTHORITIES:
        endpoint = urlsplit(registry.by_party(authority.party_id).endpoint_url)
        if endpoint.hostname not in ("127.0.0.1", "localhost", "::1") or endpoint.port is None:
            raise DemoFailed(
                f"the demo runs on loopback only; {authority.party_id}'s endpoint is {endpoint.geturl()}"
            )
        ports[authority.party_id] = endpoint.port
    return ports


async def start_gateway(name: str, settings: Settings, clock: Clock) -> Running:
    runner = web.AppRunner(create_app(settings, clock=clock, watch_outbox=False), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise DemoFailed(
            f"{name} gateway cannot listen on {settings.http.host}:{settings.http.port}: {exc}; stop what holds "
            f"that port, or change the port in the endpoint of the {settings.identity.party_id} profile in "
            f"{settings.profiles.folder} (the demo listens where the partner profiles point; 'demo --profiles DIR' "
            "takes a copy of that folder instead)"
        ) from None
    return Running(
        name=name, settings=settings, runner=runner, url=f"http://{settings.http.host}:{settings.http.port}"
    )


def redate(document: bytes, days: int) -> bytes:
    """Shift every date in a document by ``days``, so examples written for one day stay valid on another."""
    if days == 0:
        return document
    root = parse_xml(document, what="example document")
    for element in root.iter(etree.Element):
        text = (element.text or "").strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            element.text = (date.fromisoformat(text) + timedelta(days=days)).isoformat()
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*", text):
            element.text = (datetime.fromisoformat(text) + timedelta(days=days)).isoformat()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(slots=True)
class Exchange:
    """One permit sent from one gateway to the other, and what both sides recorded about it."""

    sender: Running
    receiver: Running
    message_id: str
    document: str
    events: list[tuple[datetime, str, str, str]] = field(default_factory=list)


async def submit(session: aiohttp.ClientSession, gateway: Running, document: bytes) -> dict[str, Any]:
    async with session.post(f"{gateway.url}/api/v1/documents", data=document) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 202:
            raise DemoFailed(f"{gateway.name} refused the document (HTTP {response.status}): {body}")
        return body


async def message(session: aiohttp.ClientSession, gateway: Running, message_id: str) -> dict[str, Any] | None:
    async with session.get(f"{gateway.url}/api/v1/messages/{message_id}") as response:
        if response.status == 404:
            return None
        found: dict[str, Any] = await response.json()
        return found


async def wait_for(
    session: aiohttp.ClientSession, gateway: Running, message_id: str, state: str, timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        last = await message(session, gateway, message_id)
        if last is not None and last["state"] == state:
            return last
        if last is not None and last["state"] in ("FAILED", "REJECTED"):
            break
        await asyncio.sleep(0.05)
    seen = f"state {last['state']} ({last.get('last_error') or 'no error recorded'})" if last else "nothing"
    raise DemoFailed(f"{gateway.name}: message {message_id} did not reach {state}; found {seen}")


STEPS = {
    "submitted": "validated, signed, encrypted, stored",
    "receipt_ok": "signed receipt verified",
    "received": "decrypted, signature verified, stored",
    "accept": "permit validated, signed receipt sent",
    "deliver": "delivered to inbox",
    "send_failed": "send failed, retry scheduled",
}


def _describe(kind: str, detail: dict[str, Any]) -> str:
    text = STEPS.get(kind, kind)
    if kind == "receipt_ok":
        text += (
            f" (attempt {detail.get('attempt')}, HTTP {detail.get('http_status')}, {detail.get('latency_ms')} ms)"
        )
    if kind == "deliver":
        text += f": {detail.get('file')}"
    if kind == "submitted":
        text = f"{detail.get('document_type')} {detail.get('document_number')} " + text
    return text


async def exchange(
    session: aiohttp.ClientSession, sender: Running, receiver: Running, document: bytes, name: str
) -> Exchange:
    submitted = await submit(session, sender, document)
    message_id = submitted["message_id"]
    sent = await wait_for(session, sender, message_id, "ACKNOWLEDGED")
    received = await wait_for(session, receiver, message_id, "DELIVERED")
    result = Exchange(sender=sender, receiver=receiver, message_id=message_id, document=name)
    for gateway, record in ((sender, sent), (receiver, received)):
        for event in record["events"]:
            at = datetime.fromisoformat(event["at"])
            result.events.append((at, gateway.name, _describe(event["kind"], event["detail"]), message_id))
    _check_inbox(receiver, document, received)
    return result


def _check_inbox(receiver: Running, document: bytes, record: dict[str, Any]) -> None:
    delivered = [e for e in record["events"] if e["kind"] == "deliver"]
    path = receiver.inbox / delivered[-1]["detail"]["file"]
    if not path.is_file() or path.read_bytes() != document:
        raise DemoFailed(f"{receiver.name}: {path} does not hold the document that was sent, byte for byte")


def print_timeline(console: Console, exchanges: list[Exchange]) -> None:
    events = sorted(e for x in exchanges for e in x.events)
    start = events[0][0]
    table = Table(title="Permit exchange timeline", show_lines=False, min_width=130)
    for column in ("time (UTC)", "gateway", "step", "message id", "elapsed ms"):
        table.add_column(column, no_wrap=True, justify="right" if column == "elapsed ms" else "left")
    for at, gateway, step, message_id in events:
        elapsed = (at - start).total_seconds() * 1000
        table.add_row(
            at.strftime("%H:%M:%S.%f")[:-3], gateway, step, message_id.split("@")[0][:13] + "…", f"{elapsed:,.0f}"
        )
    console.print(table)


def read_examples(examples: Path, clock: Clock) -> tuple[bytes, bytes]:
    """The import and export authorization, redated from the day in ``as-of.txt`` beside ``examples`` to today."""
    as_of_file = examples.parent / "as-of.txt"
    text = _example(as_of_file).decode("utf-8", errors="replace").strip()
    try:
        as_of = date.fromisoformat(text)
    except ValueError:
        raise DemoFailed(f"{as_of_file} holds {text[:40]!r}, not the examples' date (YYYY-MM-DD)") from None
    shift = (clock.now().astimezone(UTC).date() - as_of).days
    ia, ea = (_example(examples / name) for name in (IMPORT_AUTHORIZATION, EXPORT_AUTHORIZATION))
    return redate(ia, shift), redate(ea, shift)


def _example(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DemoFailed(
            f"cannot read {path}: {exc.strerror or exc}; --examples must name a folder with {IMPORT_AUTHORIZATION} "
            f"and {EXPORT_AUTHORIZATION}, in a folder that holds as-of.txt (as examples/valid does)"
        ) from None


async def run_demo(
    *,
    data_dir: Path,
    profiles: Path,
    examples: Path,
    console: Console,
    keep_running: bool = False,
    clock: Clock | None = None,
) -> int:
    clock = clock or SystemClock()
    started = time.perf_counter()
    for folder, what in ((profiles, "partner profile folder"), (examples, "examples folder")):
        if not folder.is_dir():
            raise DemoFailed(f"{what} {folder} not found; run the demo from the project folder or pass its path")
    ia, ea = read_examples(examples, clock)
    for authority in AUTHORITIES:
        shutil.rmtree(data_dir / authority.party_id.lower(), ignore_errors=True)
    pki = generate_dev_pki(data_dir / "pki", AUTHORITIES, now=clock.now())
    ports = listen_ports(profiles, pki)
    be_settings, ch_settings = (
        gateway_settings(a, pki, port=ports[a.party_id], data_dir=data_dir, profiles=profiles) for a in AUTHORITIES
    )
    be = await start_gateway("BE", be_settings, clock)
    try:
        ch = await start_gateway("CH", ch_settings, clock)
        try:
            console.print(f"Belgium's gateway     {be.url}  (party BE-FAMHP)")
            console.print(f"Switzerland's gateway {ch.url}  (party CH-SWISSMEDIC)")
            async with aiohttp.ClientSession() as session:
                first = await exchange(session, be, ch, ia, IMPORT_AUTHORIZATION)
                second = await exchange(session, ch, be, ea, EXPORT_AUTHORIZATION)
            print_timeline(console, [first, second])
            elapsed = (time.perf_counter() - started) * 1000
            console.print(
                f"[bold green]OK[/]: ImportAuthorization BE→CH and ExportAuthorization CH→BE delivered; every "
                f"signature, digest and signed receipt verified ({elapsed:,.0f} ms in all, data in {data_dir})"
            )
            if keep_running:
                console.print(
                    f"Both gateways keep running: {be.url}/api/v1/messages and {ch.url}/api/v1/messages (Ctrl-C stops)"
                )
                await asyncio.Event().wait()
        finally:
            await ch.runner.cleanup()
    finally:
        await be.runner.cleanup()
    return 0
