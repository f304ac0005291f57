"""A large payload through the AS4 core on both sides, with the peak memory (RSS) of each side.

    .venv/bin/python bench/large_payload.py [--mib 1024] [--compress] [--dir /tmp]

The sender (one process) packs a payload file with ``build_user_message_streamed``: gzip (with
``--compress``), SHA-256, AES-128-GCM chunk by chunk into spool files, and writes the MIME body to a wire
file. The receiver (another process) feeds the wire file in 1 MiB chunks to ``PackageAssembler`` (parts over
1 MiB spooled), then ``parse_incoming`` decrypts, verifies and inflates into spool files; it checks the
payload's SHA-256. Each prints its wall time and peak RSS. Target (issue 6): under 150 MiB on each side for
1 GiB. The payload is incompressible (scanned documents are), which is the worst case for the spools.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.as4_pipeline import key_pair  # noqa: E402
from gateway.as4 import (  # noqa: E402
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    KeyPair,
    PackageAssembler,
    Party,
    PartyId,
    Payload,
    SecurityPolicy,
    UserMessage,
    build_user_message_streamed,
    parse_incoming,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CHUNK = 1 << 20
TARGET_MIB = 150
PARTY_TYPE = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"


def _key_pair(name: str, folder: Path) -> None:
    pair = key_pair(name)
    assert isinstance(pair.private_key, rsa.RSAPrivateKey)
    pem = pair.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / f"{name}.key").write_bytes(pem)
    (folder / f"{name}.crt").write_bytes(pair.certificate.public_bytes(serialization.Encoding.PEM))


def _load(name: str, folder: Path) -> KeyPair:
    key = serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey)
    return KeyPair(private_key=key, certificate=cert)


def _spool(folder: Path) -> BinaryIO:
    return tempfile.TemporaryFile(dir=folder)


def _user_message() -> UserMessage:
    def party(value: str, role: str) -> Party:
        return Party(party_ids=(PartyId(value=value, type=PARTY_TYPE),), role=role)

    return UserMessage(
        message_id="large@be-famhp.test",
        timestamp=NOW,
        from_party=party("BE-FAMHP", ROLE_INITIATOR),
        to_party=party("CH-SWISSMEDIC", ROLE_RESPONDER),
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ExportAuthorization",
        conversation_id="large-1",
    )


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def send(folder: Path, compress: bool) -> dict[str, object]:
    started = time.perf_counter()
    with open(folder / "payload.bin", "rb") as source:
        out = build_user_message_streamed(
            _user_message(),
            [Payload(content_id="scan@be-famhp.test", mime_type="application/pdf", file=source)],
            sender=_load("sender", folder),
            recipient_certificate=_load("receiver", folder).certificate,
            spool=lambda: _spool(folder),
            compress=compress,
        )
        with open(folder / "wire.bin", "wb") as wire:
            for chunk in out.chunks():
                wire.write(chunk)
    (folder / "content-type").write_text(out.content_type)
    return {"side": "send", "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()}


def receive(folder: Path) -> dict[str, object]:
    started = time.perf_counter()
    content_type = (folder / "content-type").read_text()
    assembler = PackageAssembler(content_type, spool=lambda: _spool(folder), spool_threshold=CHUNK)
    with open(folder / "wire.bin", "rb") as wire:
        while block := wire.read(CHUNK):
            assembler.feed(block)
    sender = _load("sender", folder)
    received = parse_incoming(
        content_type,
        assembler.close(),
        policy_for=lambda um: SecurityPolicy(signing_certificates=(sender.certificate,)),
        keys=[_load("receiver", folder)],
        now=NOW,
        spool=lambda: _spool(folder),
        spool_threshold=CHUNK,
        max_payload_bytes=(1 << 30) + CHUNK,
    )
    digest = hashlib.sha256()
    file = received.payloads[0].file
    assert file is not None
    file.seek(0)
    while block := file.read(CHUNK):
        digest.update(block)
    return {
        "side": "receive",
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": _peak_mib(),
        "sha256": digest.hexdigest(),
    }


def write_payload(path: Path, mib: int) -> str:
    """``mib`` MiB of incompressible bytes (scanned documents are); returns their SHA-256."""
    digest = hashlib.sha256()
    seed = os.urandom(CHUNK)
    with open(path, "wb") as out:
        for index in range(mib):
            block = hashlib.sha256(index.to_bytes(8, "big")).digest() + seed[32:]
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _child(role: str, folder: Path, compress: bool) -> dict[str, object]:
    command = [sys.executable, __file__, "--role", role, "--dir", str(folder)] + (
        ["--compress"] if compress else []
    )
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="payload size in MiB (default 1024 = 1 GiB)")
    parser.add_argument("--compress", action="store_true", help="gzip the payload (AS4 compression)")
    parser.add_argument("--dir", type=Path, default=None, help="where the payload, wire and spool files go")
    parser.add_argument("--role", choices=["send", "receive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "send":
        print(json.dumps(send(args.dir, args.compress)))
        return
    if args.role == "receive":
        print(json.dumps(receive(args.dir)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        folder = Path(name)
        _key_pair("sender", folder)
        _key_pair("receiver", folder)
        expected = write_payload(folder / "payload.bin", args.mib)
        sent = _child("send", folder, args.compress)
        received = _child("receive", folder, args.compress)
    assert received.pop("sha256") == expected, "the received payload differs from the one sent"
    print(f"payload {args.mib} MiB, compress={args.compress}; target: peak RSS < {TARGET_MIB} MiB on each side")
    for side in (sent, received):
        peak = float(str(side["peak_rss_mib"]))
        verdict = "met" if peak < TARGET_MIB else "MISSED"
        print(f"  {side['side']:<8} {float(str(side['seconds'])):7.1f} s   peak RSS {peak:6.1f} MiB   {verdict}")


if __name__ == "__main__":
    main()
