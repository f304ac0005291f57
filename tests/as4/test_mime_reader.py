"""The incremental MIME reader: the same result at any chunk size, spooling through the caller's factory,
and EBMS:0007 for every malformed body."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

import pytest

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    MimeReader,
    PackageAssembler,
    PartData,
    PartEnded,
    PartStarted,
    Payload,
    build_user_message,
    mime,
    parse_incoming,
)
from tests.as4.helpers import PERMIT, build, policy_of, user_message
from tests.as4.mimeutil import repackage
from tests.as4.samples import FIXTURES, load
from tests.conftest import NOW

CHUNK_SIZES = (1, 7, 65536)
CT = 'multipart/related; boundary="b1"; type="application/soap+xml"'
ENVELOPE = (
    b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header/><env:Body/></env:Envelope>'
)


def _summary(package: mime.Package) -> tuple[bytes, list[tuple[str, str, int, str]]]:
    return package.envelope, [
        (cid, p.content_type, p.size, hashlib.sha256(p.data).hexdigest()) for cid, p in package.attachments.items()
    ]


def _fed(content_type: str, body: bytes, size: int, **kw: object) -> mime.Package:
    assembler = PackageAssembler(content_type, **kw)  # type: ignore[arg-type]
    for i in range(0, len(body), size):
        assembler.feed(body[i : i + size])
    return assembler.close()


def _mime_samples() -> list[str]:
    return sorted(
        p.name for p in FIXTURES.iterdir() if p.suffix in (".as4", ".mime", ".txt") and "template" not in p.name
    )


@pytest.mark.parametrize("name", _mime_samples())
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_samples_parse_the_same_at_every_chunk_size(name: str, size: int) -> None:
    content_type, body = load(name)
    try:
        expected: object = _summary(mime.parse(content_type, body))
    except EbmsError as exc:
        expected = exc.detail
    try:
        got: object = _summary(_fed(content_type, body, size))
    except EbmsError as exc:
        got = exc.detail
    assert got == expected


@pytest.mark.parametrize(
    "shape", [{}, {"newline": b"\n"}, {"base64_parts": True}, {"fold": True, "brackets": False}, {"padding": b" "}]
)
@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_built_messages_parse_the_same_at_every_chunk_size(
    alice: KeyPair, bob: KeyPair, shape: dict[str, object], size: int
) -> None:
    out = build(alice, bob, NOW, data=PERMIT * 50)
    content_type, body = repackage(out.content_type, out.body, **shape)  # type: ignore[arg-type]
    assert _summary(_fed(content_type, body, size)) == _summary(mime.parse(content_type, body))


def test_events_are_typed_and_ordered() -> None:
    body = (
        b"preamble\r\n--b1\r\nContent-Type: application/soap+xml\r\n\r\n"
        + ENVELOPE
        + b"\r\n--b1\r\nContent-Type: text/plain\r\nContent-ID: <a@b>\r\n\r\nhello\r\n--b1--\r\nepilogue"
    )
    reader = MimeReader(CT)
    events = [e for i in range(len(body)) for e in reader.feed(body[i : i + 1])] + reader.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "PartStarted" and kinds[-1] == "PartEnded"
    started = [e for e in events if isinstance(e, PartStarted)]
    assert [s.index for s in started] == [0, 1]
    assert started[1].content_id == "a@b" and started[1].content_type == "text/plain"
    assert started[1].get("content-id") == "<a@b>"
    ended = [e for e in events if isinstance(e, PartEnded)]
    assert [(e.index, e.size) for e in ended] == [(0, len(ENVELOPE)), (1, 5)]
    second = events[events.index(started[1]) + 1 : events.index(ended[1])]
    assert b"".join(e.data for e in second if isinstance(e, PartData)) == b"hello"


def test_the_reader_keeps_only_a_delimiter_of_data_buffered() -> None:
    reader = MimeReader(CT)
    reader.feed(b"--b1\r\nContent-Type: application/soap+xml\r\n\r\n")
    emitted = 0
    for _ in range(1000):
        emitted += sum(len(e.data) for e in reader.feed(b"x" * 1000) if isinstance(e, PartData))
    assert 1000 * 1000 - emitted <= len(b"\r\n--b1") + 1


def test_large_parts_go_to_the_callers_spool_and_small_ones_stay_in_memory(alice: KeyPair, bob: KeyPair) -> None:
    spooled: list[BinaryIO] = []

    def spool() -> BinaryIO:
        spooled.append(io.BytesIO())
        return spooled[-1]

    big = bytes(range(256)) * 4096  # 1 MiB
    out = build_user_message(
        user_message(NOW),
        [Payload(content_id="big@x.test", mime_type="application/octet-stream", data=big)],
        sender=alice,
        recipient_certificate=bob.certificate,
        compress=False,
    )
    package = _fed(out.content_type, out.body, 65536, spool=spool, spool_threshold=64 * 1024)
    (part,) = package.attachments.values()
    assert part.body.spooled and len(spooled) == 1 and part.size == len(big) + 28
    small = _fed(out.content_type, out.body, 65536, spool=spool, spool_threshold=10 * 1024 * 1024)
    assert not next(iter(small.attachments.values())).body.spooled and len(spooled) == 1
    # and the whole receive path works from the spooled part, the payload spooled as well
    event = parse_incoming(
        out.content_type,
        out.body,
        policy_for=lambda um: policy_of(alice),
        keys=[bob],
        now=NOW,
        spool=spool,
        spool_threshold=64 * 1024,
    )
    payload = event.payloads[0]
    assert payload.data == b"" and payload.file is not None and payload.size == len(big)
    assert payload.read() == big
    assert len(spooled) == 3  # ciphertext, plaintext


def test_spooled_compressed_payloads_inflate_into_the_spool(alice: KeyPair, bob: KeyPair) -> None:
    files: list[BinaryIO] = []

    def spool() -> BinaryIO:
        files.append(io.BytesIO())
        return files[-1]

    data = PERMIT * 3000
    out = build(alice, bob, NOW, data=data)
    event = parse_incoming(
        out.content_type,
        out.body,
        policy_for=lambda um: policy_of(alice),
        keys=[bob],
        now=NOW,
        spool=spool,
        spool_threshold=1024,
    )
    assert event.payloads[0].file is not None and event.payloads[0].read() == data
    assert len(files) == 3  # ciphertext, compressed plaintext, inflated payload


def test_a_part_of_a_body_handed_over_whole_is_viewed_not_copied() -> None:
    """A 10 MiB message parsed from bytes would otherwise be copied part by part before it is decrypted."""
    body = ROOT + ATTACHMENT + CLOSE
    package = mime.parse(CT, body)
    (attachment,) = package.attachments.values()
    view = attachment.body.buffer()
    assert isinstance(view, memoryview) and view.obj is body and bytes(view) == b"hello"
    assert attachment.data == b"hello" and isinstance(attachment.data, bytes)


def test_the_envelope_part_is_never_spooled() -> None:
    body = b"--b1\r\nContent-Type: application/soap+xml\r\n\r\n" + ENVELOPE + b"\r\n--b1--\r\n"
    package = _fed(CT, body, 7, spool=lambda: pytest.fail("spooled the envelope"), spool_threshold=10)
    assert package.envelope == ENVELOPE


# --- malformed MIME: EBMS:0007, and the error marks the envelope as unreadable -----------------------------

ROOT = b"--b1\r\nContent-Type: application/soap+xml\r\n\r\n" + ENVELOPE + b"\r\n"
ATTACHMENT = b"--b1\r\nContent-Type: text/plain\r\nContent-ID: <a@b>\r\n\r\nhello\r\n"
CLOSE = b"--b1--\r\n"

MALFORMED = {
    "no boundary parameter": ('multipart/related; type="application/soap+xml"', ROOT + CLOSE, "no boundary"),
    "boundary never appears": (CT, b"just some bytes", "no MIME boundary delimiter"),
    "no closing delimiter": (CT, ROOT + ATTACHMENT, "no closing boundary"),
    "truncated inside a part": (CT, ROOT + ATTACHMENT[:-8], "no closing boundary"),
    "part without headers": (CT, ROOT + b"--b1\r\n\r\nhello\r\n" + CLOSE, "no header fields"),
    "header line without colon": (
        CT,
        ROOT + b"--b1\r\nContent-Type text/plain\r\n\r\nx\r\n" + CLOSE,
        "not a header field",
    ),
    "no blank line after headers": (CT, b"--b1\r\nContent-Type: text/plain\r\n" + b"X-A: b\r\n" * 1200, "exceeds"),
    "duplicate Content-ID": (CT, ROOT + ATTACHMENT + ATTACHMENT + CLOSE, "appears on two MIME parts"),
    "attachment without Content-ID": (
        CT,
        ROOT + b"--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n" + CLOSE,
        "has no Content-ID",
    ),
    "start naming no part": (CT + '; start="<nobody@x>"', ROOT + ATTACHMENT + CLOSE, "names no MIME part"),
    "root is not SOAP": (CT.replace('; type="application/soap+xml"', ""), ATTACHMENT + CLOSE, "root MIME part"),
    "no parts at all": (CT, CLOSE, "no parts"),
    "text after delimiter": (CT, ROOT + b"--b1 garbage\r\n" + CLOSE, "followed by text"),
    "invalid base64": (
        CT,
        ROOT
        + b"--b1\r\nContent-Type: text/plain\r\nContent-ID: <a@b>\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@\r\n"
        + CLOSE,
        "not valid base64",
    ),
    "invalid boundary": ('multipart/related; boundary="' + "x" * 80 + '"', ROOT, "not a valid RFC 2046 boundary"),
    "not multipart": ("application/json", b"{}", "multipart/related"),
    "two Content-ID fields": (
        CT,
        ROOT + ATTACHMENT.replace(b"Content-ID: <a@b>", b"Content-ID: <a@b>\r\ncontent-id: <c@d>") + CLOSE,
        "MIME part 2 has more than one content-id header field",
    ),
    "two Content-Transfer-Encoding fields": (
        CT,
        ROOT
        + ATTACHMENT.replace(
            b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: binary\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        + CLOSE,
        "more than one Content-Transfer-Encoding header field",
    ),
    "two Content-Type fields in the root part": (
        CT,
        ROOT.replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain\r\n\r\n", 1) + CLOSE,
        "MIME part 1 has more than one Content-Type header field",
    ),
    "boundary given twice": (CT + '; boundary="b2"', ROOT + CLOSE, "parameter 'boundary' more than once"),
    "start given twice": (
        CT + '; start="<a@b>"; start="<root@b>"',
        ROOT + ATTACHMENT + CLOSE,
        "the HTTP Content-Type gives the parameter 'start' more than once",
    ),
    "type given twice": (CT + '; TYPE="text/xml"', ROOT + CLOSE, "parameter 'type' more than once"),
    "charset given twice in a part": (
        CT,
        ROOT + ATTACHMENT.replace(b"text/plain", b"text/plain; charset=utf-8; charset=latin1") + CLOSE,
        "the Content-Type of MIME part 2 gives the parameter 'charset' more than once",
    ),
    "charset given twice, single part": (
        "application/soap+xml; charset=utf-8; charset=latin1",
        ENVELOPE,
        "the HTTP Content-Type gives the parameter 'charset' more than once",
    ),
    "too many header fields": (
        CT,
        ROOT + b"--b1\r\n" + b"X-A: b\r\n" * 40 + b"\r\nx\r\n" + CLOSE,
        "more than 32 header fields",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("size", (None, 1, 7))
def test_malformed_mime_is_ebms_0007(case: str, size: int | None) -> None:
    content_type, body, detail = MALFORMED[case]
    with pytest.raises(EbmsError) as caught:
        if size is None:
            mime.parse(content_type, body)
        else:
            _fed(content_type, body, size)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert detail in caught.value.detail
    assert caught.value.envelope_unreadable


def test_fields_the_reader_does_not_interpret_may_repeat() -> None:
    extra = b"Content-Type: text/plain\r\nX-Trace: a\r\nX-Trace: b\r\nContent-ID: <a@b>\r\n"
    package = mime.parse(
        CT, ROOT + ATTACHMENT.replace(b"Content-Type: text/plain\r\nContent-ID: <a@b>\r\n", extra) + CLOSE
    )
    assert package.attachments["a@b"].headers[1:3] == (("X-Trace", "a"), ("X-Trace", "b"))


def test_unsupported_transfer_encoding_is_ebms_0008() -> None:
    body = (
        ROOT
        + b"--b1\r\nContent-Type: text/plain\r\nContent-ID: <a@b>\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx\r\n"
        + CLOSE
    )
    with pytest.raises(EbmsError) as caught:
        mime.parse(CT, body)
    assert caught.value.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING
    assert "quoted-printable" in caught.value.detail


def test_limits_are_module_constants_enforced_while_reading() -> None:
    parts = ROOT + b"".join(
        b"--b1\r\nContent-Type: text/plain\r\nContent-ID: <p%d@b>\r\n\r\nx\r\n" % i for i in range(mime.MAX_PARTS)
    )
    with pytest.raises(EbmsError, match=f"more than {mime.MAX_PARTS} MIME parts"):
        mime.parse(CT, parts + CLOSE)
    reader = MimeReader(CT, max_part_bytes=1000)
    reader.feed(ROOT + b"--b1\r\nContent-Type: text/plain\r\nContent-ID: <a@b>\r\n\r\n")
    with pytest.raises(EbmsError, match="exceeds the limit of 1000 bytes"):
        for _ in range(10):
            reader.feed(b"y" * 200)
    with pytest.raises(EbmsError, match="already failed"):
        reader.feed(b"more")
    small = MimeReader(CT, max_message_bytes=100)
    with pytest.raises(EbmsError, match="exceeds the limit of 100 bytes"):
        small.feed(ROOT)
    huge_envelope = b"--b1\r\nContent-Type: application/soap+xml\r\n\r\n" + b" " * (mime.MAX_ROOT_PART_BYTES + 100)
    with pytest.raises(EbmsError) as caught:
        _fed(CT, huge_envelope, 1 << 20)
    assert caught.value.code is EbmsCode.INVALID_HEADER and "SOAP envelope part exceeds" in caught.value.detail


def test_a_payload_named_like_the_boundary_prefix_is_content_not_a_delimiter(alice: KeyPair, bob: KeyPair) -> None:
    tricky = b"\r\n--b1X not a delimiter\r\n--b1"
    body = (
        ROOT
        + b"--b1\r\nContent-Type: application/octet-stream\r\nContent-ID: <a@b>\r\n\r\n"
        + tricky
        + b"tail\r\n"
        + CLOSE
    )
    for size in (None, *CHUNK_SIZES):
        package = mime.parse(CT, body) if size is None else _fed(CT, body, size)
        assert package.attachments["a@b"].data == tricky + b"tail"
