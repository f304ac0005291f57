"""The watched outbox folder: a national system drops ``*.xml`` permits; each is submitted like a REST call.

Accepted files move to ``outbox/sent/`` with a ``.json`` receipt of submission beside them; refused files
move to the rejected folder with a ``.errors.txt`` beside them naming every rule broken and how to fix it.
Writers should write ``name.xml.part`` (or any other name) and rename to ``name.xml`` when complete.
Supporting documents go in a folder ``name.attachments/`` beside it, written before ``name.xml`` appears; they
travel with the permit (in file-name order) and move with it.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import structlog
from aiohttp import web

from gateway.errors import GatewayError
from gateway.interfaces.keys import NODE
from gateway.store import NewAttachment

log = structlog.get_logger("gateway.folder")
POLL_SECONDS = 1.0


def _move(source: Path, folder: Path) -> Path:
    """Move a permit file (and its attachments folder) into ``folder`` under a name not yet taken there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    counter = 1
    while target.exists() or _attachments(target).exists():
        target = folder / f"{source.stem}.{counter}{source.suffix}"
        counter += 1
    if _attachments(source).is_dir():
        _attachments(source).replace(_attachments(target))
    source.replace(target)
    return target


def _attachments(path: Path) -> Path:
    return path.with_suffix(".attachments")


def _open_attachments(path: Path, files: ExitStack) -> list[NewAttachment]:
    folder = _attachments(path)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [
        NewAttachment(
            filename=p.name,
            mime_type=mimetypes.guess_type(p.name)[0] or "application/octet-stream",
            file=files.enter_context(p.open("rb")),
        )
        for p in found
    ]


async def submit_file(app: web.Application, path: Path) -> None:
    node = app[NODE]
    try:
        with ExitStack() as files:
            data = path.read_bytes()
            submitted = await node.submitter.submit(data, attachments=_open_attachments(path, files))
    except GatewayError as exc:
        target = _move(path, node.settings.folders.rejected)
        target.with_name(target.name + ".errors.txt").write_text(f"{path.name} was not sent.\n\n{exc}\n")
        log.warning("outbox file rejected", file=path.name, moved_to=str(target))
        return
    target = _move(path, path.parent / "sent")
    record = submitted.record
    summary = {
        "message_id": record.message_id,
        "partner": record.partner_id,
        "state": record.state.value,
        "attachments": record.attachments or [],
        "submitted_before": not submitted.created,
    }
    target.with_name(target.name + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    node.dispatch_pump.wake()
    log.info("outbox file submitted", file=path.name, message_id=record.message_id)


async def scan(app: web.Application) -> int:
    outbox = app[NODE].settings.folders.outbox
    files = sorted(p for p in outbox.glob("*.xml") if p.is_file() and not p.name.startswith("."))
    for path in files:
        try:
            await submit_file(app, path)
        except Exception:  # a database outage, say: the file stays, the next scan tries it again
            log.exception("outbox file not submitted; it stays in the outbox for the next scan", file=path.name)
    return len(files)


async def _watch(app: web.Application) -> None:
    while True:
        try:
            await scan(app)
        except OSError:
            log.exception("outbox scan failed")
        await asyncio.sleep(POLL_SECONDS)


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    app[NODE].settings.folders.outbox.mkdir(parents=True, exist_ok=True)
    task = asyncio.create_task(_watch(app), name="outbox-watcher")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
