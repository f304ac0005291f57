"""Outbox file names the gateway cannot write beside: a name too long for the names derived from it, a name
that is not UTF-8. Each is rejected where its owner finds it with the reason beside it, and holds up no other."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.interfaces import folder
from gateway.interfaces.demo import Running
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"
LONG = "r" * 246 + ".xml"  # 250 bytes: its ``.errors.txt`` or ``.moving`` would not fit in 255


async def _gateway_and_outbox(harness: Harness) -> tuple[Running, Path]:
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    return be, outbox


def _written(path: Path, data: bytes, at: int) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(at * 10**9, at * 10**9))


def _reason(rejected: Path, name: str) -> str:
    [errors] = [p for p in rejected.glob("*.errors.txt") if p.name.startswith(name)]
    return errors.read_text()


async def test_a_name_too_long_is_rejected_under_a_shorter_one_and_the_next_file_still_goes(
    harness: Harness,
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    rejected = be.settings.folders.rejected
    _written(outbox / LONG, b"<not-a-permit/>", 1_000)
    _written(outbox / IA, example(IA, today=harness.clock.now()), 2_000)

    await folder.scan(be.runner.app)

    assert (outbox / "sent" / f"{IA}.json").exists()
    [moved] = [p for p in rejected.glob("*.xml")]
    assert moved.read_bytes() == b"<not-a-permit/>" and len(moved.name) <= folder.MAX_NAME_BYTES
    reason = _reason(rejected, moved.name)
    assert reason.startswith(f"{LONG} was not sent.")
    assert (
        f"The file name is 250 bytes long; an outbox file name may have up to {folder.MAX_NAME_BYTES} bytes"
        in reason
    )
    assert f"moved here as {moved.name}. Give it a shorter name" in reason
    assert not (outbox / LONG).exists() and list((outbox / folder.PROCESSING).iterdir()) == []
    assert await folder.scan(be.runner.app) == 0


async def test_a_name_too_long_takes_its_attachments_along(harness: Harness) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    name = "a" * 240 + ".xml"  # longer than MAX_NAME_BYTES, short enough for an attachments folder
    (outbox / ("a" * 240 + ".attachments")).mkdir()
    (outbox / ("a" * 240 + ".attachments") / "scan.pdf").write_bytes(b"%PDF-1.7")
    (outbox / name).write_bytes(example(IA, today=harness.clock.now()))

    await folder.scan(be.runner.app)

    [moved] = list(be.settings.folders.rejected.glob("*.xml"))
    assert (moved.with_suffix(".attachments") / "scan.pdf").read_bytes() == b"%PDF-1.7"
    assert "The file name is 244 bytes long" in _reason(be.settings.folders.rejected, moved.name)
    assert not (outbox / "sent").exists()


class Crash(BaseException):
    """The process dies here."""


@pytest.mark.parametrize("file_moved", [False, True])
async def test_a_rejection_of_a_long_name_a_crash_cut_short_is_finished_by_the_next_scan(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, file_moved: bool
) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    (outbox / LONG).write_bytes(b"<not-a-permit/>")

    def crashing(journal: Path) -> Any:
        plan = json.loads(journal.read_text())
        if file_moved:
            (Path(plan["from"]) / plan["file"]).replace(plan["target"])
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(folder, "_finish", crashing)
        with pytest.raises(Crash):
            await folder.scan(be.runner.app)
    await folder.scan(be.runner.app)

    rejected = be.settings.folders.rejected
    [moved] = list(rejected.glob("*.xml"))
    assert moved.read_bytes() == b"<not-a-permit/>"
    assert "The file name is 250 bytes long" in _reason(rejected, moved.name)
    assert list((outbox / folder.PROCESSING).iterdir()) == [] and not (outbox / LONG).exists()


async def test_a_refused_file_whose_name_is_not_utf8_is_rejected_with_its_name_shown(harness: Harness) -> None:
    be, outbox = await _gateway_and_outbox(harness)
    name = os.fsdecode(b"Genehmigung-f\xfcr-CH.xml")  # Latin-1, as a Windows share may write it
    (outbox / name).write_bytes(b"<not-a-permit/>")

    assert await folder.scan(be.runner.app) == 1

    rejected = be.settings.folders.rejected
    assert (rejected / name).read_bytes() == b"<not-a-permit/>"
    reason = (rejected / f"{name}.errors.txt").read_text()
    assert reason.startswith("Genehmigung-f\\xfcr-CH.xml was not sent.")
    assert list((outbox / folder.PROCESSING).iterdir()) == []
    assert await folder.scan(be.runner.app) == 0
