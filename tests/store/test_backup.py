"""``permit-gateway db backup FOLDER``: a consistent copy of a running gateway's SQLite store and of the payload
files it names, from which a gateway starts with every message and its evidence; PostgreSQL gets the payloads and
a pointer to pg_dump."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from gateway.clock import SystemClock
from gateway.interfaces.cli import app
from gateway.interfaces.demo import Running, start_gateway
from gateway.settings import StoreSettings
from gateway.store import MessageStore, create_engine
from gateway.store.backup import BackupError, backup
from tests.e2e.conftest import Harness, example, harness, import_exchanged, session, submit  # noqa: F401

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _backup_of(gateway: Running, folder: Path) -> Path:
    settings = gateway.settings
    backup(settings.store.url, settings.data_dir / "payloads", folder, now=NOW)
    return folder


async def _records(url: str) -> dict[str, tuple[str, str | None]]:
    """Message id -> its payload and wire files (the state moves on in a running gateway)."""
    engine = create_engine(url)
    try:
        store = MessageStore(engine, SystemClock())
        found = await store.recent(limit=500, direction=None, state=None)
    finally:
        await engine.dispose()
    return {r.message_id: (r.payload_sha256, r.wire_sha256) for r in found}


async def test_a_running_gateways_backup_starts_a_gateway_with_every_message_and_payload(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be, _ = await import_exchanged(harness, session)
    status, _ = await submit(
        session,
        be,
        example("BE-IA-2026-0001.xml", today=harness.clock.now()).replace(
            b"BE-IA-2026-0001<", b"BE-IA-2026-0002<"
        ),
    )
    assert status == 202
    folder = _backup_of(be, harness.tmp / "backup-1")

    live = await _records(be.settings.store.url)
    copied = await _records(f"sqlite+aiosqlite:///{folder / 'gateway.db'}")
    assert copied == live and len(live) == 2
    for payload, wire in live.values():
        for sha in (payload, wire):
            assert sha is not None
            file = folder / "payloads" / sha[:2] / sha[2:]
            assert hashlib.sha256(file.read_bytes()).hexdigest() == sha
    manifest = json.loads((folder / "backup.json").read_text())
    assert manifest["store"] == "sqlite" and manifest["payloads"] >= 4 and manifest["damaged_payloads"] == []

    await harness.stop("BE-FAMHP")
    restored = harness.tmp / "restored"
    restored.mkdir()
    (folder / "payloads").rename(restored / "payloads")
    settings = harness.settings(
        "BE-FAMHP", store=StoreSettings(url=f"sqlite+aiosqlite:///{folder / 'gateway.db'}")
    )
    settings = settings.model_copy(update={"data_dir": restored})
    again = await start_gateway("BE", settings, harness.clock)
    harness.running["BE-FAMHP"] = again
    async with session.get(f"{again.url}/api/v1/messages") as response:
        listed = {m["message_id"] for m in (await response.json())["messages"]}
    assert listed == set(live)


async def test_a_backup_taken_while_permits_are_submitted_names_no_payload_it_lacks(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be = await harness.start("BE-FAMHP")
    ia = example("BE-IA-2026-0001.xml", today=harness.clock.now())
    documents = [ia.replace(b"BE-IA-2026-0001<", f"BE-IA-2026-{n:04d}<".encode()) for n in range(100, 130)]

    async def submit_all() -> list[int]:
        return [(await submit(session, be, document))[0] for document in documents]

    submitting = asyncio.create_task(submit_all())
    await asyncio.sleep(0.3)
    folder = await asyncio.to_thread(_backup_of, be, harness.tmp / "backup-2")
    assert set(await submitting) == {202}

    copied = await _records(f"sqlite+aiosqlite:///{folder / 'gateway.db'}")
    assert 0 < len(copied) <= len(documents)
    for payload, wire in copied.values():
        for sha in (payload, wire):
            assert sha is not None and (folder / "payloads" / sha[:2] / sha[2:]).is_file(), sha


def test_a_damaged_payload_is_named_and_left_out_and_a_used_folder_is_refused(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    good = b"<permit/>"
    sha = hashlib.sha256(good).hexdigest()
    (payloads / sha[:2]).mkdir(parents=True)
    (payloads / sha[:2] / sha[2:]).write_bytes(good)
    bad = hashlib.sha256(b"other").hexdigest()
    (payloads / bad[:2]).mkdir()
    (payloads / bad[:2] / bad[2:]).write_bytes(b"bit rot")
    (payloads / sha[:2] / ".incoming-x").write_bytes(b"half")

    report = backup("postgresql+asyncpg://u:p@127.0.0.1/db", payloads, tmp_path / "b", now=NOW)

    assert (report.database, report.payloads, report.damaged) == (None, 1, [bad])
    assert sorted(p.name for p in (tmp_path / "b" / "payloads").rglob("*") if p.is_file()) == [sha[2:]]
    with pytest.raises(BackupError, match="is not an empty folder; a backup goes into a new folder"):
        backup("postgresql+asyncpg://u:p@127.0.0.1/db", payloads, tmp_path / "b", now=NOW)


def test_the_cli_says_what_it_copied_and_what_pg_dump_is_for(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    identity = '[identity]\nparty_id = "AT-BASG"\ncountry = "AT"\nauthority_name = "BASG"\n'
    config.write_text(f'data_dir = "var"\n{identity}[store]\nurl = "postgresql+asyncpg://u:p@127.0.0.1:5432/gw"\n')
    (tmp_path / "var" / "payloads").mkdir(parents=True)

    result = CliRunner().invoke(app, ["db", "backup", str(tmp_path / "b"), "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert "the store is PostgreSQL: back the database up with its own tools first" in result.output
    assert f"backup in {tmp_path / 'b'}: 0 payload files (0 bytes)" in result.output
    result = CliRunner().invoke(app, ["db", "backup", str(tmp_path / "b"), "--config", str(config)])
    assert result.exit_code == 1 and "no backup made in" in result.output
