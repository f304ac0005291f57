"""The watched outbox folder: a national system drops ``*.xml`` permits; each is submitted like a REST call.

Accepted files move to ``outbox/sent/`` with a ``.json`` beside them: the MessageId and the message's state,
kept up to date until the partner's receipt (ACKNOWLEDGED), or FAILED with the reason, so a national system that
only reads folders learns what became of each permit. Refused files move to the rejected folder with a
``.errors.txt`` beside them naming every rule broken and how to fix it.
Writers should write ``name.xml.part`` (or any other name) and rename to ``name.xml`` when complete; a file
written in place that is not well-formed XML yet waits until it has not changed for ``SETTLE_SECONDS``.
Supporting documents go in a folder ``name.attachments/`` beside it, written before ``name.xml`` appears; they
travel with the permit (in file-name order, at most ``MAX_ATTACHMENTS``) and move with it.
A file is taken by renaming it into ``outbox/.processing/`` before it is read: a file the national system renames
onto the same name meanwhile is a new document, and one a crash or an outage left there goes at the next scan.
Several nodes may watch one outbox: a node holds a lock on each taken file while it submits it, and moves files
out of ``.processing/`` one node at a time (``.processing.lock``), so each file is submitted and moved once; and
as the outbox and its partner subfolders share the rejected folder, files go into it one at a time, from whichever
folder (the outbox's ``.rejecting.lock``), so that no two get the same name there.
Only regular files are taken (``*.xml``, the suffix in any case): a symbolic link, anything else under that
name, a file the gateway cannot read, and anything in the attachments folder but regular files (a folder, say) are
refused with the reason, so that nothing outside the outbox can be sent and nothing is left out
unsaid. Files and attachments are opened without following links and read from what was opened.
Files go in the order they were written (their modification time), not by name: a node stops its scan at a
file another node is submitting, as the files after it may depend on it.
A taken file leaves ``.processing/`` by a plan written first (``name.xml.moving``): a crash part way through
the move is finished by the next scan, so the permit is neither sent again nor left without its ``.json``. A
rejected folder on another file system gets a copy, whole under a temporary name before the original goes.
A file whose name is too long for the names derived from it goes straight to the rejected folder under a shorter
name, its original name and the reason beside it; one file the outbox cannot take never holds up the others.

A file in the outbox itself goes to the partner its document names (its counterpart country's one profile, or
of several the authority it answers). A file in a partner subfolder, ``outbox/<profile id>/name.xml``, goes to
that partner, as a REST submission with ``?partner=<profile id>`` does: the way to send to a country with several
competent authorities. A partner subfolder is a mini-outbox, with its own ``.processing/`` and ``sent/`` and all
of the above; every subfolder of the outbox is one except ``sent/``, hidden ones, ``*.attachments`` and ``*.xml``
folders (taken as files, and refused), and links (nothing outside the outbox is sent). Only files directly in it
are taken. A file in a subfolder that names no profile is refused, naming the profile ids; a profile whose id is
``sent`` has no subfolder (``outbox/sent/`` keeps the sent files): its documents go through the REST API.
A refused file's ``.errors.txt`` names the subfolder it came from. Order: within one folder, files go in the
order they were written; the outbox itself is scanned first, then the partner subfolders by name, with no order
between folders: drop a document that refers to another (an amendment, a cancellation) in the same folder as
it, or once the other's ``.json`` is in ``sent/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import fcntl
import hashlib
import json
import mimetypes
import os
import secrets
import shutil
import stat
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from aiohttp import web

from gateway.errors import ConfigError, GatewayError
from gateway.files import is_disk_full, shared_mode, sync_folder, write_atomically
from gateway.interfaces.keys import NODE, SETTINGS
from gateway.outbound.submit import MAX_ATTACHMENTS, TooManyAttachments
from gateway.profiles.trust import Partners
from gateway.settings import FolderSettings
from gateway.store import Direction, MessageRecord, MessageStore, NewAttachment, State, is_unavailable
from gateway.xmlsafe import DEFAULT_MAX_BYTES, XmlInputError, parse_xml

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
REFUSING = ".unknown-partner"
"""In the name of the plan of a move, kept in the outbox's ``.processing/``, of a file refused from a subfolder
that names no partner."""
MOVES_LOCK = ".processing.lock"
"""In the outbox and each partner subfolder: locked by the node moving files out of its ``.processing/`` (an
outbox shared by several nodes)."""
REJECTING_LOCK = ".rejecting.lock"
"""In the outbox: locked by the node moving a file into the rejected folder, which the outbox and all its partner
subfolders share, from choosing the file's name there to the end of the move (``_rejecting``)."""
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
SUBMITTING = ".submitting"
"""Beside a taken file: which file (its inode) a submission was begun for and when, so that the ``.json`` of a
file whose submission a crash cut short after it was stored does not say it was submitted before."""
SENT = "sent"
"""In the outbox and in each partner subfolder: the files sent, each with its status ``.json``; never a partner
subfolder, so a profile whose id is ``sent`` has none."""
SETTLE_SECONDS = 2.0
"""Where a lease cannot tell whether a taken file is still open for writing: one that is not well-formed XML and
changed less than this ago is being written in place, and waits."""


def _free_name(source: Path, folder: Path) -> Path:
    """A name in ``folder`` for a permit file that nothing there takes yet: not a file, folder or link (even one
    pointing nowhere) of that name, its attachments folder, its ``.json`` or ``.errors.txt`` (a national system
    may archive the permit and keep watching its status), nor its state marker."""
    target = folder / source.name
    counter = 1
    while any(map(_present, _names_of(target))):
        target = folder / f"{source.stem}.{counter}{source.suffix}"
        counter += 1
    return target


def _names_of(target: Path) -> tuple[Path, ...]:
    beside = (target.with_name(target.name + suffix) for suffix in (".json", ".errors.txt"))
    return target, _attachments(target), *beside, target.parent / PENDING / (target.name + ".json")


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@contextmanager
def _moving_out(folder: Path) -> Iterator[None]:
    """Only one node at a time moves files out of a folder's ``.processing/`` or finishes a plan there: another
    node finds a file moved or still in place, never half-moved, and never carries out the same plan beside it."""
    with _locked(folder / MOVES_LOCK):
        yield


@contextmanager
def _rejecting(outbox: Path) -> Iterator[None]:
    """Only one node at a time moves a file into the rejected folder, from whichever folder of the outbox: two
    moves never choose the same free name there (the second would find the first's file in its place). Always
    taken last, inside a folder's ``_moving_out``, so that no two nodes wait for each other."""
    with _locked(outbox / REJECTING_LOCK):
        yield


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _lock(path: Path) -> int | str | None:
    """Open a taken file and hold a lock on it while it is submitted, so that another node sharing the outbox
    leaves it be: its descriptor, or why it is refused unread (a symbolic link, which cannot be locked, or a file
    the gateway cannot read: refused once, by ``_settle``). None when it is gone or planned out (another node
    sent or rejected it meanwhile); BlockingIOError when another node holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in UNREADABLE:
            return _unreadable(path.name, exc)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:  # moved away since it was opened
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino) or _present(_journal(path)):
        os.close(fd)
        return None
    return fd


UNREADABLE = (errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENXIO)
"""Why an outbox file or attachment cannot be opened that is its own: rejected with the reason."""


def _unreadable(name: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return (
            f"{_shown(name)} is a symbolic link; the outbox takes regular files only, so that nothing outside it "
            "can be sent. Copy the file into the outbox instead"
        )
    if exc.errno == errno.ENXIO:
        return _not_regular(name, "a socket")
    return (
        f"the gateway's account cannot read {_shown(name)} ({os.strerror(exc.errno or 0)}): give it read "
        "permission and drop the file in the outbox again"
    )


def _not_regular(name: str, kind: str) -> str:
    return (
        f"{_shown(name)} is {kind}, not a regular file; the outbox takes regular files only. Write the permit as "
        "a file (name.xml.part, renamed to name.xml when complete)"
    )


def _settle(
    source: Path, folder: Path, beside: str, text: bytes, marker: bytes | None, rejecting: Path | None = None
) -> Path | None:
    """Move a taken permit file (and its attachments folder) into ``folder`` and write ``text`` beside it under
    the suffix ``beside`` (and, for a sent file, its state ``marker``). Two renames and a write are not one
    step, so the plan is written first: a crash part way is finished by the next scan (``_finish``) instead
    of sending the permit again without its attachments, or leaving it without the file that says what
    became of it. ``rejecting``: the outbox, for a move into the rejected folder it shares with every partner
    subfolder (``_rejecting``). None when another node moved it first."""
    with ExitStack() as held:
        held.enter_context(_moving_out(source.parent.parent))
        if rejecting is not None:
            held.enter_context(_rejecting(rejecting))
        if not _present(source) or _present(_journal(source)):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_name(source, folder)
        return target if _move(source, target, _journal(source), beside, text, marker) else None


def _move(source: Path, target: Path, journal: Path, beside: str, text: bytes, marker: bytes | None) -> bool:
    """Write the plan of a move to ``journal`` and carry it out; False when the file went elsewhere meanwhile."""
    plan: dict[str, object] = {"file": source.name, "target": str(target), "beside": beside, "text": text.decode()}
    plan["copy"] = secrets.token_hex(8)  # names this move's copies on another file system: no other move's
    if source.parent != journal.parent:
        plan["from"] = str(source.parent)
    if marker is not None:
        plan["marker"] = marker.decode()
    write_atomically(journal, _json(plan))
    return _finish(journal)


def _journal(source: Path) -> Path:
    return source.with_name(source.name + MOVING)


def _finish(journal: Path) -> bool:
    """Carry out a written plan; each step is skipped when a crash left it done. False when the file went
    elsewhere before it was moved (another node sharing the outbox took it): nothing is written about it."""
    plan = json.loads(journal.read_text())
    source, target = Path(plan.get("from", journal.parent)) / plan["file"], Path(plan["target"])
    target.parent.mkdir(parents=True, exist_ok=True)
    if _clashes(source, target, plan):
        target = _replanned(journal, plan, target)
    folder_copy, file_copy = _copies(plan)
    _carry(_attachments(source), _attachments(target), folder_copy)
    _carry(source, target, file_copy)  # a refused symbolic link moves as the link it is
    if not _present(target):
        _drop(journal, source, plan)
        log.warning(
            "outbox file gone before it was moved; nothing written about it", file=str(source), plan=str(journal)
        )
        return False
    sync_folder(target.parent)
    # readable by the account that dropped the file, as the file itself is: why it was refused, what became of it
    write_atomically(target.with_name(target.name + plan["beside"]), plan["text"].encode(), mode=shared_mode())
    if "marker" in plan:
        (target.parent / PENDING).mkdir(exist_ok=True)
        marker = target.parent / PENDING / (target.name + ".json")
        write_atomically(marker, plan["marker"].encode(), mode=shared_mode())
    _drop(journal, source, plan)
    return True


def _drop(journal: Path, source: Path, plan: dict[str, str]) -> None:
    if "from" not in plan:  # a taken file, whose submission may have begun
        _begun(source).unlink(missing_ok=True)
    journal.unlink()
    sync_folder(journal.parent)


def _clashes(source: Path, target: Path, plan: dict[str, str]) -> bool:
    """Whether another file took this plan's target (or its attachments folder's) while the plan was left undone
    by a crash: the name was free when it was chosen, and the move that took it could not see the plan."""
    pairs = ((_attachments(source), _attachments(target)), (source, target))
    return any(
        _present(there) and (_present(here) or _present(copy))
        for (here, there), copy in zip(pairs, _copies(plan), strict=True)
    )


def _replanned(journal: Path, plan: dict[str, str], target: Path) -> Path:
    """Give a plan whose target another file took the next free name (the callers hold the folder's locks)."""
    folder_copy, file_copy = _copies(plan)
    moved = _free_name(target, target.parent)
    plan |= {"target": str(moved), "folder_copy": folder_copy.name, "file_copy": file_copy.name}
    write_atomically(journal, _json(dict(plan)))
    log.warning(
        "outbox file's planned name taken meanwhile; moved under another", planned=str(target), to=str(moved)
    )
    return moved


def _copies(plan: dict[str, str]) -> tuple[Path, Path]:
    """The hidden names, beside the target, of the copies of a file's attachments folder and of the file when
    they go to another file system: this move's own (the plan's random ``copy``), so that a copy another move
    left there is never taken for this one's. A plan of an earlier version named them after its target."""
    folder = Path(plan["target"]).parent
    if "file_copy" in plan:
        return folder / plan["folder_copy"], folder / plan["file_copy"]
    if "copy" in plan:
        return folder / f".{plan['copy']}.attachments{COPIED}", folder / f".{plan['copy']}{COPIED}"
    target = Path(plan["target"])
    return _copied(_attachments(target)), _copied(target)


def _carry(source: Path, target: Path, copied: Path) -> None:
    """Move ``source`` to ``target`` unless a crash left that done. A rename cannot cross file systems (a
    rejected folder on another disk): there the copy is made whole under the hidden name ``copied`` beside the
    target before the source goes and the copy takes the target's name, so a crash at any step is finished by
    calling this again, and the source is never lost nor sent again. A target that is another file's while the
    source is still there is never overwritten nor taken for the source's."""
    if not _present(copied):
        if not _present(source):
            return
        if _present(target):
            raise FileExistsError(
                errno.EEXIST, f"{_shown(source.name)} not moved: another file is in its place", str(target)
            )
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
    """The name an earlier version gave beside ``target`` to its copy."""
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


def _finish_all(taken: Path, outbox: Path) -> None:
    """Finish the plans a crash left in a folder's ``.processing/``; one may be a move into the rejected folder."""
    if not taken.is_dir() or not any(taken.glob(f"*{MOVING}")):
        return
    with _moving_out(taken.parent), _rejecting(outbox):
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
    if _present(target) or _present(_journal(target)):
        return
    taken.mkdir(exist_ok=True)
    attachments = _attachments(path)
    if (attachments.is_dir() or attachments.is_symlink()) and not _attachments(target).exists():
        attachments.replace(_attachments(target))
    path.replace(target)


def _reject_long_name(path: Path, rejected: Path, outbox: Path) -> None:
    """Move an outbox file whose name is too long to the rejected folder under a shorter name, with the reason
    beside it. Its plan is kept in ``.processing/`` under the shorter name, as its own would not fit."""
    short = _short_name(path)
    journal = path.parent / PROCESSING / (short + MOVING)
    with _moving_out(path.parent), _rejecting(outbox):
        if _present(journal) or not _present(path):  # a crash cut the move short (``_finish_all`` ends it),
            return  # or another node moved it
        journal.parent.mkdir(exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        target = _free_name(rejected / short, rejected)
        if not _move(path, target, journal, ".errors.txt", _too_long(path, outbox, target.name), None):
            return
    log.warning(
        "outbox file rejected: name too long", file=_dropped_as(path, outbox), moved_to=_shown(str(target))
    )


def _short_name(path: Path) -> str:
    """The first bytes of the stem and a digest of the whole name, so two long names never get the same one."""
    name = os.fsencode(path.name)
    stem = os.fsencode(path.stem)[:SHORT_STEM_BYTES]
    return f"{os.fsdecode(stem)}~{hashlib.sha256(name).hexdigest()[:12]}{path.suffix}"


def _too_long(path: Path, outbox: Path, moved_as: str) -> bytes:
    size = len(os.fsencode(path.name))
    return (
        f"{_dropped_as(path, outbox)} was not sent.\n\nThe file name is {size} bytes long; an outbox file name "
        f"may have up to {MAX_NAME_BYTES} bytes, so that the names the gateway writes beside it (.attachments, .errors.txt, "
        f".json) fit the 255 bytes a file system allows. The file was moved here as {_shown(moved_as)}. "
        "Give it a shorter name and drop it in the outbox again.\n"
    ).encode()


def _attachments(path: Path) -> Path:
    return path.with_suffix(".attachments")


def partner_folders(outbox: Path) -> list[Path]:
    """The outbox's partner subfolders, by name: its subfolders but ``sent/``, hidden ones (``.processing/``),
    attachments folders and ``*.xml`` ones (taken as files, and refused). A link is none: what it points to is
    outside the outbox."""
    try:
        entries = sorted(outbox.iterdir()) if outbox.is_dir() else []
    except FileNotFoundError:
        return []
    named = [path for path in entries if _is_partner_name(path)]
    for link in (path for path in named if path.is_symlink() and path.is_dir() and str(path) not in _LINKS_TOLD):
        _LINKS_TOLD.add(str(link))
        log.warning(
            "a symbolic link in the outbox is no partner subfolder: the outbox sends nothing from outside it; its "
            "files stay where they are. Make it a folder of its own and move the files into it",
            link=_shown(str(link)),
        )
    return [path for path in named if path.is_dir() and not path.is_symlink()]


_LINKS_TOLD: set[str] = set()
"""The links in an outbox already logged as no partner subfolder: once each, not every scan."""


def _is_partner_name(path: Path) -> bool:
    name = path.name
    return not (
        name.startswith(".") or name == SENT or name.endswith(".attachments") or path.suffix.lower() == ".xml"
    )


def _folder_of(path: Path, outbox: Path) -> Path:
    """The folder a file was dropped in (the outbox or a partner subfolder), whether it is taken yet or not."""
    if path.parent in (outbox, outbox / PROCESSING):
        return outbox
    return path.parent.parent if path.parent.name == PROCESSING else path.parent


def _partner_of(path: Path, outbox: Path) -> str | None:
    """The profile id a file's partner subfolder names; None for a file dropped in the outbox itself."""
    folder = _folder_of(path, outbox)
    return None if folder == outbox else folder.name


def _dropped_as(path: Path, outbox: Path) -> str:
    """A file's name as the national system dropped it: after its partner subfolder's, if it was in one."""
    partner = _partner_of(path, outbox)
    return _shown(path.name) if partner is None else f"{_shown(partner)}/{_shown(path.name)}"


def _no_such_partner(folder: str, partners: Partners, own_party: str) -> str | None:
    """Why a partner subfolder names no partner (None when it does): the ids it may have, and the fix. Our own
    profile's is refused by the submission, as ``?partner=`` naming it is."""
    if any(p.profile.id == folder for p in partners):
        return None
    ids = sorted(p.profile.id for p in partners if p.profile.party_id != own_party)
    usable = [i for i in ids if i != SENT]
    near = difflib.get_close_matches(folder.lower(), usable, n=1)
    sent = (
        f"; the profile {SENT} has none, as {SENT}/ keeps the sent files: submit its documents through the REST "
        f"API, POST /api/v1/documents?partner={SENT}"
        if SENT in ids
        else ""
    )
    return (
        f"the outbox's subfolder {_shown(folder)}/ names no partner: no partner profile has the id "
        f"{_shown(folder)!r}. A file in a subfolder of the outbox goes to the partner whose profile id is the "
        f"subfolder's name, and the profile ids are: {', '.join(usable) or 'none yet'}{sent}. Rename the "
        f"folder to the profile id of the partner its files are for"
        + (f" (did you mean {near[0]}?)" if near else "")
        + ", or use the outbox itself, where the gateway chooses the partner from the document, and drop the file "
        "there again"
    )


def _read(path: Path, fd: int) -> bytes:
    """The permit, read from the file opened and locked (not by its name, which may name another file by now)."""
    held = os.fstat(fd)
    if not stat.S_ISREG(held.st_mode):
        raise GatewayError(_not_regular(path.name, _kind(held.st_mode)))
    if held.st_size > MAX_FILE_BYTES:
        raise GatewayError(
            f"the file is {held.st_size} bytes; a permit document may have up to {MAX_FILE_BYTES} bytes"
        )
    data = bytearray()
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    return bytes(data)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    return "a device or socket"


def _unfinished(data: bytes, fd: int) -> bool:
    """A file written in place (not renamed into the outbox when complete) may be taken half-written: one still
    open for writing waits for a later scan (a read lease cannot be had on it). Where a lease cannot tell (a file
    of another owner, a network file system), one that is not well-formed XML and changed less than
    ``SETTLE_SECONDS`` ago waits."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return _fresh_and_broken(data, fd)
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def _fresh_and_broken(data: bytes, fd: int) -> bool:
    if time.time() - os.fstat(fd).st_mtime >= SETTLE_SECONDS:
        return False
    try:
        parse_xml(data)
    except XmlInputError:
        return True
    return False


def _open_attachments(path: Path, files: ExitStack) -> list[NewAttachment]:
    """The supporting documents in ``name.attachments/``, each opened without following links: anything there
    but regular files is refused (it would be left out unsaid); a hidden file is a writer's unfinished one."""
    folder = _attachments(path)
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise GatewayError(_unreadable(folder.name, exc)) from None
    try:
        names = _documents(folder, dfd)
        return [_open_attachment(folder, dfd, name, files) for name in names]
    finally:
        os.close(dfd)


def _documents(folder: Path, dfd: int) -> list[str]:
    try:
        with os.scandir(dfd) as entries:
            found = {entry.name: entry.stat(follow_symlinks=False).st_mode for entry in entries}
    except OSError as exc:
        raise GatewayError(_unreadable(folder.name, exc)) from None
    links = sorted(name for name, mode in found.items() if stat.S_ISLNK(mode))
    if links:
        raise GatewayError(_unreadable(f"{folder.name}/{links[0]}", OSError(errno.ELOOP, "")))
    odd = sorted(name for name, mode in found.items() if not stat.S_ISREG(mode))
    if odd:
        raise GatewayError(_odd_attachments(folder.name, odd, found))
    documents = sorted(name for name in found if not name.startswith("."))  # hidden: a writer's unfinished file
    if len(documents) > MAX_ATTACHMENTS:  # refused before any is opened
        raise TooManyAttachments(f"{_shown(folder.name)}/ holds {len(documents)} files")
    return documents


def _odd_attachments(folder: str, odd: list[str], found: dict[str, int]) -> str:
    named = ", ".join(f"{_shown(name)} ({_kind(found[name])})" for name in odd)
    return (
        f"{_shown(folder)}/ holds {named}; supporting documents travel only as regular files directly in it, so "
        "nothing there is left out unsaid. Put each document there as a file of its own (a folder's files one by "
        "one, or a ZIP archive of the folder), remove the rest, and drop the permit in the outbox again"
    )


def _open_attachment(folder: Path, dfd: int, name: str, files: ExitStack) -> NewAttachment:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in UNREADABLE:
            raise GatewayError(_unreadable(f"{folder.name}/{name}", exc)) from None
        raise
    file = files.enter_context(os.fdopen(fd, "rb"))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped since it was listed
        raise GatewayError(_odd_attachments(folder.name, [name], {name: mode}))
    return NewAttachment(
        filename=name, mime_type=mimetypes.guess_type(name)[0] or "application/octet-stream", file=file
    )


async def submit_file(app: web.Application, path: Path, opened: int | str) -> bool:
    """Submit a taken file (under ``.processing/``, ``opened`` and locked by ``_lock``, or why it is refused
    unread) and move it to ``sent/`` or the rejected folder; False when it is left for a later scan (being
    written in place). A file of a partner subfolder goes to that partner, as ``?partner=`` makes a REST
    submission go."""
    node = app[NODE]
    outbox = node.settings.folders.outbox
    partner_id = _partner_of(path, outbox)
    try:
        if isinstance(opened, str):
            raise GatewayError(opened)
        data = await asyncio.to_thread(_read, path, opened)
        if _unfinished(data, opened):
            return False
        begun = await asyncio.to_thread(_begun_before, path, opened, partner_id)
        if begun is not None:  # it may have been stored: the store answers it, for the partner it was sent to
            partner_id = begun[1]  # whatever its subfolder is called now
        elif partner_id is not None and (unknown := _no_such_partner(partner_id, node.partners, _own(app))):
            raise GatewayError(unknown)
        else:
            await asyncio.to_thread(_begin, path, opened, node.clock.now(), partner_id)
        with ExitStack() as files:
            attachments = _open_attachments(path, files)
            submitted = await node.submitter.submit(data, partner_id=partner_id, attachments=attachments)
    except GatewayError as exc:
        await _reject(app, path, f"{_dropped_as(path, outbox)} was not sent.\n\n{exc}\n".encode())
        return True
    record = submitted.record
    ours = begun is not None and not submitted.created and record.created_at >= begun[0]  # stored, then a crash
    summary = (
        {
            "message_id": record.message_id,
            "partner": record.partner_id,
            "attachments": record.attachments or [],
            "submitted_before": not (submitted.created or ours) or submitted.supersedes is not None,
        }
        | ({"supersedes": submitted.supersedes} if submitted.supersedes else {})
        | _state(record)
    )
    marker = _marker(record) if record.state is not State.ACKNOWLEDGED else None
    try:
        await asyncio.to_thread(_settle, path, path.parent.parent / SENT, ".json", _json(summary), marker)
    except (
        OSError
    ) as exc:  # a full disk, say: the plan's next step is done by the next scan, or the file goes again
        _unmoved(
            app,
            path,
            exc,
            f"outbox file submitted as {record.message_id}; its status file is written at the next scan",
        )
        return True
    finally:
        node.dispatch_pump.wake()
    _MOVE_FAILED.get(app, set()).discard(str(path))
    log.info("outbox file submitted", file=_dropped_as(path, outbox), message_id=record.message_id)
    return True


def _own(app: web.Application) -> str:
    return app[NODE].settings.identity.party_id


_MOVE_FAILED: weakref.WeakKeyDictionary[web.Application, set[str]] = weakref.WeakKeyDictionary()
"""The taken files each application could not move out of ``.processing/``: logged once each, not every scan."""


def _unmoved(app: web.Application, path: Path, exc: OSError, what: str, reason: bytes | None = None) -> None:
    """Log once per file why a taken file cannot be moved (with its reason for a refused one, which has nowhere
    else to go meanwhile); the move is tried again at every scan."""
    failed = _MOVE_FAILED.setdefault(app, set())
    if str(path) in failed:
        return
    failed.add(str(path))
    folders = app[NODE].settings.folders
    named = outbox_folders(folders)
    if (partner := _partner_of(path, folders.outbox)) is not None:  # its own sent/, not another partner's
        named.insert(0, (f"the outbox's {partner}/{SENT}/ folder", _folder_of(path, folders.outbox) / SENT))
    problems = [str(p) for p in (unusable_folder(n, partners=False) for n in named) if p is not None]
    fix = problems[0] if problems else "free the disk or fix the folder's permissions; nothing else is needed"
    log.error(
        what,
        file=_dropped_as(path, folders.outbox),
        error=f"{type(exc).__name__}: {exc}",
        **({"reason": reason.decode(errors="replace").strip()} if reason is not None else {}),
        fix=fix,
    )


async def _reject(app: web.Application, path: Path, errors: bytes) -> None:
    folders = app[NODE].settings.folders
    try:
        target = await asyncio.to_thread(
            _settle, path, folders.rejected, ".errors.txt", errors, None, folders.outbox
        )
    except OSError as exc:
        what = (
            f"outbox file rejected, but it cannot be moved to the rejected folder with its reason; it stays in the "
            f"outbox's {PROCESSING}/ folder, and the move is tried again at each scan"
        )
        _unmoved(app, path, exc, what, errors)
        return
    _MOVE_FAILED.get(app, set()).discard(str(path))
    if target is not None:
        log.warning("outbox file rejected", file=_dropped_as(path, folders.outbox), moved_to=_shown(str(target)))


def _begun(path: Path) -> Path:
    return path.with_name(path.name + SUBMITTING)


def _begin(path: Path, fd: int, now: datetime, partner_id: str | None) -> None:
    """Note that this file's submission begins (its inode, as a file of the same name later is another one),
    and for which partner (its subfolder may be renamed, or its profile removed, before it is moved)."""
    held = os.fstat(fd)
    noted: dict[str, object] = {"inode": [held.st_dev, held.st_ino], "at": now.isoformat(), "partner": partner_id}
    write_atomically(_begun(path), _json(noted))


def _begun_before(path: Path, fd: int, folder_partner: str | None) -> tuple[datetime, str | None] | None:
    """When an earlier attempt on this file began (and may have been stored before a crash or an unmovable
    file), and the partner it named; None for a first attempt. A note of an earlier version names no partner:
    its folder's (``folder_partner``), as then."""
    held = os.fstat(fd)
    try:
        noted = json.loads(_begun(path).read_text())
        if noted["inode"] == [held.st_dev, held.st_ino]:
            partner = noted.get("partner", folder_partner)
            return datetime.fromisoformat(noted["at"]), None if partner is None else str(partner)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, or another file's: this attempt is the first
    return None


def _state(record: MessageRecord) -> dict[str, object]:
    state: dict[str, object] = {
        "state": record.state.value,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "updated_at": record.updated_at.isoformat(),
    }
    if record.state is State.FAILED:
        state["to_send_again"] = (
            "drop the same file in the outbox again (it goes under the same MessageId, or built anew under a new "
            "one that supersedes it, if the partner's profile changed), or "
            f"POST /api/v1/messages/{record.message_id}/retry"
        )
    return state


def _marker(record: MessageRecord) -> bytes:
    return _json(_state(record) | {"message_id": record.message_id})


def _json(data: dict[str, object]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


Followed = tuple[MessageRecord | None, str | None]
"""The message a sent file's document is carried by now (None once purged), and the MessageId of the one it was
built anew in place of, if it was."""


async def report(app: web.Application) -> int:
    """Write each sent file's new state beside it (ACKNOWLEDGED, FAILED with the reason, a retry, the message
    built anew in its place); returns how many changed. A FAILED message stays watched: a retry may still bring
    its receipt, or build it anew under a new MessageId, which the file then follows."""
    node = app[NODE]
    markers = await asyncio.to_thread(_all_markers, node.settings.folders.outbox)
    if not markers:
        return 0
    tracked = sorted({str(m["message_id"]) for m in markers.values()})
    records = await _with_successors(node.store, await node.store.find_many(Direction.OUTBOUND, tracked))
    found = {path: _followed(records.get(str(marker["message_id"])), records) for path, marker in markers.items()}
    changed = {path: now for path, now in found.items() if _moved(markers[path], now[0])}
    await asyncio.to_thread(_rewrite, changed)
    return len(changed)


async def _with_successors(store: MessageStore, records: dict[str, MessageRecord]) -> dict[str, MessageRecord]:
    """``records`` and the messages built anew in place of the superseded ones, theirs too, to the last."""
    found = dict(records)
    wanted = {r.superseded_by for r in records.values() if r.superseded_by} - found.keys()
    while wanted:
        more = await store.find_many(Direction.OUTBOUND, sorted(wanted))
        found.update(more)
        wanted = {r.superseded_by for r in more.values() if r.superseded_by} - found.keys()
    return found


def _followed(record: MessageRecord | None, records: dict[str, MessageRecord]) -> Followed:
    supersedes = None
    seen: set[str] = set()  # a successor may be a message stored before (``supersede``): never loop
    while record is not None and record.superseded_by is not None and record.message_id not in seen:
        seen.add(record.message_id)
        supersedes = record.message_id
        record = records.get(record.superseded_by)
    return record, supersedes


def _all_markers(outbox: Path) -> dict[Path, dict[str, object]]:
    """The state markers of the files sent from the outbox and from each partner subfolder."""
    found: dict[Path, dict[str, object]] = {}
    for folder in [outbox, *partner_folders(outbox)]:
        try:
            found |= _markers(folder / SENT / PENDING)
        except OSError as exc:  # one folder the gateway cannot read holds up no other's
            _told_once(folder / SENT / PENDING, exc, "give the gateway's account read and write permission on it")
    return found


def _markers(pending: Path) -> dict[Path, dict[str, object]]:
    found: dict[Path, dict[str, object]] = {}
    for path in sorted(pending.glob("*.json")) if pending.is_dir() else ():
        try:
            marker = json.loads(path.read_text())
            if not isinstance(marker, dict) or not isinstance(marker.get("message_id"), str):
                raise ValueError("not a state marker of the gateway's")
            found[path] = marker
        except (OSError, ValueError):
            log.warning("unreadable outbox state marker; removed", marker=str(path))
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                _told_once(path, exc, "remove it; the file it follows is then no longer updated")
    return found


_REPORT_TOLD: set[str] = set()
"""The outbox files whose status could not be updated, each logged once, not at every report."""


def _told_once(path: Path, exc: Exception, fix: str) -> None:
    if str(path) in _REPORT_TOLD:
        return
    _REPORT_TOLD.add(str(path))
    log.error(
        "outbox status not updated for this file (the others are; it is tried again at every report)",
        file=_shown(str(path)),
        error=f"{type(exc).__name__}: {exc}",
        fix=fix,
    )


def _moved(marker: dict[str, object], record: MessageRecord | None) -> bool:
    if record is None:  # purged by retention: nothing more will happen to it
        return True
    noted = (marker.get("message_id"), marker.get("state"), marker.get("attempts"))
    return noted != (record.message_id, record.state.value, record.attempts)


def _rewrite(changed: dict[Path, Followed]) -> None:
    """Write each file's new state; one that cannot be written (damaged, unreadable) holds up no other."""
    for marker, (record, supersedes) in changed.items():
        status = marker.parent.parent / marker.name
        try:
            _rewrite_one(marker, status, record, supersedes)
        except (OSError, ValueError) as exc:
            fix = "make it the JSON the gateway wrote again, or remove it (then it is no longer updated)"
            if record is not None:
                fix += f"; the message's state is at GET /api/v1/messages/{record.message_id}"
            _told_once(status, exc, fix)
        else:
            _REPORT_TOLD.discard(str(status))


def _rewrite_one(marker: Path, status: Path, record: MessageRecord | None, supersedes: str | None) -> None:
    if record is not None and status.exists():
        summary = json.loads(status.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not the JSON object the gateway wrote")
        summary.update(_state(record) | {"message_id": record.message_id})
        if supersedes is not None:
            summary["supersedes"] = supersedes
        if record.state is not State.FAILED:
            summary.pop("to_send_again", None)
        write_atomically(status, _json(summary), mode=shared_mode())
    if record is None or record.state is State.ACKNOWLEDGED or not status.exists():
        marker.unlink(missing_ok=True)
    else:
        write_atomically(marker, _marker(record), mode=shared_mode())


def _by_arrival(folder: Path) -> list[Path]:
    """The ``*.xml`` entries (the suffix in any case) in the order they were written (a rename keeps the time),
    so an amendment dropped after its permit goes after it whatever their names; one gone meanwhile is left out."""
    arrived: list[tuple[int, str, Path]] = []
    for path in folder.iterdir():
        if path.suffix.lower() != ".xml":
            continue
        try:
            arrived.append((path.lstat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return [path for _, _, path in sorted(arrived)]


async def scan(app: web.Application) -> int:
    """Scan the outbox, then each partner subfolder (by name); how many files this node tried. A full disk or
    a store outage ends the whole scan."""
    folders = app[NODE].settings.folders
    tried, halted = await _scan_folder(app, folders.outbox)
    for folder in [] if halted else await asyncio.to_thread(partner_folders, folders.outbox):
        try:
            done, halted = await _scan_folder(app, folder)
        except OSError:  # one partner subfolder the gateway cannot use holds up no other
            log.exception(
                "outbox partner subfolder not scanned; it is tried again at the next scan: give the gateway's "
                "account read and write permission on it",
                folder=_shown(str(folder)),
            )
            continue
        tried += done
        if halted:
            break
    return tried


async def _scan_folder(app: web.Application, folder: Path) -> tuple[int, bool]:
    """Take the files that arrived in one folder (the outbox or a partner subfolder), then submit its taken files
    (those an outage left too, and those of a node that stopped) in the order they were written: how many this
    node tried, and whether the scan of the other folders must wait too (a full disk, a store outage). The
    folder's scan stops at a file another node is submitting or one that is being written, as the files after
    it may depend on it (a cancellation on its authorization): they go once it has."""
    node = app[NODE]
    folders = node.settings.folders
    unknown = None if folder == folders.outbox else _no_such_partner(folder.name, node.partners, _own(app))
    if unknown is None:
        await asyncio.to_thread(_take_arrived, folder, folders.rejected, folders.outbox)
        return await _submit_taken(app, folder)
    refused = await asyncio.to_thread(_refuse_arrived, folder, folders.rejected, folders.outbox, unknown)
    tried, halted = await _submit_taken(app, folder)  # taken before its profile went, or by an older version
    await asyncio.to_thread(_tidy, folder)
    return refused + tried, halted


async def _submit_taken(app: web.Application, folder: Path) -> tuple[int, bool]:
    """Submit the taken files of one folder in the order they were written; as ``_scan_folder``."""
    folders = app[NODE].settings.folders
    taken = folder / PROCESSING
    await asyncio.to_thread(_finish_all, taken, folders.outbox)
    tried = 0
    for path in _by_arrival(taken) if taken.is_dir() else []:
        try:
            opened = _lock(path)
        except BlockingIOError:  # another node is submitting it
            break
        except OSError:
            log.exception(
                "outbox file not opened; it is tried again at the next scan",
                file=_dropped_as(path, folders.outbox),
            )
            continue
        if opened is None:  # another node sent or rejected it meanwhile
            continue
        try:
            if not await submit_file(app, path, opened):
                break
            tried += 1
        except Exception as exc:  # a database outage, say: the file stays taken, the next scan tries it again
            tried += 1
            if is_disk_full(exc):
                log.error(
                    "outbox file not submitted: a disk is full (the data folder's, or the SQLite database's); it "
                    "and the files after it are tried again at the next scan: make space",
                    file=_dropped_as(path, folders.outbox),
                    reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                )
                return tried, True
            log.exception(
                "outbox file not submitted; it is tried again at the next scan",
                file=_dropped_as(path, folders.outbox),
            )
            if is_unavailable(exc):  # the files after it wait: one may cancel or amend it
                return tried, True
        finally:
            if isinstance(opened, int):
                os.close(opened)
    return tried, False


def _refuse_arrived(folder: Path, rejected: Path, outbox: Path, reason: str) -> int:
    """Move each file that arrived in a subfolder naming no partner straight to the rejected folder, untaken and
    unread, ``reason`` beside it: the gateway makes nothing of its own in a folder that is no partner's (a typo,
    a folder of the national system's). How many were refused."""
    refused = 0
    for path in _by_arrival(folder):
        if path.name.startswith("."):
            continue
        try:
            refused += _refuse_unknown(path, rejected, outbox, reason)
        except FileNotFoundError:  # another node sharing the outbox moved it first
            continue
        except OSError:
            log.exception(
                "outbox file not refused; it is tried again at the next scan", file=_dropped_as(path, outbox)
            )
    return refused


def _refuse_unknown(path: Path, rejected: Path, outbox: Path, reason: str) -> bool:
    """Move one file of a subfolder naming no partner, and its attachments folder, to the rejected folder. The
    plan is kept in the outbox's own ``.processing/`` (under a name of its own, derived from the subfolder's and
    the file's), so a crash part way is finished by the outbox's next scan and the file is never lost."""
    digest = hashlib.sha256(os.fsencode(f"{path.parent.name}/{path.name}")).hexdigest()[:16]
    journal = outbox / PROCESSING / f"{digest}{REFUSING}{MOVING}"
    with _moving_out(outbox), _rejecting(outbox):
        if _present(journal) or not _present(path):  # a crash cut the move short, or another node moved it
            return False
        journal.parent.mkdir(exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        fits = len(os.fsencode(path.name)) <= MAX_NAME_BYTES
        target = _free_name(rejected / (path.name if fits else _short_name(path)), rejected)
        renamed = (
            "" if fits else f"\nIts name being too long to keep, it was moved here as {_shown(target.name)}\n"
        )
        text = f"{_dropped_as(path, outbox)} was not sent.\n\n{reason}\n{renamed}".encode()
        if not _move(path, target, journal, ".errors.txt", text, None):  # another node took it meanwhile
            return False
    log.warning("outbox file rejected", file=_dropped_as(path, outbox), moved_to=_shown(str(target)))
    return True


def _tidy(folder: Path) -> None:
    """Remove from a subfolder naming no partner the ``.processing/`` (once empty) that taking its files made (an
    older version took them before refusing them; a profile removed after they were taken). Its lock stays: a
    node that has it open (one whose profiles still name the subfolder) would hold a lock on a removed file
    while the next node made a new one, and both would move files out of it at once."""
    with contextlib.suppress(OSError):  # not there, or not empty: its files go first
        (folder / PROCESSING).rmdir()


def _take_arrived(folder: Path, rejected: Path, outbox: Path) -> None:
    for path in _by_arrival(folder):
        if not path.name.startswith("."):
            _take_or_reject(path, rejected, outbox)


def _take_or_reject(path: Path, rejected: Path, outbox: Path) -> None:
    """Take one file of the outbox or of a partner subfolder; a failure is logged and leaves the others to go."""
    try:
        if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
            _reject_long_name(path, rejected, outbox)
        else:
            _take(path)
    except FileNotFoundError:  # another node sharing the outbox took it first
        return
    except OSError:
        log.exception("outbox file not taken; it is tried again at the next scan", file=_dropped_as(path, outbox))


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
    task = asyncio.create_task(_watch(app), name="outbox-watcher")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- the folders the outbox writes to: checked before the gateway starts, and by /ready --------------------

WATCHED: web.AppKey[bool] = web.AppKey("outbox_watched", bool)
"""Set when this application watches the outbox: /ready then checks its folders."""


@dataclass(frozen=True, slots=True)
class FolderProblem:
    """A folder the outbox needs that cannot be one: the setting, its path, what is wrong and the fix."""

    key: str
    path: Path
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key} {self.what}: {self.path}; fix: {self.fix}"


OUTBOX_KEY = "[folders].outbox"


def outbox_folders(folders: FolderSettings) -> list[tuple[str, Path]]:
    """The folders the outbox writes to, each with the setting that names it."""
    return [
        (OUTBOX_KEY, folders.outbox),
        (f"[folders].outbox's {SENT}/ folder", folders.outbox / SENT),
        ("[folders].rejected", folders.rejected),
    ]


def unusable_folder(named: tuple[str, Path], *, partners: bool = True) -> FolderProblem | None:
    """Why a folder the outbox writes to cannot serve; None for a folder, or a path that can be made one. For
    the outbox itself, with ``partners``, the ``sent/`` folder of each partner subfolder that has one too: a
    permit sent from there that cannot be moved to it stays in ``.processing/``, its status written nowhere, as
    for the outbox's own ``sent/`` (/ready names it; the start stops only for the outbox's own folders)."""
    key, path = named
    inside = "the outbox" if key.startswith("[folders]") else "that partner subfolder"
    set_it = (
        f"move that file away: the gateway keeps the permits it sent, and their status, in {path.name}/ inside "
        f"{inside}"
        if key.endswith("sent/ folder")
        else f"set {key} in the configuration to a folder (it is created when missing), or move that file away"
    )
    try:
        found = path.stat()
    except FileNotFoundError:  # made when first used
        return None
    except NotADirectoryError:
        blocker = _file_above(path)
        return FolderProblem(key, path, f"goes through {blocker}, a file, not a folder", set_it)
    except OSError as exc:
        fix = "give the gateway's account access to it and to the folders above it"
        return FolderProblem(key, path, f"cannot be looked at ({exc.strerror})", fix)
    if not stat.S_ISDIR(found.st_mode):
        return FolderProblem(key, path, "names a file, not a folder", set_it)
    if not os.access(path, os.W_OK | os.X_OK):
        fix = "give the gateway's account write permission on it"
        return FolderProblem(key, path, "is a folder the gateway's account cannot write in", fix)
    return _unusable_partner_sent(path) if partners and key == OUTBOX_KEY else None


def _unusable_partner_sent(outbox: Path) -> FolderProblem | None:
    """The first partner subfolder's ``sent/`` that is there but cannot serve (a file, a folder the gateway's
    account cannot write in); a partner subfolder without one yet has it made when its first file is sent."""
    for partner in partner_folders(outbox):
        named = (f"the outbox's {partner.name}/{SENT}/ folder", partner / SENT)
        if _present(named[1]) and (problem := unusable_folder(named)) is not None:
            return problem
    return None


def _file_above(path: Path) -> Path:
    """The first part of ``path`` that is not a folder (``path`` holds one: its ``stat`` said so)."""
    return next((part for part in reversed(path.parents) if part.exists() and not part.is_dir()), path)


def make_outbox_folders(folders: FolderSettings) -> None:
    """Create the outbox's folders, or stop the start with ConfigError naming the setting, the path and the fix."""
    for key, path in outbox_folders(folders):
        with contextlib.suppress(OSError):  # what is wrong is told below, with the setting that names it
            path.mkdir(parents=True, exist_ok=True)
        problem = unusable_folder((key, path), partners=False)
        if problem is None and not path.is_dir():
            problem = FolderProblem(key, path, "cannot be created", "create it, writable by the gateway's account")
        if problem is not None:
            raise ConfigError(f"the outbox cannot work: {problem}")


async def folders_ctx(app: web.Application) -> AsyncIterator[None]:
    """First of the start: a folder the outbox cannot use stops it before anything runs (nor is "gateway
    started" logged)."""
    await asyncio.to_thread(make_outbox_folders, app[SETTINGS].folders)
    app[WATCHED] = True
    yield
