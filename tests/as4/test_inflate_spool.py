"""Compressed parts inflate into a spool file beyond ``spool_threshold``, however small they are on the wire:
a 10 KB gzip part may hold 10 MB, and 32 requests at once must not each hold it in memory."""

from __future__ import annotations

import gzip
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from gateway.as4 import EbmsCode, EbmsError, KeyPair, UserMessageReceived, parse_incoming
from gateway.as4.model import PartInfo, Property
from tests.as4.helpers import hand_built, policy_of, user_message
from tests.conftest import NOW

GZIP = (
    Property(name="MimeType", value="application/octet-stream"),
    Property(name="CompressionType", value="application/gzip"),
)
THRESHOLD = 256 * 1024
INFLATED = 8 * 1024 * 1024


def _message(alice: KeyPair, *contents: bytes) -> tuple[str, bytes]:
    parts = tuple(PartInfo(href=f"cid:p{i}@x.test", properties=GZIP) for i in range(len(contents)))
    attachments = [(f"p{i}@x.test", "application/gzip", gzip.compress(c)) for i, c in enumerate(contents)]
    return hand_built(alice, user_message(NOW, parts=parts), attachments=attachments)


class Spool:
    """A spool factory handing out temporary files in ``folder``; the fixture closes them."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.files = folder, list[BinaryIO]()

    def __call__(self) -> BinaryIO:
        self.files.append(tempfile.TemporaryFile(dir=self.folder))  # noqa: SIM115 - the fixture closes them
        return self.files[-1]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    factory = Spool(tmp_path)
    yield factory
    for file in factory.files:
        file.close()


def _parse_measured(
    content_type: str, body: bytes, alice: KeyPair, bob: KeyPair, spool: Spool, **limits: int
) -> tuple[UserMessageReceived, int]:
    """The event, and the peak of Python allocations while parsing."""
    policy = policy_of(alice, require_encryption=False)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        event = parse_incoming(
            content_type,
            body,
            policy_for=lambda um: policy,
            keys=[bob],
            now=NOW,
            spool=spool,
            spool_threshold=THRESHOLD,
            **limits,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return event, peak


def test_a_small_part_inflating_beyond_the_threshold_goes_to_a_spool_file(
    alice: KeyPair, bob: KeyPair, spool: Spool
) -> None:
    contents = [bytes([i]) * INFLATED for i in range(2)]
    content_type, body = _message(alice, *contents)
    assert len(body) < THRESHOLD  # both parts stay in memory as received

    event, peak = _parse_measured(content_type, body, alice, bob, spool)

    # one inflate window (1 MiB) and the threshold, not 16 MiB of payloads
    assert peak < 4 * 1024 * 1024, f"parsing took {peak} bytes of Python memory"
    assert [p.file is not None and p.file in spool.files for p in event.payloads] == [True, True]
    assert [p.size for p in event.payloads] == [INFLATED, INFLATED]
    assert [p.read() == c for p, c in zip(event.payloads, contents, strict=True)] == [True, True]


def test_a_part_inflating_to_the_threshold_stays_in_memory(alice: KeyPair, bob: KeyPair, spool: Spool) -> None:
    content = b"\x07" * THRESHOLD
    content_type, body = _message(alice, content)

    event, _ = _parse_measured(content_type, body, alice, bob, spool)

    assert event.payloads[0].file is None
    assert event.payloads[0].data == content
    assert spool.files == []


def test_several_gzip_members_beyond_the_threshold_are_spooled(alice: KeyPair, bob: KeyPair, spool: Spool) -> None:
    member = gzip.compress(b"\x01" * (3 * 1024 * 1024))
    parts = (PartInfo(href="cid:p0@x.test", properties=GZIP),)
    content_type, body = hand_built(
        alice, user_message(NOW, parts=parts), attachments=[("p0@x.test", "application/gzip", member * 3)]
    )

    event, peak = _parse_measured(content_type, body, alice, bob, spool)

    assert event.payloads[0].file is not None
    assert event.payloads[0].size == 9 * 1024 * 1024
    assert peak < 4 * 1024 * 1024, f"parsing took {peak} bytes of Python memory"


def test_the_total_cap_still_stops_a_spooled_inflation_with_ebms_0303(
    alice: KeyPair, bob: KeyPair, spool: Spool
) -> None:
    content_type, body = _message(alice, b"\0" * INFLATED, b"\0" * INFLATED)

    with pytest.raises(EbmsError) as caught:
        _parse_measured(content_type, body, alice, bob, spool, max_payload_bytes=INFLATED + 1000)

    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert caught.value.detail == "part <p1@x.test> inflates beyond the limit of 1000 bytes (gzip bomb?)"


def test_a_cap_below_the_threshold_is_still_ebms_0303(alice: KeyPair, bob: KeyPair, spool: Spool) -> None:
    content_type, body = _message(alice, b"\0" * 100_000)

    with pytest.raises(EbmsError) as caught:
        _parse_measured(content_type, body, alice, bob, spool, max_payload_bytes=50_000)

    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert caught.value.detail == "part <p0@x.test> inflates beyond the limit of 50000 bytes (gzip bomb?)"


def test_a_forged_isize_sizes_no_buffer_beyond_the_threshold(alice: KeyPair, bob: KeyPair, spool: Spool) -> None:
    """ISIZE says 4 GiB - 1; the part inflates to 1 MiB and is refused for its wrong trailer, having taken
    no buffer of ISIZE's (or the cap's) size."""
    zipped = bytearray(gzip.compress(b"\0" * (1024 * 1024)))
    zipped[-4:] = b"\xff\xff\xff\xff"
    parts = (PartInfo(href="cid:p0@x.test", properties=GZIP),)
    content_type, body = hand_built(
        alice, user_message(NOW, parts=parts), attachments=[("p0@x.test", "application/gzip", bytes(zipped))]
    )
    tracemalloc.start()
    try:
        with pytest.raises(EbmsError) as caught:
            parse_incoming(
                content_type,
                body,
                policy_for=lambda um: policy_of(alice, require_encryption=False),
                keys=[bob],
                now=NOW,
                spool=spool,
                spool_threshold=THRESHOLD,
                max_payload_bytes=64 * 1024 * 1024,
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert peak < 4 * 1024 * 1024, f"parsing took {peak} bytes of Python memory"
