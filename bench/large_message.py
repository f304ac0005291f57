"""A permit with a 1 GiB supporting document, end to end between two gateway processes, with each side's
peak memory.

    .venv/bin/python bench/large_message.py [--mib 1024] [--no-compress] [--dir /var/tmp]

Belgium's gateway takes the permit and the attachment through its REST API (multipart, streamed to disk),
packs it (gzip, SHA-256, AES-128-GCM chunk by chunk into spool files), POSTs it from the stored file; the
Swiss gateway spools the request to disk, decrypts, verifies and inflates into spool files, stores and
receipts it, and delivers it to its inbox folder. Printed: the times, each process's peak RSS (VmHWM) and
the check that the delivered attachment is the one sent. Target (issue 6): peak RSS under 150 MiB on each side.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.large_payload import write_payload  # noqa: E402
from bench.throughput import _free_port, _ready, _serve  # noqa: E402
from gateway.interfaces.demo import AUTHORITIES, gateway_settings, redate, write_profiles  # noqa: E402
from gateway.profiles.devpki import generate_dev_pki  # noqa: E402

CHUNK = 1 << 20
TARGET_MIB = 150


def _permit() -> bytes:
    example = ROOT / "examples" / "valid" / "BE-IA-2026-0001.xml"
    as_of = date.fromisoformat((ROOT / "examples" / "as-of.txt").read_text().strip())
    return redate(example.read_bytes(), (datetime.now(UTC).date() - as_of).days)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


async def _exchange(be_url: str, ch_url: str, attachment: Path) -> tuple[str, dict[str, float]]:
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await _ready(session, be_url)
        await _ready(session, ch_url)
        started = time.perf_counter()
        with open(attachment, "rb") as file:
            form = aiohttp.FormData()
            form.add_field("document", _permit(), filename="permit.xml", content_type="application/xml")
            form.add_field("attachment", file, filename="scan.pdf", content_type="application/pdf")
            async with session.post(f"{be_url}/api/v1/documents", data=form) as response:
                body = await response.json()
                assert response.status == 202, body
        marks = {"submitted": time.perf_counter() - started}
        message_id = body["message_id"]
        for url, state in ((be_url, "ACKNOWLEDGED"), (ch_url, "DELIVERED")):
            while True:
                async with session.get(f"{url}/api/v1/messages/{message_id}") as response:
                    found = await response.json() if response.status == 200 else {}
                if found.get("state") == state:
                    break
                if found.get("state") in ("FAILED", "REJECTED"):
                    raise SystemExit(f"{state} not reached: {found.get('last_error')}")
                await asyncio.sleep(0.5)
            marks[state.lower()] = time.perf_counter() - started
    return message_id, marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="attachment size in MiB (default 1024 = 1 GiB)")
    parser.add_argument("--no-compress", action="store_true", help="profiles with compression: false")
    parser.add_argument("--dir", type=Path, default=None, help="where data folders and the attachment go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="permit-large-", dir=args.dir) as tmp:
        folder = Path(tmp)
        expected = write_payload(folder / "scan.pdf", args.mib)
        pki = generate_dev_pki(folder / "pki", AUTHORITIES, now=datetime.now(UTC))
        ports = {a.party_id: _free_port() for a in AUTHORITIES}
        limit = (args.mib + 64) * CHUNK
        extra = f"max_payload_bytes: {limit}\ncompression: {'false' if args.no_compress else 'true'}\n"
        write_profiles(
            folder / "profiles", {p: f"http://127.0.0.1:{port}/as4" for p, port in ports.items()}, extra=extra
        )
        settings = [
            gateway_settings(a, pki, port=ports[a.party_id], data_dir=folder, profiles=folder / "profiles")
            for a in AUTHORITIES
        ]
        settings = [
            s.model_copy(update={"inbound": s.inbound.model_copy(update={"max_message_bytes": 2 * limit})})
            for s in settings
        ]
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_serve, args=(s,), daemon=True) for s in settings]
        for process in processes:
            process.start()
        try:
            be_url, ch_url = (f"http://127.0.0.1:{ports[a.party_id]}" for a in AUTHORITIES)
            message_id, marks = asyncio.run(_exchange(be_url, ch_url, folder / "scan.pdf"))
            peaks = [_peak_rss_mib(p.pid or 0) for p in processes]
            delivered = next(settings[1].folders.inbox.glob("*.attachments/1-scan.pdf"))
            digest = hashlib.sha256()
            with open(delivered, "rb") as file:
                while block := file.read(CHUNK):
                    digest.update(block)
        finally:
            for process in processes:
                process.terminate()
                process.join(10)
    assert digest.hexdigest() == expected, "the delivered attachment differs from the one submitted"
    print(f"permit + {args.mib} MiB attachment, compression {'off' if args.no_compress else 'on'}: {message_id}")
    print("  " + ", ".join(f"{name} after {seconds:.1f} s" for name, seconds in marks.items()))
    for authority, peak in zip(AUTHORITIES, peaks, strict=True):
        verdict = "met" if peak < TARGET_MIB else "MISSED"
        print(f"  {authority.party_id:<14} peak RSS {peak:6.1f} MiB (target < {TARGET_MIB} MiB: {verdict})")
    print("  delivered attachment SHA-256 matches the submitted one")


if __name__ == "__main__":
    main()
