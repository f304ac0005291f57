"""The folders the outbox writes to, on real gateways over loopback: an outbox or rejected folder that cannot be
one stops the start before anything runs, naming the setting, the path and the fix; one that stops being a
folder later makes /ready fail and its failed moves are logged once per file, with the reason, without a
traceback; and what the gateway writes beside a national system's file (why it was refused, what became of it)
is readable by another account, as the file is."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.errors import ConfigError
from gateway.interfaces import folder
from gateway.interfaces.node import create_app
from gateway.settings import FolderSettings, Settings
from tests.e2e.conftest import Harness, example, harness  # noqa: F401

IA = "BE-IA-2026-0001.xml"
NOBODY = "65534"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder another account can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="outbox-folders-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _settings(harness: Harness, root: Path, **folders: Path) -> Settings:  # noqa: F811
    found = {"outbox": root / "outbox", "inbox": root / "inbox", "rejected": root / "rejected"} | folders
    return harness.settings("BE-FAMHP", folders=FolderSettings(**found))


async def _started(settings: Settings) -> web.AppRunner:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http.host, settings.http.port).start()
    return runner


async def test_an_outbox_that_is_a_file_stops_the_start_before_anything_runs(
    harness: Harness,  # noqa: F811
    shared: Path,
) -> None:
    (shared / "afile").write_text("not a folder")
    runner = web.AppRunner(create_app(_settings(harness, shared, outbox=shared / "afile")))

    with capture_logs() as logs, pytest.raises(ConfigError) as refused:
        await runner.setup()
    await runner.cleanup()

    assert str(refused.value).endswith(
        f"[folders].outbox names a file, not a folder: {shared / 'afile'}; fix: set [folders].outbox in the "
        "configuration to a folder (it is created when missing), or move that file away"
    )
    assert [entry["event"] for entry in logs] == []  # no "gateway started", no job cancelled part way


async def test_a_rejected_folder_through_a_file_stops_the_start_naming_the_setting(
    harness: Harness,  # noqa: F811
    shared: Path,
) -> None:
    (shared / "afile").write_text("not a folder")
    runner = web.AppRunner(create_app(_settings(harness, shared, rejected=shared / "afile" / "rejected")))

    with pytest.raises(ConfigError) as refused:
        await runner.setup()
    await runner.cleanup()

    text = str(refused.value)
    assert f"[folders].rejected goes through {shared / 'afile'}, a file, not a folder" in text
    assert str(shared / "afile" / "rejected") in text and "fix: set [folders].rejected" in text


async def test_a_rejected_folder_that_stops_being_one_fails_ready_and_its_moves_are_logged_once(
    harness: Harness,  # noqa: F811
    shared: Path,
) -> None:
    settings = _settings(harness, shared)
    runner = await _started(settings)
    try:
        url = f"http://{settings.http.host}:{settings.http.port}/ready"
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            assert answer.status == 200, await answer.text()
        rejected = settings.folders.rejected
        rejected.rmdir()
        rejected.write_text("a file where the rejected folder was")
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            body = await answer.json()
        assert answer.status == 503
        assert {"check": "folders", "error": "[folders].rejected names a file, not a folder"} | {
            "fix": "set [folders].rejected in the configuration to a folder (it is created when missing), or move "
            "that file away"
        } in body["problems"]

        (settings.folders.outbox / "broken.xml").write_bytes(b"<not-a-permit/>")
        with capture_logs() as logs:
            for _ in range(3):
                await folder.scan(runner.app)
        failed = [entry for entry in logs if entry["log_level"] == "error"]
        assert len(failed) == 1, logs
        assert "cannot be moved to the rejected folder" in failed[0]["event"]
        assert "exc_info" not in failed[0]
        assert "broken.xml was not sent" in failed[0]["reason"]
        assert "[folders].rejected names a file, not a folder" in failed[0]["fix"]
    finally:
        await runner.cleanup()


def _read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "cat", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


async def test_another_account_can_read_why_its_file_was_refused_and_what_became_of_a_sent_one(
    harness: Harness,  # noqa: F811
    shared: Path,
) -> None:
    """The national system drops files under its own account: the reason and the status were 0600, the
    gateway's alone, beside a permit of 0644."""
    settings = _settings(harness, shared)
    be = await harness.start("BE-FAMHP", folders=settings.folders)
    outbox = settings.folders.outbox
    outbox.mkdir(parents=True)
    (outbox / "broken.xml").write_bytes(b"<not-a-permit/>")
    (outbox / "permit.xml").write_bytes(example(IA, today=harness.clock.now()))

    await folder.scan(be.runner.app)

    reason = _read_as_nobody(settings.folders.rejected / "broken.xml.errors.txt")
    assert reason.returncode == 0, reason.stderr
    assert "broken.xml was not sent" in reason.stdout
    status = _read_as_nobody(outbox / "sent" / "permit.xml.json")
    assert status.returncode == 0, status.stderr
    assert '"message_id"' in status.stdout
    marker = _read_as_nobody(outbox / "sent" / folder.PENDING / "permit.xml.json")
    assert marker.returncode == 0, marker.stderr
