"""Supporting documents travel with a permit as AS4 payloads of their own, large ones streamed through files."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import aiohttp
import pytest

from gateway.interfaces import folder
from gateway.interfaces.demo import Running, wait_for, write_profiles
from gateway.interfaces.keys import NODE
from gateway.store.attachments import safe_filename
from tests.e2e.conftest import Harness, example

IA = "BE-IA-2026-0001.xml"
SCAN = b"%PDF-1.7\n" + os.urandom(20_000)
LARGE = os.urandom(3 * 1024 * 1024)  # over the 1 MiB in-memory limits: streamed and spooled on both sides


def _form(document: bytes, *files: tuple[str, str, bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("document", document, filename="permit.xml", content_type="application/xml")
    for name, mime_type, data in files:
        form.add_field("attachment", data, filename=name, content_type=mime_type)
    return form


async def _post(session: aiohttp.ClientSession, gateway: Running, form: aiohttp.FormData) -> tuple[int, Any]:
    async with session.post(f"{gateway.url}/api/v1/documents", data=form) as response:
        return response.status, await response.json()


async def _start(harness: Harness, extra: str = "") -> tuple[Running, Running]:
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=extra)
    return await harness.start("BE-FAMHP"), await harness.start("CH-SWISSMEDIC")


async def test_attachments_reach_the_partners_inbox_beside_the_permit(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, ch = await _start(harness)
    document = example(IA, today=harness.clock.now())
    form = _form(
        document, ("import-permit-scan.pdf", "application/pdf", SCAN), ("../../x/photo.bin", "image/png", LARGE)
    )
    status, submitted = await _post(session, be, form)
    assert status == 202, submitted
    assert [a["filename"] for a in submitted["attachments"]] == ["import-permit-scan.pdf", "photo.bin"]
    message_id = submitted["message_id"]
    await wait_for(session, be, message_id, "ACKNOWLEDGED")
    delivered = await wait_for(session, ch, message_id, "DELIVERED")
    assert [(a["position"], a["size"]) for a in delivered["attachments"]] == [(1, len(SCAN)), (2, len(LARGE))]
    (permit,) = ch.inbox.glob("*.xml")
    assert permit.read_bytes() == document
    folder = permit.with_suffix(".attachments")
    assert (folder / "1-import-permit-scan.pdf").read_bytes() == SCAN
    assert (folder / "2-photo.bin").read_bytes() == LARGE
    meta = json.loads(permit.with_suffix(".json").read_text())
    assert [a["sha256"] for a in meta["attachments"]] == [hashlib.sha256(d).hexdigest() for d in (SCAN, LARGE)]
    for gateway, record in ((ch, delivered), (be, submitted)):
        async with session.get(f"{gateway.url}{record['attachments'][1]['url']}") as response:
            assert response.status == 200 and await response.read() == LARGE
            assert response.headers["Content-Type"] == "image/png"
            assert 'filename="photo.bin"' in response.headers["Content-Disposition"]


async def test_an_attachment_over_the_partners_limit_is_refused_at_submission(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, _ = await _start(harness, extra="max_payload_bytes: 1048576\n")
    document = example(IA, today=harness.clock.now())
    status, body = await _post(session, be, _form(document, ("big.bin", "application/octet-stream", LARGE)))
    assert status == 409
    assert "attachment 1 ('big.bin')" in body["detail"] and "max_payload_bytes" in body["detail"]
    stored = be.runner.app[NODE].payloads.path(hashlib.sha256(LARGE).hexdigest())
    assert not stored.exists()  # refused before it was stored: no file that nothing names


async def test_a_form_without_the_permit_says_which_part_is_missing(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, _ = await _start(harness)
    form = aiohttp.FormData()
    form.add_field("attachment", SCAN, filename="scan.pdf", content_type="application/pdf")
    status, body = await _post(session, be, form)
    assert status == 400 and "'document'" in body["detail"]


async def test_a_form_that_cannot_be_read_is_a_bad_submission(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """Found by fuzzing the REST API: aiohttp's multipart reader raised ValueError on a body without its
    boundary, and the submitter got HTTP 500."""
    be, _ = await _start(harness)
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    async with session.post(f"{be.url}/api/v1/documents", data=b"no boundary here", headers=headers) as response:
        status, body = response.status, await response.json()
    assert status == 400 and body["error"] == "bad submission"
    assert body["detail"].startswith("the multipart/form-data body cannot be read: ")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\a\\scan 1.pdf", "scan 1.pdf"),
        (".hidden", "hidden"),
        ("", "attachment-3"),
        ('a"b;c.pdf', "a_b_c.pdf"),
    ],
)
def test_attachment_file_names_cannot_leave_their_folder(given: str, kept: str) -> None:
    assert safe_filename(given, 3) == kept


async def test_the_outbox_folder_sends_an_attachments_folder_with_its_permit(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, ch = await _start(harness)
    outbox = be.settings.folders.outbox
    (outbox / "ia.attachments").mkdir(parents=True)
    (outbox / "ia.attachments" / "scan.pdf").write_bytes(SCAN)
    (outbox / "ia.attachments" / ".partial").write_bytes(b"ignored: hidden")
    (outbox / "ia.xml").write_bytes(example(IA, today=harness.clock.now()))
    assert await folder.scan(be.runner.app) == 1
    sent = json.loads((outbox / "sent" / "ia.xml.json").read_text())
    assert [(a["filename"], a["mime_type"]) for a in sent["attachments"]] == [("scan.pdf", "application/pdf")]
    assert (outbox / "sent" / "ia.attachments" / "scan.pdf").read_bytes() == SCAN
    assert not (outbox / "ia.attachments").exists()
    await wait_for(session, ch, sent["message_id"], "DELIVERED")
    (delivered,) = ch.inbox.glob("*.attachments/1-scan.pdf")
    assert delivered.read_bytes() == SCAN


async def test_a_rejected_outbox_permit_keeps_its_attachments_beside_the_reason(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    be, _ = await _start(harness)
    outbox = be.settings.folders.outbox
    (outbox / "bad.attachments").mkdir(parents=True)
    (outbox / "bad.attachments" / "scan.pdf").write_bytes(SCAN)
    (outbox / "bad.xml").write_bytes(b"<ImportAuthorization")
    assert await folder.scan(be.runner.app) == 1
    rejected = be.settings.folders.rejected
    assert (rejected / "bad.attachments" / "scan.pdf").read_bytes() == SCAN
    assert "line 1" in (rejected / "bad.xml.errors.txt").read_text()


async def test_an_attachments_content_type_parameters_stay_out_of_its_mime_type(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    """A scanner's Content-Type with a long name parameter made a MimeType over the 100 characters partners
    and our store accept: a 500, the attachment left behind. Only the media type (and charset) travels."""
    be, _ = await _start(harness)
    document = example(IA, today=harness.clock.now())
    long_name = 'application/pdf; name="Einfuhrgenehmigung-' + "x" * 80 + '.pdf"'
    status, body = await _post(session, be, _form(document, ("scan.pdf", long_name, SCAN)))
    assert status == 202, body
    record = await wait_for(session, be, body["message_id"], "ACKNOWLEDGED")
    assert record["attachments"][0]["mime_type"] == "application/pdf"

    too_long = "application/vnd." + "x" * 90
    status, body = await _post(session, be, _form(document, ("odd.bin", too_long, SCAN)))
    assert status == 400 and "at most 100 are accepted: send it as application/octet-stream" in body["detail"]
