"""The outbox folder's edges: more supporting documents than a submission carries are rejected with the reason,
a rejected folder on another file system gets the file (a crash part way through the copy is finished), and
nodes sharing one outbox submit and move each file once, a stopped node's files going at the next scan."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.interfaces import folder
from gateway.interfaces.demo import Running, start_gateway
from gateway.interfaces.keys import NODE
from gateway.outbound.submit import MAX_ATTACHMENTS
from gateway.settings import FolderSettings, HttpSettings
from gateway.store import Direction
from tests.conftest import free_port, missing
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"
SHM = Path("/dev/shm")


def _numbered(harness: Harness, n: int) -> bytes:
    return example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


async def _outbound(gateway: Running) -> list[Any]:
    return list(await gateway.runner.app[NODE].store.recent(limit=50, direction=Direction.OUTBOUND, state=None))


async def test_more_supporting_documents_than_a_submission_carries_are_rejected_naming_the_limit(
    harness: Harness,
) -> None:
    """Each was opened at once: past the open-file limit the submission failed with 'Too many open files', and
    was tried again at every scan, for ever."""
    be = await harness.start("BE-FAMHP")
    outbox, rejected = be.settings.folders.outbox, be.settings.folders.rejected
    (outbox / "ia.attachments").mkdir(parents=True)
    for n in range(MAX_ATTACHMENTS + 1):
        (outbox / "ia.attachments" / f"scan-{n:03d}.pdf").write_bytes(b"%d" % n)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))

    assert await folder.scan(be.runner.app) == 1

    reason = (rejected / "ia.xml.errors.txt").read_text()
    assert f"ia.attachments/ holds {MAX_ATTACHMENTS + 1} files" in reason
    assert f"at most {MAX_ATTACHMENTS} supporting documents" in reason and "fewer files" in reason
    assert len(list((rejected / "ia.attachments").iterdir())) == MAX_ATTACHMENTS + 1
    assert await _outbound(be) == []
    assert await folder.scan(be.runner.app) == 0


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A rejected folder on another file system than the test's (tmpfs)."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        missing("there is no writable /dev/shm", locally="no /dev/shm to put a folder on another file system")
    path = SHM / f"permit-gateway-rejected-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _on_two_file_systems(harness: Harness, rejected: Path) -> Running:
    base = harness.settings("BE-FAMHP").folders
    be = await harness.start(
        "BE-FAMHP", folders=FolderSettings(outbox=base.outbox, inbox=base.inbox, rejected=rejected)
    )
    be.settings.folders.outbox.mkdir(parents=True, exist_ok=True)
    rejected.mkdir()
    if os.stat(rejected).st_dev == os.stat(be.settings.folders.outbox).st_dev:
        missing(
            "/dev/shm is on the test folders' file system",
            locally="/dev/shm is on the same file system as the test's folders",
        )
    return be


def _refused(outbox: Path) -> None:
    (outbox / "bad.attachments").mkdir()
    (outbox / "bad.attachments" / "scan.pdf").write_bytes(b"%PDF-1.7 the paper original")
    (outbox / "bad.xml").write_bytes(b"<not-a-permit/>")
    (outbox / "linked.xml").symlink_to(outbox / "nowhere.xml")


def _rejected_whole(outbox: Path, rejected: Path) -> None:
    assert _tree(rejected) == [
        "bad.attachments",
        "bad.attachments/scan.pdf",
        "bad.xml",
        "bad.xml.errors.txt",
        "linked.xml",
        "linked.xml.errors.txt",
    ]
    assert (rejected / "bad.xml").read_bytes() == b"<not-a-permit/>"
    assert (rejected / "bad.attachments" / "scan.pdf").read_bytes() == b"%PDF-1.7 the paper original"
    assert "bad.xml was not sent" in (rejected / "bad.xml.errors.txt").read_text()
    assert (rejected / "linked.xml").is_symlink()  # moved as the link it is
    assert list((outbox / folder.PROCESSING).iterdir()) == []


async def test_a_rejected_folder_on_another_file_system_gets_the_file_and_its_reason(
    harness: Harness, elsewhere: Path
) -> None:
    """A rename cannot cross file systems: the file stayed in .processing/ with its plan, for ever, and the
    national system never got its .errors.txt."""
    be = await _on_two_file_systems(harness, elsewhere)
    outbox = be.settings.folders.outbox
    _refused(outbox)

    assert await folder.scan(be.runner.app) == 2

    _rejected_whole(outbox, elsewhere)
    assert await folder.scan(be.runner.app) == 0


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


def _crashing(real: Callable[..., Any], at: int, *, after: bool) -> Callable[..., Any]:
    """``real``, dying at its ``at``-th call on a file or folder in the outbox (before or after doing it)."""
    calls = [0]

    def step(source: Any, *rest: Any) -> Any:
        if "outbox" in Path(source).parts:
            calls[0] += 1
            if calls[0] == at:
                if after:
                    real(source, *rest)
                raise Crash
        return real(source, *rest)

    return step


@pytest.mark.parametrize(
    ("step", "at", "after"),
    [
        ("_copy_file", 1, False),  # copying the attachments folder
        ("_copy_file", 2, False),  # copying the permit
        ("_remove", 1, False),  # the attachments' copy is whole, the original is still there
        ("_remove", 1, True),  # the original is gone, the copy has its hidden name yet
        ("_remove", 2, True),
    ],
)
async def test_a_copy_to_another_file_system_a_crash_cut_short_is_finished_by_the_next_scan(
    harness: Harness, elsewhere: Path, monkeypatch: pytest.MonkeyPatch, step: str, at: int, after: bool
) -> None:
    be = await _on_two_file_systems(harness, elsewhere)
    outbox = be.settings.folders.outbox
    _refused(outbox)
    (outbox / "linked.xml").unlink()
    with monkeypatch.context() as crashing:
        crashing.setattr(folder, step, _crashing(getattr(folder, step), at, after=after))
        with pytest.raises(Crash):
            await folder.scan(be.runner.app)

    await folder.scan(be.runner.app)  # the restarted gateway's first scan

    assert _tree(elsewhere) == ["bad.attachments", "bad.attachments/scan.pdf", "bad.xml", "bad.xml.errors.txt"]
    assert (elsewhere / "bad.attachments" / "scan.pdf").read_bytes() == b"%PDF-1.7 the paper original"
    assert list((outbox / folder.PROCESSING).iterdir()) == []


@pytest.fixture
async def second_node(harness: Harness) -> AsyncIterator[Callable[[], Any]]:
    """Another node of BE's gateway: another port, the same store, data folder and outbox."""
    started: list[Running] = []

    async def start() -> Running:
        settings = harness.settings("BE-FAMHP")
        http = HttpSettings(host="127.0.0.1", port=free_port())
        started.append(await start_gateway("BE", settings.model_copy(update={"http": http}), harness.clock))
        return started[-1]

    yield start
    for node in started:
        await node.runner.cleanup()


async def test_two_nodes_sharing_one_outbox_submit_and_move_each_file_once(
    harness: Harness, second_node: Callable[[], Any]
) -> None:
    """Both submitted every taken file: FileNotFoundError tracebacks, and a second sent/*.json for each file,
    describing one that does not exist."""
    one = await harness.start("BE-FAMHP")
    two = await second_node()
    outbox = one.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    for n in range(1, 7):
        (outbox / f"p{n}.xml").write_bytes(_numbered(harness, n))
    (outbox / "bad.xml").write_bytes(b"<not-a-permit/>")

    done = await asyncio.gather(folder.scan(one.runner.app), folder.scan(two.runner.app))
    done += await asyncio.gather(folder.scan(one.runner.app), folder.scan(two.runner.app))

    assert sum(done) == 7
    sent = outbox / "sent"
    assert sorted(p.name for p in sent.glob("*.json")) == [f"p{n}.xml.json" for n in range(1, 7)]
    assert sorted(p.name for p in sent.glob("*.xml")) == [f"p{n}.xml" for n in range(1, 7)]
    assert all(not json.loads(p.read_text())["submitted_before"] for p in sent.glob("*.json"))
    assert _tree(one.settings.folders.rejected) == ["bad.xml", "bad.xml.errors.txt"]
    assert list((outbox / folder.PROCESSING).iterdir()) == []
    assert len(await _outbound(one)) == 6


async def test_a_taken_file_another_node_holds_is_left_to_it_and_goes_once_that_node_is_gone(
    harness: Harness,
) -> None:
    """A node holds a lock on a file while it submits it; a node that stopped holds none, so what it had taken
    goes at the next scan of any node, itself restarted included."""
    be = await harness.start("BE-FAMHP")
    taken = be.settings.folders.outbox / folder.PROCESSING
    taken.mkdir(parents=True)
    (taken / "p1.xml").write_bytes(_numbered(harness, 1))

    with (taken / "p1.xml").open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another node, at work on it
        assert await folder.scan(be.runner.app) == 0
        assert (taken / "p1.xml").exists() and await _outbound(be) == []
    assert await folder.scan(be.runner.app) == 1  # that node stopped

    assert (be.settings.folders.outbox / "sent" / "p1.xml.json").exists()
    assert len(await _outbound(be)) == 1
