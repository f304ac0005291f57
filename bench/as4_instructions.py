"""Instructions per 1 KiB message of the AS4 core and of its raw floor, counted exactly with valgrind.

    .venv/bin/python bench/as4_instructions.py [--size 1024] [--messages 100]

The same four paths as bench/as4_pipeline.py (our sender and receiver, and their floors). CPU time on a shared
machine moves by tens of percent between runs; instruction counts do not, so this is the figure to compare
two versions of the code by. Each path runs in its own process under ``valgrind --tool=callgrind``, once with
no messages and once with ``--messages``; the difference divided by the count is the cost of one message.
Keys are generated once and loaded from files, because RSA key generation takes a random number of
instructions. Note that an instruction of Python bytecode dispatch costs more time than one of OpenSSL's
vectorised RSA code, so the time ratio is higher than the instruction ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.as4_pipeline import demo_message, floors, key_pair, permit_like  # noqa: E402
from gateway.as4 import KeyPair  # noqa: E402

PATHS = ("send", "send_floor", "receive", "receive_floor")


def _keys(folder: Path) -> tuple[KeyPair, KeyPair]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pairs = []
    for name in ("BE-FAMHP", "CH-SWISSMEDIC"):
        path = folder / f"{name}.pem"
        if not path.exists():
            made = key_pair(name)
            path.write_bytes(
                made.private_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                + made.certificate.public_bytes(serialization.Encoding.PEM)
            )
        raw = path.read_bytes()
        private_key = serialization.load_pem_private_key(raw, None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        pairs.append(KeyPair(private_key=private_key, certificate=x509.load_pem_x509_certificate(raw)))
    return pairs[0], pairs[1]


def _run_path(path: str, count: int, size: int, folder: Path) -> None:
    """The child process: warm up, then run ``path`` ``count`` times with the garbage collector off."""
    import gc

    alice, bob = _keys(folder)
    paths = floors(permit_like(size, random.Random(1)), demo_message(), alice, bob)
    function = dict(zip(PATHS, paths, strict=True))[path]
    for _ in range(5):
        function()
    gc.collect()
    gc.disable()
    for _ in range(count):
        function()


def _instructions(path: str, count: int, size: int, folder: Path) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        path,
        "--messages",
        str(count),
        "--size",
        str(size),
        "--keys",
        str(folder),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="payload bytes (default 1024)")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_path(args.child, args.messages, args.size, args.keys)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _keys(folder)
        per_message = {}
        for path in PATHS:
            base = _instructions(path, 0, args.size, folder)
            loaded = _instructions(path, args.messages, args.size, folder)
            per_message[path] = (loaded - base) / args.messages
    print(f"AS4 pipeline, {args.size}-byte permit-like payload: instructions per message (valgrind, exact)")
    for side in ("send", "receive"):
        ours, floor = per_message[side], per_message[f"{side}_floor"]
        print(f"{side:>8}: ours {ours / 1e6:6.3f} M, floor {floor / 1e6:6.3f} M, ratio {ours / floor:4.2f}x")


if __name__ == "__main__":
    main()
