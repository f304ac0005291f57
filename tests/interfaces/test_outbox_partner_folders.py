"""Partner subfolders of the outbox: a national system that only writes files names the partner of a country with
several competent authorities by dropping the file in ``outbox/<profile id>/``, as a REST client passes
``?partner=<profile id>``. Before, such a file could not be sent at all (its subfolder was not even looked at)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.interfaces import folder
from gateway.interfaces.demo import Running, wait_for
from gateway.interfaces.keys import NODE
from gateway.store import Direction
from tests.e2e.conftest import Harness, example, harness, session, submit  # noqa: F401
from tests.interfaces.test_outbox_folders import _settings, _started, shared  # noqa: F401 - a fixture
from tests.interfaces.test_partner_choice_review import _outbound_parties, _profile

IA = "BE-IA-2026-0001.xml"


def _numbered(harness: Harness, n: int) -> bytes:  # noqa: F811
    return example(IA, today=harness.clock.now()).replace(b"BE-IA-2026-0001", f"BE-IA-2026-{n:04d}".encode())


def _dropped(outbox: Path, where: str, data: bytes, at: int | None = None) -> Path:
    path = outbox / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if at is not None:
        os.utime(path, ns=(at * 10**9, at * 10**9))
    return path


async def _belgium_with_two_swiss_profiles(harness: Harness, extra: str = "") -> tuple[Running, Path]:  # noqa: F811
    """Belgium's gateway, with two enabled Swiss profiles (ch-swissmedic and ch-alt) unless ``extra`` says."""
    _profile(harness, "ch-alt", "CH-ALT", "CH", "DE-BFARM", extra)
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    outbox.mkdir(parents=True, exist_ok=True)
    return be, outbox


async def test_a_file_in_a_partner_subfolder_goes_to_that_partner_and_its_json_follows_the_message(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    await harness.start("CH-SWISSMEDIC")
    _dropped(outbox, "ch-swissmedic/ia.xml", _numbered(harness, 1))
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 2))

    assert await folder.scan(be.runner.app) == 2

    swiss = json.loads((outbox / "ch-swissmedic" / "sent" / "ia.xml.json").read_text())
    alt = json.loads((outbox / "ch-alt" / "sent" / "ia.xml.json").read_text())
    assert (swiss["partner"], alt["partner"]) == ("ch-swissmedic", "ch-alt"), (swiss, alt)
    assert sorted(await _outbound_parties(harness)) == ["CH-ALT", "CH-SWISSMEDIC"]
    assert not (outbox / "sent").exists() or not list((outbox / "sent").glob("*.json"))
    assert not be.settings.folders.rejected.exists() or list(be.settings.folders.rejected.iterdir()) == []
    await wait_for(session, be, swiss["message_id"], "ACKNOWLEDGED")
    assert await folder.report(be.runner.app) >= 1
    done = json.loads((outbox / "ch-swissmedic" / "sent" / "ia.xml.json").read_text())
    assert (done["state"], done["message_id"]) == ("ACKNOWLEDGED", swiss["message_id"]), done
    assert list((outbox / "ch-swissmedic" / "sent" / folder.PENDING).iterdir()) == []
    assert (outbox / "ch-alt" / "sent" / folder.PENDING / "ia.xml.json").exists()  # not acknowledged yet
    assert await folder.scan(be.runner.app) == 0, "a partner subfolder's sent/ is not taken again"
    assert len(await _outbound_parties(harness)) == 2


async def test_the_same_file_in_the_outbox_itself_is_rejected_naming_the_partner_subfolders(
    harness: Harness,  # noqa: F811
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, "ia.xml", _numbered(harness, 1))

    await folder.scan(be.runner.app)

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert reason.startswith("ia.xml was not sent."), reason
    assert "2 partner profiles are for CH: ch-alt, ch-swissmedic" in reason, reason
    assert "drop the file in the subfolder named after the partner's profile id: outbox/ch-alt/ or " in reason
    assert "outbox/ch-swissmedic/" in reason, reason
    assert "name the partner: POST /api/v1/documents?partner=ch-alt or ?partner=ch-swissmedic" in reason, reason
    assert await _outbound_parties(harness) == []


async def test_a_subfolder_that_names_no_profile_is_refused_naming_the_ids_without_clobbering_a_namesake(
    harness: Harness,  # noqa: F811
) -> None:
    """A typo in the folder's name; a file of the same name refused from the outbox itself keeps its own."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    rejected = be.settings.folders.rejected
    _dropped(outbox, "ia.xml", _numbered(harness, 1), at=1_000)
    _dropped(outbox, "ch-swismedic/ia.xml", _numbered(harness, 2), at=2_000)

    await folder.scan(be.runner.app)

    assert sorted(p.name for p in rejected.iterdir()) == [
        "ia.1.xml",
        "ia.1.xml.errors.txt",
        "ia.xml",
        "ia.xml.errors.txt",
    ]
    assert b"BE-IA-2026-0002" in (rejected / "ia.1.xml").read_bytes()
    reason = (rejected / "ia.1.xml.errors.txt").read_text()
    assert reason.startswith("ch-swismedic/ia.xml was not sent."), reason
    assert (
        "the outbox's subfolder ch-swismedic/ names no partner: no partner profile has the id 'ch-swismedic'"
        in reason
    )
    assert "the profile ids are: ch-alt, ch-swissmedic." in reason, reason
    assert "be-famhp" not in reason, "our own profile is no partner"
    assert (
        "Rename the folder to the profile id of the partner its files are for (did you mean ch-swissmedic?)"
        in reason
    )
    assert (rejected / "ia.xml.errors.txt").read_text().startswith("ia.xml was not sent.")
    assert await _outbound_parties(harness) == []
    assert list((outbox / "ch-swismedic").iterdir()) == [], "nothing of the gateway's is made in it"


async def test_our_own_profiles_subfolder_is_refused_as_the_rest_parameter_naming_it_is(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, "be-famhp/ia.xml", _numbered(harness, 1))

    await folder.scan(be.runner.app)

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    status, refused = await submit(session, be, _numbered(harness, 1), "?partner=be-famhp")
    assert status == 409 and refused["detail"] in reason, (refused, reason)
    assert reason.startswith("be-famhp/ia.xml was not sent.") and "this gateway's own profile" in reason, reason
    assert await _outbound_parties(harness) == []


async def test_attachments_beside_a_file_in_a_partner_subfolder_travel_and_move_with_it(
    harness: Harness,  # noqa: F811
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    (outbox / "ch-alt" / "ia.attachments").mkdir(parents=True)
    (outbox / "ch-alt" / "ia.attachments" / "scan.pdf").write_bytes(b"%PDF-1.7 the paper original")
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 1))

    assert await folder.scan(be.runner.app) == 1

    sent = outbox / "ch-alt" / "sent"
    status = json.loads((sent / "ia.xml.json").read_text())
    assert status["partner"] == "ch-alt"
    assert [a["filename"] for a in status["attachments"]] == ["scan.pdf"]
    assert (sent / "ia.attachments" / "scan.pdf").read_bytes() == b"%PDF-1.7 the paper original"
    assert not (outbox / "ch-alt" / "ia.attachments").exists()
    [record] = (await be.runner.app[NODE].store.find_many(Direction.OUTBOUND, [status["message_id"]])).values()
    assert record.to_party == "CH-ALT" and record.attachments and len(record.attachments) == 1


async def test_sent_and_attachments_folders_in_the_outbox_are_no_partner_subfolders(
    harness: Harness,  # noqa: F811
) -> None:
    """Only the partner subfolder's file goes; what lies in ``sent/`` and ``x.attachments/`` stays untouched."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, "sent/old.xml", _numbered(harness, 1))
    _dropped(outbox, "x.attachments/scan.xml", _numbered(harness, 2))
    _dropped(outbox, ".hidden/ia.xml", _numbered(harness, 3))
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 4))

    assert await folder.scan(be.runner.app) == 1

    assert json.loads((outbox / "ch-alt" / "sent" / "ia.xml.json").read_text())["partner"] == "ch-alt"
    for untouched in ("sent/old.xml", "x.attachments/scan.xml", ".hidden/ia.xml"):
        assert (outbox / untouched).is_file(), untouched
    for name in ("sent", "x.attachments", ".hidden"):
        assert not (outbox / name / folder.PROCESSING).exists(), name
    assert folder.partner_folders(outbox) == [outbox / "ch-alt"]
    assert not be.settings.folders.rejected.exists() or list(be.settings.folders.rejected.iterdir()) == []
    assert await _outbound_parties(harness) == ["CH-ALT"]


async def test_a_profile_whose_id_is_sent_has_no_subfolder_and_is_named_through_the_rest_api(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """``outbox/sent/`` keeps the sent files: it is never taken as the partner ``sent``."""
    _profile(harness, "sent", "CH-SENT", "CH", "DE-BFARM")
    be = await harness.start("BE-FAMHP")
    outbox = be.settings.folders.outbox
    _dropped(outbox, "ia.xml", _numbered(harness, 1))
    _dropped(outbox, "sent/other.xml", _numbered(harness, 2))

    await folder.scan(be.runner.app)

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    assert (
        "profile id: outbox/ch-swissmedic/ (the profile sent has none, as outbox/sent/ keeps the sent files: "
        in (reason)
    )
    assert "name it through the REST API). Through the REST API, name the partner: " in reason, reason
    assert "?partner=sent" in reason, reason
    assert (outbox / "sent" / "other.xml").is_file() and await _outbound_parties(harness) == []
    status, sent = await submit(session, be, _numbered(harness, 2), "?partner=sent")
    assert (status, sent["to_party"]) == (202, "CH-SENT"), sent


async def test_a_suspended_partners_subfolder_refuses_as_the_rest_parameter_does(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness, "enabled: false\n")
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 1))

    await folder.scan(be.runner.app)

    reason = (be.settings.folders.rejected / "ia.xml.errors.txt").read_text()
    status, refused = await submit(session, be, _numbered(harness, 1), "?partner=ch-alt")
    assert status == 409 and refused["detail"] in reason, (refused, reason)
    assert reason.startswith("ch-alt/ia.xml was not sent.") and "'ch-alt' is suspended" in reason, reason
    assert await _outbound_parties(harness) == []


async def test_files_in_a_partner_subfolder_go_in_the_order_they_were_written_and_a_long_name_is_refused(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    long = "r" * 246 + ".xml"
    _dropped(outbox, f"ch-alt/{long}", b"<not-a-permit/>", at=500)
    for n, (name, written) in enumerate((("z-first.xml", 1_000), ("a-second.xml", 2_000), ("m-third.xml", 3_000))):
        _dropped(outbox, f"ch-alt/{name}", _numbered(harness, n + 1), at=written)
    submitter = be.runner.app[NODE].submitter
    real_submit, order = submitter.submit, []

    async def recording(data: bytes, **kw: Any) -> Any:
        order.append((data.split(b"<DocumentNumber>")[1].split(b"<")[0].decode(), kw.get("partner_id")))
        return await real_submit(data, **kw)

    monkeypatch.setattr(submitter, "submit", recording)
    assert await folder.scan(be.runner.app) == 3

    assert order == [(f"BE-IA-2026-000{n}", "ch-alt") for n in (1, 2, 3)]
    [errors] = be.settings.folders.rejected.glob("*.errors.txt")
    assert errors.read_text().startswith(f"ch-alt/{long} was not sent.\n\nThe file name is 250 bytes long")


async def test_a_partner_subfolder_the_gateway_cannot_read_holds_up_no_other(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tests run as root, whom permissions do not stop: the listing of ch-alt/ fails as it would without them."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, "ch-alt/ia.xml", _numbered(harness, 1))
    _dropped(outbox, "ch-swissmedic/ia.xml", _numbered(harness, 2))
    by_arrival = folder._by_arrival

    def unreadable(path: Path) -> list[Path]:
        if path == outbox / "ch-alt":
            raise PermissionError(13, "Permission denied", str(path))
        return by_arrival(path)

    monkeypatch.setattr(folder, "_by_arrival", unreadable)
    assert await folder.scan(be.runner.app) == 1

    assert (
        json.loads((outbox / "ch-swissmedic" / "sent" / "ia.xml.json").read_text())["partner"] == "ch-swissmedic"
    )
    assert (outbox / "ch-alt" / "ia.xml").is_file()


async def test_a_file_refused_from_a_subfolder_naming_no_partner_survives_a_crash_part_way_through_its_move(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It goes straight to the rejected folder, untaken; its move's plan, in the outbox's own .processing/, is
    finished by the next scan after a crash between the plan and the move: the file is never lost, and the
    subfolder is left as the national system made it."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    rejected = be.settings.folders.rejected
    (outbox / "ch-swismedic" / "ia.attachments").mkdir(parents=True)
    (outbox / "ch-swismedic" / "ia.attachments" / "scan.pdf").write_bytes(b"%PDF-1.7 the paper original")
    _dropped(outbox, "ch-swismedic/ia.xml", _numbered(harness, 1))
    finish = folder._finish

    def crash(journal: Path) -> None:
        raise OSError(5, "Input/output error (the node stops here)")

    monkeypatch.setattr(folder, "_finish", crash)
    await folder.scan(be.runner.app)
    [plan] = (outbox / folder.PROCESSING).glob(f"*{folder.MOVING}")
    assert (outbox / "ch-swismedic" / "ia.xml").is_file(), "not moved yet: the plan was written, nothing else"

    monkeypatch.setattr(folder, "_finish", finish)
    await folder.scan(be.runner.app)

    assert not plan.exists()
    assert b"BE-IA-2026-0001" in (rejected / "ia.xml").read_bytes()
    assert (rejected / "ia.attachments" / "scan.pdf").read_bytes() == b"%PDF-1.7 the paper original"
    reason = (rejected / "ia.xml.errors.txt").read_text()
    assert reason.startswith("ch-swismedic/ia.xml was not sent.\n\nthe outbox's subfolder ch-swismedic/ names no ")
    assert list((outbox / "ch-swismedic").iterdir()) == []
    assert sorted(p.name for p in rejected.iterdir()) == ["ia.attachments", "ia.xml", "ia.xml.errors.txt"]
    assert await _outbound_parties(harness) == []


async def test_files_taken_in_a_subfolder_whose_profile_went_are_refused_and_its_processing_folder_removed(
    harness: Harness,  # noqa: F811
) -> None:
    """Taken while the profile was there (or by an earlier version, which took before refusing): refused at the
    next scan, and the emptied .processing/ goes. Its lock stays: another node may hold it open (one whose
    profiles still name the subfolder), and removing it would let that node and a third lock two different files
    of that name, both moving files out of .processing/ at once (test_outbox_rejected_races)."""
    be, outbox = await _belgium_with_two_swiss_profiles(harness)
    _dropped(outbox, f"ch-gone/{folder.PROCESSING}/ia.xml", _numbered(harness, 1))
    (outbox / "ch-gone" / folder.MOVES_LOCK).touch()
    _dropped(outbox, "ch-gone/later.xml", _numbered(harness, 2))

    await folder.scan(be.runner.app)

    rejected = be.settings.folders.rejected
    for name in ("ia.xml", "later.xml"):
        assert (rejected / f"{name}.errors.txt").read_text().startswith(f"ch-gone/{name} was not sent."), name
    assert [p.name for p in (outbox / "ch-gone").iterdir()] == [folder.MOVES_LOCK]
    assert await _outbound_parties(harness) == []


@pytest.mark.parametrize("broken", ["a file", "not writable"])
async def test_a_partner_subfolders_sent_folder_that_cannot_serve_fails_ready_naming_it(
    harness: Harness,  # noqa: F811
    shared: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    """Its permits would be sent and stay in its .processing/, their status written nowhere, as for the
    outbox's own sent/. The tests run as root, whom permissions do not stop: 'not writable' is os.access's
    answer, as it would be without them."""
    settings = _settings(harness, shared)
    sent = settings.folders.outbox / "ch-swissmedic" / "sent"
    runner = await _started(settings)
    try:
        url = f"http://{settings.http.host}:{settings.http.port}/ready"
        sent.mkdir(parents=True)
        (settings.folders.outbox / "ch-unknown" / "sent").mkdir(parents=True)
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            assert answer.status == 200, await answer.text()
        if broken == "a file":
            sent.rmdir()
            sent.write_text("a file where ch-swissmedic's sent folder was")
            what, fix = "names a file, not a folder", "move that file away: the gateway keeps the permits it sent"
        else:
            access = os.access
            monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != sent and access(path, mode))
            what, fix = "is a folder the gateway's account cannot write in", "give the gateway's account write"
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            body = await answer.json()
        assert answer.status == 503, body
        [problem] = body["problems"]
        assert problem["check"] == "folders"
        assert problem["error"] == f"the outbox's ch-swissmedic/sent/ folder {what}", problem
        assert problem["fix"].startswith(fix), problem
    finally:
        await runner.cleanup()
