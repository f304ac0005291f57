"""The watched outbox: a file is taken before it is read, so one renamed onto its name meanwhile is a new
document; symbolic links and oversized files are refused with the reason beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.interfaces import folder
from gateway.interfaces.demo import Running
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"


async def _gateway_and_outbox(harness: Harness) -> tuple[Running, Path]:
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    return be, outbox


def _numbered(harness: Harness, n: int) -> bytes:
    return example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())


async def test_a_file_renamed_onto_the_same_name_during_a_submission_is_sent_as_a_new_document(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    (outbox / "permit.xml").write_bytes(_numbered(harness, 1))
    submitter = be.runner.app[NODE].submitter
    real_submit = submitter.submit

    async def next_one_arrives(data: bytes, **kw: Any) -> Any:
        if b"BE-IA-2026-0001" in data:  # the national system renames its next permit onto the same name
            (outbox / "permit.xml.part").write_bytes(_numbered(harness, 2))
            (outbox / "permit.xml.part").replace(outbox / "permit.xml")
        return await real_submit(data, **kw)

    monkeypatch.setattr(submitter, "submit", next_one_arrives)
    assert await folder.scan(be.runner.app) == 1
    assert await folder.scan(be.runner.app) == 1

    sent = outbox / "sent"
    first, second = (json.loads((sent / name).read_text()) for name in ("permit.xml.json", "permit.1.xml.json"))
    assert first["message_id"] != second["message_id"]
    assert b"BE-IA-2026-0001" in (sent / "permit.xml").read_bytes()
    assert b"BE-IA-2026-0002" in (sent / "permit.1.xml").read_bytes()


async def test_symbolic_links_are_refused_so_nothing_outside_the_outbox_is_sent(
    harness: Harness, tmp_path: Path
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    rejected = be.settings.folders.rejected
    secret = tmp_path / "gateway-key.pem"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    (outbox / "linked.xml").symlink_to(tmp_path / "elsewhere.xml")
    (outbox / "ia.attachments").mkdir()
    (outbox / "ia.attachments" / "scan.pdf").symlink_to(secret)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))

    assert await folder.scan(be.runner.app) == 2

    assert not (outbox / "sent").exists()
    for name, link in (("linked.xml", "linked.xml"), ("ia.xml", "scan.pdf")):
        reason = (rejected / f"{name}.errors.txt").read_text()
        assert f"{link} is a symbolic link; the outbox takes regular files only" in reason
    assert (rejected / "linked.xml").is_symlink()  # moved as the link it is, pointing nowhere
    assert list((outbox / folder.PROCESSING).iterdir()) == []
    assert await folder.scan(be.runner.app) == 0  # nothing is refused again at the next scan


async def test_a_file_larger_than_a_permit_may_be_is_refused_before_it_is_read(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    monkeypatch.setattr(folder, "MAX_FILE_BYTES", 1000)
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    size = (outbox / "ia.xml").stat().st_size

    assert await folder.scan(be.runner.app) == 1

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert f"the file is {size} bytes; a permit document may have up to 1000 bytes" in reason


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


def _cut_short(steps: int) -> Any:
    """A ``folder._finish`` that carries out the plan's first ``steps`` steps (the attachments' rename, the
    file's rename, the file beside it) and then dies, leaving the plan behind."""

    def finish(journal: Path) -> None:
        plan = json.loads(journal.read_text())
        source, target = journal.parent / plan["file"], Path(plan["target"])
        done = [
            lambda: source.with_suffix(".attachments").replace(target.with_suffix(".attachments")),
            lambda: source.replace(target),
            lambda: target.with_name(target.name + plan["beside"]).write_text(plan["text"]),
        ]
        for step in done[:steps]:
            step()
        raise Crash

    return finish


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_move_a_crash_cut_short_is_finished_by_the_next_scan_and_nothing_is_sent_twice(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    (outbox / "ia.attachments").mkdir()
    (outbox / "ia.attachments" / "scan.pdf").write_bytes(b"%PDF-1.7 the paper original")
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    with monkeypatch.context() as crashing:
        crashing.setattr(folder, "_finish", _cut_short(steps))
        with pytest.raises(Crash):
            await folder.scan(be.runner.app)

    await folder.scan(be.runner.app)  # the restarted gateway's first scan

    sent = outbox / "sent"
    status = json.loads((sent / "ia.xml.json").read_text())
    assert sorted(p.name for p in sent.iterdir()) == [".pending", "ia.attachments", "ia.xml", "ia.xml.json"]
    assert [p.name for p in (sent / "ia.attachments").iterdir()] == ["scan.pdf"]
    assert status["attachments"] and status["attachments"][0]["filename"] == "scan.pdf"
    assert json.loads((sent / ".pending" / "ia.xml.json").read_text())["message_id"] == status["message_id"]
    assert list((outbox / folder.PROCESSING).iterdir()) == []
    assert not be.settings.folders.rejected.exists() or list(be.settings.folders.rejected.iterdir()) == []
    messages = await be.runner.app[NODE].store.find_many(Direction.OUTBOUND, [status["message_id"]])
    assert len(messages) == 1


async def test_files_are_sent_in_the_order_they_arrived_not_by_name(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An amendment or cancellation dropped after its permit must not go first because its name sorts first."""
    be, outbox = await _gateway_and_outbox(harness)
    for n, (name, written) in enumerate((("z-first.xml", 1_000), ("a-second.xml", 2_000), ("m-third.xml", 3_000))):
        (outbox / name).write_bytes(_numbered(harness, n + 1))
        os.utime(outbox / name, ns=(written * 10**9, written * 10**9))
    submitter = be.runner.app[NODE].submitter
    real_submit, order = submitter.submit, []

    async def recording(data: bytes, **kw: Any) -> Any:
        order.append(data.split(b"<DocumentNumber>")[1].split(b"<")[0].decode())
        return await real_submit(data, **kw)

    monkeypatch.setattr(submitter, "submit", recording)
    assert await folder.scan(be.runner.app) == 3
    assert order == ["BE-IA-2026-0001", "BE-IA-2026-0002", "BE-IA-2026-0003"]
