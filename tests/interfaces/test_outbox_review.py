"""The outbox folder's review fixes: files go in the order written with several nodes, a file the gateway cannot
read or a supporting document it would leave out is rejected saying why, names in sent/ and rejected/ are never
reused over an earlier file's status or reason, a file written in place waits until it is whole, a crash between
storing and moving does not make a file 'submitted before', and links swapped in after a check are not followed."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.exc import OperationalError

from gateway.files import write_atomically
from gateway.interfaces import folder
from gateway.interfaces.demo import Running, redate, start_gateway
from gateway.interfaces.keys import NODE
from gateway.settings import HttpSettings
from gateway.store import Direction
from tests.conftest import free_port
from tests.e2e.conftest import EXAMPLES, Harness, example, harness  # noqa: F401

IA = "BE-IA-2026-0001.xml"
UNPRIVILEGED = "OUTBOX_REVIEW_WITHOUT_DAC"
ROOT = Path(__file__).resolve().parents[2]


def _numbered(harness: Harness, n: int) -> bytes:  # noqa: F811
    return example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


async def _outbound(gateway: Running) -> list[Any]:
    return list(await gateway.runner.app[NODE].store.recent(limit=50, direction=Direction.OUTBOUND, state=None))


async def _be(harness: Harness, store_url: str | None = None) -> Running:  # noqa: F811
    sections = (
        {"store": harness.settings("BE-FAMHP").store.model_copy(update={"url": store_url})} if store_url else {}
    )
    be = await harness.start("BE-FAMHP", **sections)
    be.settings.folders.outbox.mkdir(parents=True, exist_ok=True)
    return be


def _cancellation(harness: Harness) -> bytes:  # noqa: F811
    """A Cancellation of BE-IA-2026-0001 (valid only once that ImportAuthorization was submitted)."""
    text = (EXAMPLES / "valid" / "DE-CA-2026-0003.xml").read_text()
    for old, new in (
        ("DE-CA-2026-0003", "BE-CA-2026-0001"),
        ("DE-IA-2026-0417", "BE-IA-2026-0001"),
        ("<CountryCode>DE</CountryCode>", "<CountryCode>BE</CountryCode>"),
        ("DE-BFARM", "BE-FAMHP"),
        (
            "Federal Institute for Drugs and Medical Devices (BfArM), Federal Opium Agency",
            "Federal Agency for Medicines and Health Products (FAMHP)",
        ),
        ("<ImportingCountry>DE", "<ImportingCountry>BE"),
        ("<ExportingCountry>NL", "<ExportingCountry>CH"),
        ("<IssueDate>2026-11-16</IssueDate>", "<IssueDate>2026-11-10</IssueDate>"),
    ):
        text = text.replace(old, new)
    as_of = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
    return redate(text.encode(), (harness.clock.now().date() - as_of).days)


async def test_with_two_nodes_a_cancellation_waits_for_the_authorization_written_before_it(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node B skipped the ImportAuthorization node A was submitting and submitted the Cancellation written after
    it first: rejected X-023, the authorization it cancels not known yet."""
    one = await _be(harness, store_url)
    settings = one.settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=free_port())})
    two = await start_gateway("BE", settings, harness.clock)
    try:
        outbox = one.settings.folders.outbox
        (outbox / "z-ia.xml").write_bytes(example(IA, today=harness.clock.now()))
        (outbox / "a-ca.xml").write_bytes(_cancellation(harness))
        os.utime(outbox / "z-ia.xml", ns=(10**12, 10**12))
        os.utime(outbox / "a-ca.xml", ns=(2 * 10**12, 2 * 10**12))
        submitter = one.runner.app[NODE].submitter
        real = submitter.submit

        async def slow(data: bytes, **kw: Any) -> Any:  # signing, a large attachment
            await asyncio.sleep(1.0)
            return await real(data, **kw)

        monkeypatch.setattr(submitter, "submit", slow)
        first = asyncio.create_task(folder.scan(one.runner.app))
        await asyncio.sleep(0.3)
        await asyncio.gather(first, folder.scan(two.runner.app))
        await folder.scan(two.runner.app)

        assert _tree(one.settings.folders.rejected) == []
        assert sorted(p.name for p in (outbox / "sent").glob("*.json")) == ["a-ca.xml.json", "z-ia.xml.json"]
        assert len(await _outbound(one)) == 2
    finally:
        await two.runner.cleanup()


async def test_a_file_the_gateway_cannot_read_is_rejected_saying_so(harness: Harness) -> None:  # noqa: F811
    """The unreadable permit vanished into .processing/ without a word and later files of its name waited for
    ever; an unreadable supporting document was tried again at every scan, for ever. Root reads anything, so
    as root the test runs again without the capabilities that let it (as the gateway's service account)."""
    if os.geteuid() == 0 and not os.environ.get(UNPRIVILEGED):
        done = await asyncio.to_thread(_without_dac_override)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
        assert "1 passed" in done.stdout
        return
    be = await _be(harness)
    outbox, rejected = be.settings.folders.outbox, be.settings.folders.rejected
    (outbox / "locked.xml").write_bytes(_numbered(harness, 1))
    os.chmod(outbox / "locked.xml", 0)
    (outbox / "b.attachments").mkdir()
    (outbox / "b.attachments" / "scan.pdf").write_bytes(b"%PDF")
    os.chmod(outbox / "b.attachments" / "scan.pdf", 0)
    (outbox / "b.xml").write_bytes(_numbered(harness, 2))
    with pytest.raises(PermissionError):
        (outbox / "locked.xml").open("rb")

    assert await folder.scan(be.runner.app) == 2

    assert "the gateway's account cannot read locked.xml" in (rejected / "locked.xml.errors.txt").read_text()
    reason = (rejected / "b.xml.errors.txt").read_text()
    assert "cannot read b.attachments/scan.pdf" in reason and "give it read permission" in reason
    assert _tree(outbox / folder.PROCESSING) == [] and await _outbound(be) == []
    (outbox / "locked.xml").write_bytes(_numbered(harness, 1))  # readable now: the next file of its name goes
    assert await folder.scan(be.runner.app) == 1
    assert (outbox / "sent" / "locked.xml.json").exists()


def _without_dac_override() -> subprocess.CompletedProcess[str]:
    test = f"{Path(__file__).relative_to(ROOT)}::test_a_file_the_gateway_cannot_read_is_rejected_saying_so"
    drop = "-dac_override,-dac_read_search"
    command = ["setpriv", "--bounding-set", drop, "--inh-caps", drop, sys.executable, "-m", "pytest"]
    # the plugins this test does not use: loading schemathesis's rewrites its every module, uncached, for seconds
    unused = [f"-pno:{name}" for name in ("cacheprovider", "schemathesis", "hypothesispytest", "xdist")]
    return subprocess.run(
        [*command, *unused, "-q", test],
        cwd=ROOT,
        env=os.environ | {UNPRIVILEGED: "1", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_a_dangling_link_in_rejected_does_not_trap_a_later_file_of_its_name(harness: Harness) -> None:  # noqa: F811
    be = await _be(harness)
    outbox, rejected = be.settings.folders.outbox, be.settings.folders.rejected
    (outbox / "permit.xml").symlink_to("permit-real.xml")  # relative: dangling once moved to rejected/
    await folder.scan(be.runner.app)
    (outbox / "permit.xml").write_bytes(b"<not-a-permit/>")

    assert await folder.scan(be.runner.app) == 1
    assert await folder.scan(be.runner.app) == 0

    assert "symbolic link" in (rejected / "permit.xml.errors.txt").read_text()
    assert (rejected / "permit.1.xml").read_bytes() == b"<not-a-permit/>"
    assert "permit.1.xml was not sent" not in (rejected / "permit.1.xml.errors.txt").read_text()
    assert _tree(outbox / folder.PROCESSING) == []


async def test_a_name_used_again_in_sent_keeps_the_earlier_permits_status(harness: Harness) -> None:  # noqa: F811
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    sent = outbox / "sent"
    (outbox / "permit.xml").write_bytes(_numbered(harness, 1))
    await folder.scan(be.runner.app)
    first = json.loads((sent / "permit.xml.json").read_text())["message_id"]
    (sent / "permit.xml").rename(harness.tmp / "archived.xml")  # the national system archives it, reads the .json
    (outbox / "permit.xml").write_bytes(_numbered(harness, 2))

    await folder.scan(be.runner.app)

    assert json.loads((sent / "permit.xml.json").read_text())["message_id"] == first
    second = json.loads((sent / "permit.1.xml.json").read_text())["message_id"]
    assert second != first and (sent / "permit.1.xml").exists()
    assert json.loads((sent / folder.PENDING / "permit.xml.json").read_text())["message_id"] == first


async def test_a_file_written_in_place_waits_until_it_is_whole(harness: Harness) -> None:  # noqa: F811
    be = await _be(harness)
    outbox, rejected = be.settings.folders.outbox, be.settings.folders.rejected
    data = _numbered(harness, 1)
    with (outbox / "ia.xml").open("wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        assert await folder.scan(be.runner.app) == 0
        writer.write(data[len(data) // 2 :])
        assert await folder.scan(be.runner.app) == 0
    assert _tree(rejected) == []

    assert await folder.scan(be.runner.app) == 1
    assert (outbox / "sent" / "ia.xml.json").exists() and _tree(rejected) == []


async def test_where_a_lease_cannot_tell_a_half_written_file_waits_until_it_settles(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file of another owner, or on a network share: no lease tells whether it is still being written."""
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    real = fcntl.fcntl

    def no_lease(fd: int, command: int, *rest: Any) -> Any:
        if command == fcntl.F_SETLEASE:
            raise PermissionError(errno.EACCES, "not the file's owner")
        return real(fd, command, *rest)

    monkeypatch.setattr(fcntl, "fcntl", no_lease)
    (outbox / "ia.xml").write_bytes(b"<ImportAuthorization>")
    assert await folder.scan(be.runner.app) == 0
    old = time.time() - folder.SETTLE_SECONDS - 1
    os.utime(outbox / folder.PROCESSING / "ia.xml", (old, old))

    assert await folder.scan(be.runner.app) == 1
    assert "not well-formed" in (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()


async def test_supporting_documents_in_a_subfolder_are_rejected_naming_it(harness: Harness) -> None:  # noqa: F811
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    (outbox / "ia.attachments" / "scans").mkdir(parents=True)
    (outbox / "ia.attachments" / "cover.pdf").write_bytes(b"%PDF cover")
    (outbox / "ia.attachments" / "scans" / "page1.pdf").write_bytes(b"%PDF page1")
    (outbox / "ia.attachments" / ".signed-original.pdf").write_bytes(b"%PDF hidden")
    (outbox / "ia.xml").write_bytes(_numbered(harness, 1))

    assert await folder.scan(be.runner.app) == 1

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert "ia.attachments/ holds scans (a folder)" in reason
    assert "drop the permit in the outbox again" in reason
    assert await _outbound(be) == []


class Crash(BaseException):
    """The process dies here."""


async def test_a_file_whose_submission_a_crash_cut_short_after_storing_is_not_submitted_before(
    store_url: str,  # first: its PostgreSQL database is dropped after the harness stopped the gateways
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be = await _be(harness, store_url)
    outbox = be.settings.folders.outbox
    (outbox / "ia.xml").write_bytes(_numbered(harness, 1))

    def hit(point: str) -> None:
        if point == "submit.before_answer":
            raise Crash

    with monkeypatch.context() as crashing:
        crashing.setattr(be.runner.app[NODE].submitter._faults, "hit", hit)
        with pytest.raises(Crash):
            await folder.scan(be.runner.app)
    await folder.scan(be.runner.app)

    status = json.loads((outbox / "sent" / "ia.xml.json").read_text())
    assert status["submitted_before"] is False
    assert len(await _outbound(be)) == 1
    assert _tree(outbox / folder.PROCESSING) == []
    (outbox / "ia-again.xml").write_bytes(_numbered(harness, 1))  # the same document again: submitted before
    await folder.scan(be.runner.app)
    assert json.loads((outbox / "sent" / "ia-again.xml.json").read_text())["submitted_before"] is True


async def test_a_full_disk_writing_the_status_says_the_file_was_submitted(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    (outbox / "ia.xml").write_bytes(_numbered(harness, 1))
    real = write_atomically
    full = [True]

    def write(path: Path, data: bytes, **kw: Any) -> None:
        if path.name == "ia.xml.json" and full.pop() if full else False:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **kw)

    monkeypatch.setattr(folder, "write_atomically", write)
    with structlog.testing.capture_logs() as logs:
        await folder.scan(be.runner.app)

    [message_id] = [m.message_id for m in await _outbound(be)]
    events = [entry["event"] for entry in logs if entry["log_level"] == "error"]
    assert events == [f"outbox file submitted as {message_id}; its status file is written at the next scan"]
    await folder.scan(be.runner.app)
    status = json.loads((outbox / "sent" / "ia.xml.json").read_text())
    assert (status["message_id"], status["submitted_before"]) == (message_id, False)


async def test_a_supporting_document_swapped_for_a_link_after_the_check_is_not_followed(
    harness: Harness,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    secret = tmp_path / "gateway-key.pem"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY----- secret")
    (outbox / "ia.attachments").mkdir()
    (outbox / "ia.attachments" / "scan.pdf").write_bytes(b"%PDF")
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    real = folder._open_attachments

    def swapped(path: Path, *rest: Any) -> Any:
        scan = path.with_suffix(".attachments") / "scan.pdf"
        scan.unlink()
        scan.symlink_to(secret)
        return real(path, *rest)

    monkeypatch.setattr(folder, "_open_attachments", swapped)
    await folder.scan(be.runner.app)

    assert "scan.pdf is a symbolic link" in (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert await _outbound(be) == []


async def test_an_upper_case_suffix_goes_and_a_named_pipe_is_rejected(harness: Harness) -> None:  # noqa: F811
    be = await _be(harness)
    outbox, rejected = be.settings.folders.outbox, be.settings.folders.rejected
    (outbox / "IA-0001.XML").write_bytes(_numbered(harness, 1))
    os.mkfifo(outbox / "fifo.xml")

    assert await folder.scan(be.runner.app) == 2

    assert (outbox / "sent" / "IA-0001.XML.json").exists()
    assert "fifo.xml is a named pipe, not a regular file" in (rejected / "fifo.xml.errors.txt").read_text()
    assert _tree(outbox / folder.PROCESSING) == []


async def test_a_file_that_meets_a_database_outage_holds_back_the_files_written_after_it(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Cancellation written after its ImportAuthorization went first while the database was briefly out
    for the authorization, and was refused X-023 (the authorization it cancels not known yet)."""
    be = await _be(harness)
    outbox = be.settings.folders.outbox
    (outbox / "z-ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    (outbox / "a-ca.xml").write_bytes(_cancellation(harness))
    os.utime(outbox / "z-ia.xml", ns=(10**12, 10**12))
    os.utime(outbox / "a-ca.xml", ns=(2 * 10**12, 2 * 10**12))
    submitter = be.runner.app[NODE].submitter
    real = submitter.submit
    out = [True]

    async def outage(data: bytes, **kw: Any) -> Any:  # a database restart, for the first file only
        if out and out.pop():
            raise OperationalError("INSERT INTO messages ...", {}, ConnectionResetError("server closed"))
        return await real(data, **kw)

    monkeypatch.setattr(submitter, "submit", outage)
    await folder.scan(be.runner.app)
    assert await _outbound(be) == []  # the cancellation waited
    await folder.scan(be.runner.app)

    assert _tree(be.settings.folders.rejected) == []
    assert sorted(p.name for p in (outbox / "sent").glob("*.json")) == ["a-ca.xml.json", "z-ia.xml.json"]
    assert len(await _outbound(be)) == 2
