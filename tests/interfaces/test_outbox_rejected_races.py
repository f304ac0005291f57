"""The rejected folder is shared by the outbox and all its partner subfolders, and by every node watching them: two
nodes rejecting files of the same name from different folders must not both choose the same free name there (the
second found the first's file in its place: it overwrote the first's reason, logged "moved" and left its file to be
submitted again; on another file system it took the first's hidden copy for its own and deleted its own file). Two
"nodes" are two applications in one process, each move in a thread of its own, as a node's are; events force the
interleaving the locks used to allow."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.interfaces import folder
from gateway.interfaces.keys import NODE
from gateway.store import State
from tests.e2e.conftest import Harness, harness  # noqa: F401 - a fixture
from tests.interfaces.test_outbox_partner_folders import _belgium_with_two_swiss_profiles, _dropped, _numbered
from tests.interfaces.test_partner_choice_review import _outbound_parties

WAIT = 5.0
"""How long a forced interleaving waits for the other side at most (a step that never comes fails the test)."""


def _node(outbox: Path, rejected: Path) -> web.Application:
    """What ``folder._reject`` needs of a node: its folders."""
    app = web.Application()
    app[NODE] = SimpleNamespace(
        settings=SimpleNamespace(folders=SimpleNamespace(outbox=outbox, rejected=rejected))
    )
    return app


def _taken(outbox: Path, where: str, body: bytes) -> Path:
    path = outbox / where / folder.PROCESSING / "p.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def _permits_in(rejected: Path) -> dict[bytes, str]:
    """Each permit in the rejected folder, with the reason beside it; no hidden copy may be left over."""
    names = sorted(p.name for p in rejected.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    return {
        (rejected / n).read_bytes(): (rejected / f"{n}.errors.txt").read_text()
        for n in names
        if n.endswith(".xml")
    }


async def _two_nodes_reject(outbox: Path, rejected: Path, pause: str) -> list[str]:
    """Node A rejects outbox/p.xml and is held at ``pause`` (``_free_name``: it has chosen the name; ``_copy``:
    it has copied its file to the other file system, not yet renamed the copy); meanwhile node B rejects
    ch-alt/p.xml. The names B chose while A was held."""
    a = _taken(outbox, ".", b"<permit>A</permit>")
    b = _taken(outbox, "ch-alt", b"<permit>B</permit>")
    a_held, release = threading.Event(), threading.Event()
    chosen_by_b: list[str] = []
    free_name, copy = folder._free_name, folder._copy

    def hold_a() -> None:
        a_held.set()
        assert release.wait(WAIT)

    def choosing(source: Path, where: Path) -> Path:
        name = free_name(source, where)
        if source == b:
            chosen_by_b.append(name.name)
        elif pause == "_free_name" and source == a:
            hold_a()
        return name

    def copying(source: Path, copied: Path) -> None:
        copy(source, copied)
        if source == a:
            hold_a()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder, "_free_name", choosing)
        patch.setattr(folder, "_copy", copying)
        node_a, node_b = _node(outbox, rejected), _node(outbox, rejected)
        a_rejects = asyncio.create_task(folder._reject(node_a, a, b"outbox/p.xml: why A\n"))
        assert await asyncio.to_thread(a_held.wait, WAIT), "node A never got to its move"
        b_rejects = asyncio.create_task(folder._reject(node_b, b, b"ch-alt/p.xml: why B\n"))
        await asyncio.sleep(0.5)  # B's thread runs meanwhile: it must wait for A's move to end
        while_a_moves = list(chosen_by_b)
        release.set()
        await asyncio.gather(a_rejects, b_rejects)
    return while_a_moves


async def test_two_nodes_rejecting_from_two_folders_never_choose_the_same_name_in_the_rejected_folder(
    tmp_path: Path,
) -> None:
    outbox, rejected = tmp_path / "outbox", tmp_path / "rejected"

    while_a_moves = await _two_nodes_reject(outbox, rejected, "_free_name")

    assert while_a_moves == [], "node B chose a name in the rejected folder while node A's move into it was on"
    assert _permits_in(rejected) == {
        b"<permit>A</permit>": "outbox/p.xml: why A\n",
        b"<permit>B</permit>": "ch-alt/p.xml: why B\n",
    }
    assert not list(outbox.rglob("p.xml*")), "a rejected file left taken is submitted again"


@pytest.fixture
def other_disk(tmp_path: Path) -> Iterator[Path]:
    """A rejected folder on another file system than the outbox: /dev/shm (tmpfs on Linux, as on the CI's
    Debian machine). Where it is not, the test fails saying so rather than passing untried."""
    shm = Path("/dev/shm")
    assert shm.is_dir() and os.access(shm, os.W_OK), "this test needs a writable /dev/shm (tmpfs) as another disk"
    assert os.stat(shm).st_dev != os.stat(tmp_path).st_dev, f"/dev/shm is on the same file system as {tmp_path}"
    made = Path(tempfile.mkdtemp(prefix="rejected-", dir=shm))
    yield made / "rejected"
    shutil.rmtree(made)


async def test_on_another_file_system_a_node_never_takes_another_nodes_copy_for_its_own(
    tmp_path: Path, other_disk: Path
) -> None:
    """Node A has copied its file whole to the rejected folder's disk, under a hidden name, and not yet renamed
    the copy; node B, rejecting a file of the same name, found that copy under the name it would give its own,
    took it for its own and deleted its own file: a permit lost."""
    outbox = tmp_path / "outbox"

    while_a_moves = await _two_nodes_reject(outbox, other_disk, "_copy")

    assert _permits_in(other_disk) == {
        b"<permit>A</permit>": "outbox/p.xml: why A\n",
        b"<permit>B</permit>": "ch-alt/p.xml: why B\n",
    }, "a permit was lost"
    assert while_a_moves == []
    assert not list(outbox.rglob("p.xml*"))


def test_a_move_a_crash_left_undone_whose_name_another_file_took_goes_under_the_next_free_name(
    tmp_path: Path,
) -> None:
    """The plan's name was free when it was chosen; another node's move, which cannot see the plan, took it
    before the next scan finished the plan. The file is neither left taken (to be sent again) nor does its
    reason replace the other file's."""
    outbox, rejected = tmp_path / "outbox", tmp_path / "rejected"
    mine = _taken(outbox, "ch-alt", b"<permit>mine</permit>")
    journal = mine.with_name(mine.name + folder.MOVING)
    plan = {"file": mine.name, "target": str(rejected / "p.xml"), "beside": ".errors.txt", "text": "why mine\n"}
    journal.write_text(json.dumps(plan))  # written, then the node stopped
    rejected.mkdir()
    (rejected / "p.xml").write_bytes(b"<permit>theirs</permit>")
    (rejected / "p.xml.errors.txt").write_text("why theirs\n")

    folder._finish(journal)

    assert _permits_in(rejected) == {
        b"<permit>theirs</permit>": "why theirs\n",
        b"<permit>mine</permit>": "why mine\n",
    }
    assert not mine.exists() and not journal.exists()


def test_a_file_another_node_took_while_it_was_refused_gets_no_reason_in_the_rejected_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes that disagree about a subfolder for a moment (one has loaded a new profile, the other not yet):
    one refuses its file while the other takes it to send it. The file is sent: no "was not sent" beside nothing
    in the rejected folder, and no plan left behind."""
    outbox, rejected = tmp_path / "outbox", tmp_path / "rejected"
    path = _dropped(outbox, "ch-new/ia.xml", b"<permit/>")
    finish = folder._finish

    def taken_by_the_other_node_first(journal: Path) -> Any:
        folder._take(path)
        return finish(journal)

    monkeypatch.setattr(folder, "_finish", taken_by_the_other_node_first)

    refused = folder._refuse_unknown(path, rejected, outbox, "the outbox's subfolder ch-new/ names no partner")

    assert not refused
    assert list(rejected.iterdir()) == [], "a reason for a file that is not there"
    assert (outbox / "ch-new" / folder.PROCESSING / "ia.xml").read_bytes() == b"<permit/>"
    assert not list((outbox / folder.PROCESSING).glob(f"*{folder.MOVING}"))


def test_tidying_a_subfolder_naming_no_partner_never_removes_a_lock_another_node_may_hold(tmp_path: Path) -> None:
    """Node B (whose profiles still name the subfolder) has opened its lock to move a file out of it; node A tidies
    the subfolder. Had A removed the lock file, B would lock the removed file while node C made and locked a new
    one: both moving files out of the same .processing/ at once."""
    sub = tmp_path / "outbox" / "ch-gone"
    (sub / folder.PROCESSING).mkdir(parents=True)
    (sub / folder.MOVES_LOCK).touch()
    with (sub / folder.MOVES_LOCK).open("a") as node_b:
        folder._tidy(sub)  # node A
        fcntl.flock(node_b, fcntl.LOCK_EX)
        with (sub / folder.MOVES_LOCK).open("a") as node_c, pytest.raises(BlockingIOError):
            fcntl.flock(node_c, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (sub / folder.PROCESSING).exists(), "the empty .processing/ goes"


def test_one_damaged_status_file_holds_up_no_other_folders_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ch-alt/sent/ia.xml.json damaged (by hand, a disk error); ch-swissmedic's, after it, is still updated, at
    every report, and the damaged one is logged once, not at every report."""
    outbox = tmp_path / "outbox"
    for sub, body in (("ch-alt", "{not json"), ("ch-swissmedic", '{"state": "SENT"}')):
        sent = outbox / sub / "sent"
        (sent / folder.PENDING).mkdir(parents=True)
        (sent / "ia.xml.json").write_text(body)
        marker = {"message_id": f"{sub}@be", "state": "SENT", "attempts": 1}
        (sent / folder.PENDING / "ia.xml.json").write_text(json.dumps(marker))
    acknowledged = SimpleNamespace(message_id="m@be", state=State.ACKNOWLEDGED, attempts=1)
    monkeypatch.setattr(folder, "_state", lambda record: {"state": record.state.value})

    with capture_logs() as logs:
        markers = folder._all_markers(outbox)
        folder._rewrite({m: (acknowledged, None) for m in markers})
        for marker in markers:  # the next report: the damaged one is still there
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"message_id": "m@be", "state": "SENT", "attempts": 1}))
        folder._rewrite({m: (acknowledged, None) for m in markers})

    status = json.loads((outbox / "ch-swissmedic" / "sent" / "ia.xml.json").read_text())
    assert status == {"state": "ACKNOWLEDGED", "message_id": "m@be"}, status
    told = [e for e in logs if e["log_level"] == "error"]
    assert len(told) == 1, told
    assert told[0]["file"].endswith("ch-alt/sent/ia.xml.json") and "remove it" in told[0]["fix"], told


def test_a_state_marker_that_names_no_message_is_left_out_and_removed(tmp_path: Path) -> None:
    """Valid JSON, but no marker of the gateway's: the report's look-up of its MessageId failed for every folder."""
    pending = tmp_path / "outbox" / "ch-alt" / "sent" / folder.PENDING
    pending.mkdir(parents=True)
    (pending / "bad.xml.json").write_text("[1, 2]")
    (pending / "ia.xml.json").write_text(json.dumps({"message_id": "m@be", "state": "SENT", "attempts": 1}))

    assert list(folder._all_markers(tmp_path / "outbox")) == [pending / "ia.xml.json"]
    assert not (pending / "bad.xml.json").exists()


async def test_a_sent_file_whose_subfolder_was_renamed_before_it_left_processing_is_not_rejected_as_unsent(
    harness: Harness,  # noqa: F811
) -> None:
    """Stored for ch-alt, it could not be moved to ch-alt/sent/ (a file of that name, as /ready says); then the
    subfolder was renamed. It was rejected as "was not sent", and dropping it again, as that said, sent it
    twice. The store answers it, for the partner it was submitted for, and it goes to the renamed folder's
    sent/."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 1))
    (outbox / "ch-alt" / "sent").write_text("not a folder")
    await folder.scan(be.runner.app)
    assert await _outbound_parties(harness) == ["CH-ALT"]
    assert (outbox / "ch-alt" / folder.PROCESSING / "ia.xml").is_file()

    (outbox / "ch-alt" / "sent").unlink()
    (outbox / "ch-alt").rename(outbox / "ch-alt-old")
    await folder.scan(be.runner.app)

    rejected = be.settings.folders.rejected
    assert not rejected.exists() or list(rejected.iterdir()) == [], [p.name for p in rejected.iterdir()]
    status = json.loads((outbox / "ch-alt-old" / "sent" / "ia.xml.json").read_text())
    assert (status["partner"], status["submitted_before"]) == ("ch-alt", False), status
    assert await _outbound_parties(harness) == ["CH-ALT"]
    assert sorted(p.relative_to(outbox).as_posix() for p in outbox.rglob("ia.xml*")) == [
        "ch-alt-old/sent/.pending/ia.xml.json",
        "ch-alt-old/sent/ia.xml",
        "ch-alt-old/sent/ia.xml.json",
    ], "nothing left taken, to go again"
