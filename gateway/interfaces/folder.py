"""The watched outbox folder: a national system drops ``*.xml`` permits; each is submitted like a REST call.

Accepted files move to ``outbox/sent/`` with a ``.json`` beside them: the MessageId and the message's state,
kept up to date until the partner's receipt (ACKNOWLEDGED), or FAILED with the reason, so a national system that
only reads folders learns what became of each permit. Refused files move to the rejected folder with a
``.errors.txt`` beside them naming every rule broken and how to fix it.
Writers should write ``name.xml.part`` (or any other name) and rename to ``name.xml`` when complete.
Supporting documents go in a folder ``name.attachments/`` beside it, written before ``name.xml`` appears; they
travel with the permit (in file-name order, at most ``MAX_ATTACHMENTS``) and move with it.
A file is taken by renaming it into ``outbox/.processing/`` before it is read: a file the national system renames
onto the same name meanwhile is a new document, and one a crash or an outage left there goes at the next scan.
Several nodes may watch one outbox: a node holds a lock on each taken file while it submits it, and moves files
out of ``.processing/`` one node at a time (``.processing.lock``), so each file is submitted and moved once.
Only regular files are taken: a symbolic link is refused, so that nothing outside the outbox can be sent.
Files go in the order they were written (their modification time), not by name.
A taken file leaves ``.processing/`` by a plan written first (``name.xml.moving``): a crash part way through
the move is finished by the next scan, so the permit is neither sent again nor left without its ``.json``. A
rejected folder on another file system gets a copy, whole under a temporary name before the original goes.
A file whose name is too long for the names derived from it goes straight to the rejected folder under a shorter
name, its original name and the reason beside it; one file the outbox cannot take never holds up the others.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import mimetypes
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import structlog
from aiohttp import web

from gateway.errors import GatewayError
from gateway.files import sync_folder, write_atomically
from gateway.interfaces.keys import NODE
from gateway.outbound.submit import MAX_ATTACHMENTS, TooManyAttachments
from gateway.store import Direction, MessageRecord, NewAttachment, State
from gateway.xmlsafe import DEFAULT_MAX_BYTES

log = structlog.get_logger("gateway.folder")
POLL_SECONDS = 1.0
REPORT_EVERY = 5
"""Scans between two updates of the sent files' states."""
PENDING = ".pending"
"""Under ``sent/``: a marker per ``.json`` whose message is not ACKNOWLEDGED yet, with the state last written."""
PROCESSING = ".processing"
"""Under the outbox: the files taken for submission and not yet moved to ``sent/`` or the rejected folder."""
MOVING = ".moving"
"""Beside a taken file: the plan of its move out of ``.processing/``, until the move is done."""
MOVES_LOCK = ".processing.lock"
"""In the outbox: locked by the node moving files out of ``.processing/`` (an outbox shared by several nodes)."""
COPIED = ".copied"
"""A whole copy of a file or folder moved to another file system, under a hidden name in the target's folder,
until it takes the target's name."""
MAX_FILE_BYTES = DEFAULT_MAX_BYTES
"""A permit file larger than this is refused before it is read (the XML parser's own limit)."""
MAX_NAME_BYTES = 255 - len(".errors.txt") - len(".9999")
"""The longest outbox file name taken: the names derived from it (``.attachments``, ``.moving``, ``.json``, and
the longest, ``.errors.txt`` after a counter against clashes) must fit the 255 bytes a file system allows."""
SHORT_STEM_BYTES = 100
"""How much of a too-long name's stem the shorter name it is rejected under keeps."""


def _free_name(source: Path, folder: Path) -> Path:
    """A name in ``folder`` for a permit file that neither it nor its attachments folder takes yet."""
    target = folder / source.name
    counter = 1
    while target.exists() or _attachments(target).exists():
        target = folder / f"{source.stem}.{counter}{source.suffix}"
        counter += 1
    return target


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@contextmanager
def _moving_out(outbox: Path) -> Iterator[None]:
    """Only one node at a time moves files out of ``.processing/`` or finishes a plan there: another node finds
    a file moved or still in place, never half-moved, and never carries out the same plan beside it."""
    with (outbox / MOVES_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """Hold a lock on a taken file while it is submitted, so that another node sharing the outbox leaves it be.
    False when another node holds it, or it is gone or planned out (that node sent or rejected it meanwhile).
    A symbolic link cannot be locked: it is refused, a move that ``_settle`` makes once."""
    if path.is_symlink():
        yield True
        return
    fd = _lock(path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def _lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:  # locked by another node, or moved away since it was opened
        os.close(fd)
        return None
    if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino) or _present(_journal(path)):
        os.close(fd)
        return None
    return fd


def _settle(source: Path, folder: Path, beside: str, text: bytes, marker: bytes | None) -> Path | None:
    """Move a taken permit file (and its attachments folder) into ``folder`` and write ``text`` beside it under
    the suffix ``beside`` (and, for a sent file, its state ``marker``). Two renames and a write are not one
    step, so the plan is written first: a crash part way is finished by the next scan (``_finish``) instead
    of sending the permit again without its attachments, or leaving it without the file that says what
    became of it. None when another node moved it first."""
    with _moving_out(source.parent.parent):
        if not _present(source) or _present(_journal(source)):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_name(source, folder)
        _move(source, target, _journal(source), beside, text, marker)
        return target


def _move(source: Path, target: Path, journal: Path, beside: str, text: bytes, marker: bytes | None) -> None:
    """Write the plan of a move to ``journal`` and carry it out."""
    plan: dict[str, object] = {"file": source.name, "target": str(target), "beside": beside, "text": text.decode()}
    if source.parent != journal.parent:
        plan["from"] = str(source.parent)
    if marker is not None:
        plan["marker"] = marker.decode()
    write_atomically(journal, _json(plan))
    _finish(journal)


def _journal(source: Path) -> Path:
    return source.with_name(source.name + MOVING)


def _finish(journal: Path) -> None:
    """Carry out a written plan; each step is skipped when a crash left it done."""
    plan = json.loads(journal.read_text())
    source, target = Path(plan.get("from", journal.parent)) / plan["file"], Path(plan["target"])
    target.parent.mkdir(parents=True, exist_ok=True)
    _carry(_attachments(source), _attachments(target))
    _carry(source, target)  # a refused symbolic link moves as the link it is
    sync_folder(target.parent)
    write_atomically(target.with_name(target.name + plan["beside"]), plan["text"].encode())
    if "marker" in plan:
        (target.parent / PENDING).mkdir(exist_ok=True)
        write_atomically(target.parent / PENDING / (target.name + ".json"), plan["marker"].encode())
    journal.unlink()
    sync_folder(journal.parent)


def _carry(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` unless a crash left that done. A rename cannot cross file systems (a
    rejected folder on another disk): there the copy is made whole under a hidden name beside the target
    before the source goes and the copy takes the target's name, so a crash at any step is finished by calling
    this again, and the source is never lost nor sent again."""
    copied = _copied(target)
    if not _present(copied):
        if not _present(source) or _present(target):
            return
        try:
            source.replace(target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        _copy(source, copied)
    _remove(source)
    copied.replace(target)
    sync_folder(target.parent)


def _copied(target: Path) -> Path:
    """A name beside ``target`` for its copy, short whatever the target's length."""
    digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]
    return target.with_name(f".{digest}{COPIED}")


def _copy(source: Path, copied: Path) -> None:
    """A durable copy of ``source`` (a file, a folder, or a symbolic link as the link it is) named ``copied``; a
    copy a crash cut short is made again."""
    copying = copied.with_suffix(".copying")
    _remove(copying)
    if source.is_symlink():
        copying.symlink_to(os.readlink(source))
    elif source.is_dir():
        shutil.copytree(source, copying, symlinks=True, copy_function=_copy_file)
        sync_folder(copying)
    else:
        _copy_file(source, copying)
    sync_folder(copying.parent)
    copying.replace(copied)
    sync_folder(copied.parent)


def _copy_file(source: str | Path, target: str | Path) -> None:
    shutil.copy2(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    sync_folder(path.parent)


def _present(path: Path) -> bool:
    """There, as a file, a folder or a symbolic link (even one pointing nowhere)."""
    return os.path.lexists(path)


def _finish_all(taken: Path) -> None:
    if not taken.is_dir():
        return
    with _moving_out(taken.parent):
        for journal in sorted(taken.glob(f"*{MOVING}")):
            try:
                _finish(journal)
            except (OSError, ValueError, KeyError):
                log.exception(
                    "outbox move could not be finished; it is tried again at the next scan", plan=str(journal)
                )


def _take(path: Path) -> None:
    """Rename an outbox file into ``.processing/`` under its own name, its attachments folder first. A file of
    that name still taken (an outage) is finished first; attachments a crash left taken without their permit
    are its own, as the national system names them together."""
    taken = path.parent / PROCESSING
    target = taken / path.name
    if target.exists() or target.is_symlink() or _journal(target).exists():
        return
    taken.mkdir(exist_ok=True)
    attachments = _attachments(path)
    if (attachments.is_dir() or attachments.is_symlink()) and not _attachments(target).exists():
        attachments.replace(_attachments(target))
    path.replace(target)


def _reject_long_name(path: Path, rejected: Path) -> None:
    """Move an outbox file whose name is too long to the rejected folder under a shorter name, with the reason
    beside it. Its plan is kept in ``.processing/`` under the shorter name, as its own would not fit."""
    short = _short_name(path)
    journal = path.parent / PROCESSING / (short + MOVING)
    with _moving_out(path.parent):
        if _present(journal) or not _present(path):  # a crash cut the move short (``_finish_all`` ends it),
            return  # or another node moved it
        journal.parent.mkdir(exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        target = _free_name(rejected / short, rejected)
        _move(path, target, journal, ".errors.txt", _too_long(path.name, target.name), None)
    log.warning("outbox file rejected: name too long", file=_shown(path.name), moved_to=_shown(str(target)))


def _short_name(path: Path) -> str:
    """The first bytes of the stem and a digest of the whole name, so two long names never get the same one."""
    name = os.fsencode(path.name)
    stem = os.fsencode(path.stem)[:SHORT_STEM_BYTES]
    return f"{os.fsdecode(stem)}~{hashlib.sha256(name).hexdigest()[:12]}{path.suffix}"


def _too_long(name: str, moved_as: str) -> bytes:
    size = len(os.fsencode(name))
    return (
        f"{_shown(name)} was not sent.\n\nThe file name is {size} bytes long; an outbox file name may have up to "
        f"{MAX_NAME_BYTES} bytes, so that the names the gateway writes beside it (.attachments, .errors.txt, "
        f".json) fit the 255 bytes a file system allows. The file was moved here as {_shown(moved_as)}. "
        "Give it a shorter name and drop it in the outbox again.\n"
    ).encode()


def _refusal(path: Path) -> str | None:
    """Why an outbox file is not read at all, or None."""
    links = [p for p in (path, _attachments(path), *_entries(_attachments(path))) if p.is_symlink()]
    if links:
        return (
            f"{links[0].name} is a symbolic link; the outbox takes regular files only, so that nothing outside it "
            "can be sent. Copy the file into the outbox instead"
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return f"the file is {size} bytes; a permit document may have up to {MAX_FILE_BYTES} bytes"
    return None


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []


def _attachments(path: Path) -> Path:
    return path.with_suffix(".attachments")


def _open_attachments(path: Path, files: ExitStack) -> list[NewAttachment]:
    folder = _attachments(path)
    if not folder.is_dir():
        return []
    found = [p for p in _entries(folder) if p.is_file() and not p.name.startswith(".")]
    if len(found) > MAX_ATTACHMENTS:  # refused before any is opened
        raise TooManyAttachments(f"{_shown(folder.name)}/ holds {len(found)} files")
    return [
        NewAttachment(
            filename=p.name,
            mime_type=mimetypes.guess_type(p.name)[0] or "application/octet-stream",
            file=files.enter_context(p.open("rb")),
        )
        for p in found
    ]


async def submit_file(app: web.Application, path: Path) -> None:
    """Submit a taken file (under ``.processing/``, claimed) and move it to ``sent/`` or the rejected folder."""
    node = app[NODE]
    refused = _refusal(path)
    try:
        if refused is not None:
            raise GatewayError(refused)
        with ExitStack() as files:
            data = await asyncio.to_thread(path.read_bytes)
            submitted = await node.submitter.submit(data, attachments=_open_attachments(path, files))
    except GatewayError as exc:
        errors = f"{_shown(path.name)} was not sent.\n\n{exc}\n".encode()
        target = await asyncio.to_thread(
            _settle, path, node.settings.folders.rejected, ".errors.txt", errors, None
        )
        if target is not None:
            log.warning("outbox file rejected", file=_shown(path.name), moved_to=_shown(str(target)))
        return
    record = submitted.record
    summary = {
        "message_id": record.message_id,
        "partner": record.partner_id,
        "attachments": record.attachments or [],
        "submitted_before": not submitted.created or submitted.supersedes is not None,
    } | ({"supersedes": submitted.supersedes} if submitted.supersedes else {}) | _state(record)
    marker = _marker(record) if record.state is not State.ACKNOWLEDGED else None
    await asyncio.to_thread(_settle, path, path.parent.parent / "sent", ".json", _json(summary), marker)
    node.dispatch_pump.wake()
    log.info("outbox file submitted", file=_shown(path.name), message_id=record.message_id)


def _state(record: MessageRecord) -> dict[str, object]:
    state: dict[str, object] = {
        "state": record.state.value,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "updated_at": record.updated_at.isoformat(),
    }
    if record.state is State.FAILED:
        state["to_send_again"] = (
            "drop the same file in the outbox again (it goes under the same MessageId), or "
            f"POST /api/v1/messages/{record.message_id}/retry"
        )
    return state


def _marker(record: MessageRecord) -> bytes:
    return _json(_state(record) | {"message_id": record.message_id})


def _json(data: dict[str, object]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


async def report(app: web.Application) -> int:
    """Write each sent file's new state beside it (ACKNOWLEDGED, FAILED with the reason, a retry); returns how
    many changed. A FAILED message stays watched: a retry may still bring its receipt."""
    node = app[NODE]
    pending = node.settings.folders.outbox / "sent" / PENDING
    markers = await asyncio.to_thread(_markers, pending)
    if not markers:
        return 0
    records = await node.store.find_many(
        Direction.OUTBOUND, sorted({str(m["message_id"]) for m in markers.values()})
    )
    found = {path: records.get(str(marker["message_id"])) for path, marker in markers.items()}
    changed = {path: record for path, record in found.items() if _moved(markers[path], record)}
    await asyncio.to_thread(_rewrite, changed)
    return len(changed)


def _markers(pending: Path) -> dict[Path, dict[str, object]]:
    found: dict[Path, dict[str, object]] = {}
    for path in sorted(pending.glob("*.json")) if pending.is_dir() else ():
        try:
            found[path] = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("unreadable outbox state marker; removed", marker=str(path))
            path.unlink(missing_ok=True)
    return found


def _moved(marker: dict[str, object], record: MessageRecord | None) -> bool:
    if record is None:  # purged by retention: nothing more will happen to it
        return True
    return (marker.get("state"), marker.get("attempts")) != (record.state.value, record.attempts)


def _rewrite(changed: dict[Path, MessageRecord | None]) -> None:
    for marker, record in changed.items():
        status = marker.parent.parent / marker.name
        if record is not None and status.exists():
            summary = json.loads(status.read_text())
            summary.update(_state(record))
            if record.state is not State.FAILED:
                summary.pop("to_send_again", None)
            write_atomically(status, _json(summary))
        if record is None or record.state is State.ACKNOWLEDGED or not status.exists():
            marker.unlink(missing_ok=True)
        else:
            write_atomically(marker, _marker(record))


def _by_arrival(folder: Path) -> list[Path]:
    """The ``*.xml`` files in the order they were written (a rename keeps the time), so an amendment dropped
    after its permit goes after it whatever their names; a file that is gone meanwhile is left out."""
    arrived: list[tuple[int, str, Path]] = []
    for path in folder.glob("*.xml"):
        try:
            arrived.append((path.lstat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return [path for _, _, path in sorted(arrived)]


async def scan(app: web.Application) -> int:
    """Take the files that arrived, then submit every taken file (those an outage left too, and those of a node
    that stopped) that no other node is at work on; how many this node tried."""
    folders = app[NODE].settings.folders
    outbox = folders.outbox
    await asyncio.to_thread(_take_arrived, outbox, folders.rejected)
    taken = outbox / PROCESSING
    await asyncio.to_thread(_finish_all, taken)
    found = _by_arrival(taken) if taken.is_dir() else []
    files = [p for p in found if (p.is_file() or p.is_symlink()) and not _journal(p).exists()]
    tried = 0
    for path in files:
        with _claimed(path) as claimed:
            if not claimed:
                continue
            tried += 1
            try:
                await submit_file(app, path)
            except Exception:  # a database outage, say: the file stays taken, the next scan tries it again
                log.exception(
                    "outbox file not submitted; it is tried again at the next scan", file=_shown(path.name)
                )
    return tried


def _take_arrived(outbox: Path, rejected: Path) -> None:
    for path in _by_arrival(outbox):
        if not path.name.startswith("."):
            _take_or_reject(path, rejected)


def _take_or_reject(path: Path, rejected: Path) -> None:
    """Take one outbox file; a failure is logged and leaves the others to go."""
    try:
        if not (path.is_file() or path.is_symlink()):
            return
        if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
            _reject_long_name(path, rejected)
        else:
            _take(path)
    except FileNotFoundError:  # another node sharing the outbox took it first
        return
    except OSError:
        log.exception("outbox file not taken; it is tried again at the next scan", file=_shown(path.name))


async def _watch(app: web.Application) -> None:
    rounds = 0
    while True:
        try:
            await scan(app)
            if rounds % REPORT_EVERY == 0:
                await report(app)
        except Exception:  # a database outage, say: the watcher must outlive it
            log.exception("outbox scan failed")
        rounds += 1
        await asyncio.sleep(POLL_SECONDS)


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    app[NODE].settings.folders.outbox.mkdir(parents=True, exist_ok=True)
    task = asyncio.create_task(_watch(app), name="outbox-watcher")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
