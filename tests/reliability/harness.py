"""Real gateway processes (``permit-gateway serve``) for crash and multi-node tests: start, kill -9, restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.interfaces import demo
from gateway.interfaces.demo import AUTHORITIES
from gateway.profiles.devpki import DevPki

ROOT = Path(__file__).resolve().parents[2]
IA_EXAMPLE = ROOT / "examples" / "valid" / "BE-IA-2026-0001.xml"
READY_SECONDS = 30.0


def toml(data: dict[str, Any]) -> str:
    """Just enough TOML for gateway configs: one level of tables, strings, numbers and inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + " }"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def write_profiles(
    folder: Path, ports: dict[str, int], *, retries: int = 40, delays: tuple[float, ...] = (0.5, 1.0)
) -> None:
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in ports.items()}
    extra = (
        f"reception_awareness:\n  retries: {retries}\n  retry_delays_seconds: {list(delays)}\n"
        "  time_to_live_hours: 1\n"
    )
    demo.write_profiles(folder, endpoints, extra=extra)


@dataclass
class GatewayProcess:
    """One ``permit-gateway serve`` process; ``kill`` is SIGKILL, as a crash."""

    name: str
    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [str(Path(sys.executable).with_name("permit-gateway")), "serve", "--config", str(self.config)]
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [*command, "--log-level", "WARNING"], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.starts += 1

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                async with session.get(f"{self.url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not become ready:\n{self.log.read_text()[-3000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class World:
    """Gateways of the demo authorities as processes, with their configs under one folder."""

    root: Path
    pki: DevPki
    processes: dict[str, GatewayProcess] = field(default_factory=dict)

    def add(
        self,
        name: str,
        party_id: str,
        *,
        port: int,
        store_url: str | None = None,
        data: str | None = None,
        faults: dict[str, float] | None = None,
        lease_seconds: float = 3.0,
        http_timeout: float = 3.0,
        profiles: Path | None = None,
    ) -> GatewayProcess:
        authority = next(a for a in AUTHORITIES if a.party_id == party_id)
        files = self.pki.files_for(party_id)
        folder = self.root / (data or party_id.lower())
        config = {
            "data_dir": str(folder),
            "identity": {
                "party_id": party_id,
                "country": authority.country,
                "authority_name": authority.authority_name,
            },
            "http": {"host": "127.0.0.1", "port": port},
            "keys": {"private_key": str(files.key), "certificate": str(files.certificate)},
            "store": {"url": store_url or f"sqlite+aiosqlite:///{folder / 'gateway.db'}"},
            "profiles": {"folder": str(profiles or self.root / "profiles"), "certificates": str(self.pki.folder)},
            "folders": {
                "outbox": str(folder / "outbox"),
                "inbox": str(folder / "inbox"),
                "rejected": str(folder / "rejected"),
            },
            "outbound": {
                "sweep_seconds": 0.5,
                "http_timeout_seconds": http_timeout,
                "lease_seconds": lease_seconds,
            },
            "faults": {"crash": faults or {}},
        }
        path = self.root / f"{name}.toml"
        path.write_text(toml(config))
        process = GatewayProcess(name=name, config=path, port=port, log=self.root / f"{name}.log")
        self.processes[name] = process
        return process

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.stop()


def import_authorization(number: int) -> bytes:
    """The example ImportAuthorization under its own document number, dated to today."""
    from datetime import UTC, date, datetime

    from gateway.interfaces.demo import redate

    as_of = date.fromisoformat((ROOT / "examples" / "as-of.txt").read_text().strip())
    shift = (datetime.now(UTC).date() - as_of).days
    text = IA_EXAMPLE.read_bytes().replace(b"BE-IA-2026-0001", f"BE-IA-2026-{number:05d}".encode())
    return redate(text, shift)


async def submit(
    session: aiohttp.ClientSession, gateway: GatewayProcess, document: bytes, statuses: Counter[int] | None = None
) -> str | None:
    """The MessageId when the gateway acknowledged the submission (202, or 200 for a document submitted before
    whose answer was lost), None when it was down or crashed."""
    try:
        async with session.post(f"{gateway.url}/api/v1/documents", data=document) as response:
            if statuses is not None:
                statuses[response.status] += 1
            if response.status in (200, 202):
                body = await response.json()
                return str(body["message_id"])
            raise AssertionError(f"submission refused: HTTP {response.status} {await response.text()}")
    except (aiohttp.ClientError, TimeoutError):
        return None


async def messages(
    session: aiohttp.ClientSession, gateway: GatewayProcess, direction: str
) -> list[dict[str, Any]]:
    async with session.get(
        f"{gateway.url}/api/v1/messages", params={"direction": direction, "limit": "500"}
    ) as response:
        body = await response.json()
        return list(body["messages"])


def inbox_message_ids(inbox: Path) -> list[str]:
    import json

    return [
        json.loads(p.read_text())["message_id"] for p in sorted(inbox.glob("*.json")) if not p.name.startswith(".")
    ]


def xml_files(inbox: Path) -> list[Path]:
    return [p for p in inbox.glob("*.xml") if re.match(r"^[^.]", p.name)]
