"""Large payloads in files: packed and unpacked chunk by chunk through spool files, with flat memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    PackageAssembler,
    Payload,
    StreamedOutgoing,
    UserMessageReceived,
    build_user_message_streamed,
    parse_incoming,
)
from tests.as4.helpers import policy_of, user_message
from tests.conftest import NOW

CHUNK = 64 * 1024


@pytest.fixture
def spool() -> Iterator[list[BinaryIO]]:
    files: list[BinaryIO] = []
    yield files
    for file in files:
        file.close()


def _spool_into(files: list[BinaryIO]) -> BinaryIO:
    files.append(tempfile.TemporaryFile())  # noqa: SIM115 - the fixture closes them
    return files[-1]


def _payload_file(size: int, files: list[BinaryIO]) -> tuple[BinaryIO, str]:
    """Pseudo-random (incompressible) content, written in chunks; returns the file and its SHA-256."""
    source = _spool_into(files)
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    for index in range(size // CHUNK):
        piece = hashlib.sha256(index.to_bytes(8, "big")).digest() + block[32:]
        digest.update(piece)
        source.write(piece)
    return source, digest.hexdigest()


def _send(
    alice: KeyPair, bob: KeyPair, source: BinaryIO, files: list[BinaryIO], compress: bool
) -> StreamedOutgoing:
    payload = Payload(content_id="scan@be-famhp.test", mime_type="application/pdf", file=source)
    return build_user_message_streamed(
        user_message(NOW),
        [payload],
        sender=alice,
        recipient_certificate=bob.certificate,
        spool=lambda: _spool_into(files),
        compress=compress,
    )


def _receive(alice: KeyPair, bob: KeyPair, out: StreamedOutgoing, files: list[BinaryIO]) -> UserMessageReceived:
    assembler = PackageAssembler(out.content_type, spool=lambda: _spool_into(files), spool_threshold=CHUNK)
    for chunk in out.chunks():
        assembler.feed(bytes(chunk))
    return parse_incoming(
        out.content_type,
        assembler.close(),
        policy_for=lambda um: policy_of(alice),
        keys=[bob],
        now=NOW,
        spool=lambda: _spool_into(files),
        spool_threshold=CHUNK,
        max_payload_bytes=1 << 30,
    )


def _sha256(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(CHUNK):
        digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("compress", [True, False])
def test_a_payload_file_round_trips_through_spool_files(
    alice: KeyPair, bob: KeyPair, spool: list[BinaryIO], compress: bool
) -> None:
    source, expected = _payload_file(4 * 1024 * 1024, spool)
    out = _send(alice, bob, source, spool, compress)
    assert out.size == sum(len(c) for c in out.chunks())
    received = _receive(alice, bob, out, spool)
    (payload,) = received.payloads
    assert payload.file is not None and payload.data == b""
    assert payload.mime_type == "application/pdf" and _sha256(payload.file) == expected
    assert {r.uri for r in received.references} >= {"cid:scan@be-famhp.test"}


def test_a_changed_byte_in_a_spooled_ciphertext_is_refused(
    alice: KeyPair, bob: KeyPair, spool: list[BinaryIO]
) -> None:
    source, _ = _payload_file(1024 * 1024, spool)
    out = _send(alice, bob, source, spool, compress=True)
    body = b"".join(bytes(c) for c in out.chunks())
    middle = len(body) // 2
    tampered = body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]
    with pytest.raises(EbmsError) as refused:
        parse_incoming(
            out.content_type,
            tampered,
            policy_for=lambda um: policy_of(alice),
            keys=[bob],
            now=NOW,
            spool=lambda: _spool_into(spool),
            spool_threshold=CHUNK,
        )
    assert refused.value.code is EbmsCode.FAILED_DECRYPTION and "AES-GCM authentication" in refused.value.detail


def test_memory_stays_flat_whatever_the_payload_size(alice: KeyPair, bob: KeyPair, spool: list[BinaryIO]) -> None:
    """32 MiB through both sides while Python holds at most a few chunks (the 1 GiB figure: bench/large_payload.py)."""
    source, expected = _payload_file(32 * 1024 * 1024, spool)
    tracemalloc.start()
    try:
        out = _send(alice, bob, source, spool, compress=True)
        received = _receive(alice, bob, out, spool)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    file = received.payloads[0].file
    assert file is not None and _sha256(file) == expected
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 32 MiB payload"
