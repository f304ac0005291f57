"""End-to-end throughput: two gateways (Belgium, Switzerland) as separate processes on this machine exchange
N permits (about 1 KiB each: gzip + sign + encrypt + signed receipt + durable state on both sides).

Prints exchanges per second, p50/p99 submit-to-receipt latency and each gateway's CPU time per exchange, user
and system (a steadier figure than the rate on a shared machine), on SQLite and (when PG_BENCH_URL or PG_TEST_URL
names a server) on PostgreSQL, beside the floor measured in the same run: the raw library calls of one exchange (the
AS4 pipeline floor's sender and receiver plus one receipt signature and its verification), spread over the
machine's cores. Target: end-to-end >= 60 % of that floor.

    .venv/bin/python bench/throughput.py [--messages 400] [--concurrency 16] [--store sqlite] [--profile DIR]
                                         [--count-statements DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.as4_pipeline import floor_exchange_seconds  # noqa: E402
from gateway.interfaces.demo import AUTHORITIES, gateway_settings, redate, write_profiles  # noqa: E402
from gateway.profiles.devpki import generate_dev_pki  # noqa: E402
from gateway.settings import Settings  # noqa: E402

POLL_SECONDS = 0.25


def _serve(settings: Settings, profile: Path | None = None, statements: Path | None = None) -> None:
    """One gateway process; with ``profile``, its cProfile statistics are written there when it stops, and
    with ``statements``, how often it ran each SQL statement."""
    import cProfile

    from aiohttp import web

    from gateway.interfaces import logs
    from gateway.interfaces.node import create_app, new_event_loop

    logs.configure("ERROR", json=True)
    counted = _count_statements() if statements is not None else None
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    app = create_app(settings, watch_outbox=False)
    web.run_app(app, host="127.0.0.1", port=settings.http.port, print=None, loop=new_event_loop())
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    if counted is not None and statements is not None:
        statements.write_text("".join(f"{n:6d} {sql}\n" for sql, n in counted.most_common()))


def _count_statements() -> Counter[str]:
    """Counts every statement the process's engines send to the database, by its text."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: Counter[str] = Counter()

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen[" ".join(statement.split())[:160]] += 1

    event.listen(Engine, "before_cursor_execute", count)
    return seen


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _documents(count: int) -> list[bytes]:
    example = ROOT / "examples" / "valid" / "BE-IA-2026-0001.xml"
    as_of = date.fromisoformat((ROOT / "examples" / "as-of.txt").read_text().strip())
    text = redate(example.read_bytes(), (datetime.now(UTC).date() - as_of).days)
    run = uuid.uuid4().hex[:4].upper()
    return [text.replace(b"BE-IA-2026-0001", f"BE-IA-{run}-{n:05d}".encode()) for n in range(count)]


async def _ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{url}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"gateway at {url} did not start")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU of a process and all its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def _acknowledged(session: aiohttp.ClientSession, url: str) -> int:
    """Outbound messages ACKNOWLEDGED, from the queue-depth metric (one GROUP BY, cheap to poll)."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("permit_gateway_messages{") and 'direction="out"' in line and "ACKNOWLEDGED" in line
    )


async def _outbound(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Every outbound message, walking the listing's pages by their cursor."""
    found: list[dict[str, Any]] = []
    params = {"direction": "outbound", "limit": "500"}
    while True:
        async with session.get(f"{url}/api/v1/messages", params=params) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        found.extend(page["messages"])
        if page["next"] is None:
            return found
        params["cursor"] = page["next"]


def _spent(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


@dataclass(frozen=True, slots=True)
class Outcome:
    elapsed: float
    latencies: list[float]
    cpu: dict[str, tuple[float, float]]  # user and system CPU seconds each gateway spent during the run


async def _drive(urls: dict[str, str], pids: dict[str, int], documents: list[bytes], concurrency: int) -> Outcome:
    limit = asyncio.Semaphore(concurrency)
    be_url = next(iter(urls.values()))
    async with aiohttp.ClientSession() as session:
        for url in urls.values():
            await _ready(session, url)
        before = await _acknowledged(session, be_url)

        async def one(document: bytes) -> str:
            async with limit, session.post(f"{be_url}/api/v1/documents", data=document) as response:
                assert response.status == 202, await response.text()
                return str((await response.json())["message_id"])

        cpu = {party: _cpu_seconds(pid) for party, pid in pids.items()}
        started = datetime.now(UTC)
        ids = set(await asyncio.gather(*(one(d) for d in documents)))
        # each scrape costs Belgium a GROUP BY and a metrics rendering: poll seldom, and take the end of the run
        # from the records (the last receipt's time), not from when the poll noticed it
        while await _acknowledged(session, be_url) < before + len(ids):
            await asyncio.sleep(POLL_SECONDS)
        cpu = {party: _spent(cpu[party], _cpu_seconds(pid)) for party, pid in pids.items()}
        records = [m for m in await _outbound(session, be_url) if m["message_id"] in ids]
    assert len(records) == len(ids) and all(m["state"] == "ACKNOWLEDGED" for m in records)
    acknowledged = [datetime.fromisoformat(m["updated_at"]) for m in records]
    latencies = [
        (at - datetime.fromisoformat(m["created_at"])).total_seconds()
        for at, m in zip(acknowledged, records, strict=True)
    ]
    return Outcome(elapsed=(max(acknowledged) - started).total_seconds(), latencies=latencies, cpu=cpu)


def pg_database(base: str) -> str:
    import asyncpg

    name = f"gw_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()

    asyncio.run(create())
    return base.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(base: str, url: str) -> None:
    """The bench's databases go when it ends (each run makes new ones)."""
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await connection.close()

    asyncio.run(drop())


def run(
    store: str,
    messages: int,
    concurrency: int,
    pg_base: str | None,
    profile: Path | None = None,
    statements: Path | None = None,
) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="permit-bench-") as tmp:
        folder = Path(tmp)
        pki = generate_dev_pki(folder / "pki", AUTHORITIES, now=datetime.now(UTC))
        ports = {a.party_id: _free_port() for a in AUTHORITIES}
        write_profiles(folder / "profiles", {p: f"http://127.0.0.1:{port}/as4" for p, port in ports.items()})
        outbound = {"sweep_seconds": 5.0, "http_timeout_seconds": 30.0}
        settings = [
            gateway_settings(
                a, pki, port=ports[a.party_id], data_dir=folder, profiles=folder / "profiles", outbound=outbound
            )
            for a in AUTHORITIES
        ]
        if store == "postgresql":
            assert pg_base is not None
            settings = [
                s.model_copy(update={"store": s.store.model_copy(update={"url": pg_database(pg_base)})})
                for s in settings
            ]
        context = multiprocessing.get_context("spawn")
        names = [f"{store}-{s.identity.party_id.lower()}" for s in settings]
        processes = [
            context.Process(
                target=_serve,
                args=(
                    s,
                    profile / f"{name}.prof" if profile else None,
                    statements / f"{name}.sql.txt" if statements else None,
                ),
                daemon=True,
            )
            for s, name in zip(settings, names, strict=True)
        ]
        for process in processes:
            process.start()
        try:
            urls = {a.party_id: f"http://127.0.0.1:{ports[a.party_id]}" for a in AUTHORITIES}
            pids = {s.identity.party_id: p.pid for s, p in zip(settings, processes, strict=True) if p.pid}
            return asyncio.run(_drive(urls, pids, _documents(messages), concurrency))
        finally:
            for process in processes:
                process.terminate()
                process.join(10)
            if store == "postgresql" and pg_base is not None:
                for made in {s.store.url for s in settings}:
                    drop_pg_database(pg_base, made)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), action="append", help="default: both")
    parser.add_argument("--profile", type=Path, help="write each gateway's cProfile statistics to this folder")
    parser.add_argument(
        "--count-statements", type=Path, metavar="DIR", help="write how often each gateway ran each SQL statement"
    )
    args = parser.parse_args()
    for folder in (args.profile, args.count_statements):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    floor_seconds = floor_exchange_seconds()
    floor_rate = cores / floor_seconds
    print(
        f"floor: {floor_seconds * 1000:.2f} ms of library calls per exchange on one core; x{cores} cores = {floor_rate:,.0f} exchanges/s"
    )
    pg_base = os.environ.get("PG_BENCH_URL") or os.environ.get("PG_TEST_URL")
    for store in args.store or ("sqlite", "postgresql"):
        if store == "postgresql" and not pg_base:
            print("postgresql: skipped (set PG_BENCH_URL, or `source .ci/postgres.sh`)")
            continue
        outcome = run(store, args.messages, args.concurrency, pg_base, args.profile, args.count_statements)
        count = len(outcome.latencies)
        rate = count / outcome.elapsed
        cuts = statistics.quantiles(outcome.latencies, n=100)
        cpu = ", ".join(
            f"{party} {(user + system) / count * 1000:.1f} ms (user {user / count * 1000:.1f}, "
            f"system {system / count * 1000:.1f})"
            for party, (user, system) in outcome.cpu.items()
        )
        print(
            f"{store:10s}: {count} permits in {outcome.elapsed:.2f} s = {rate:,.1f} exchanges/s "
            f"({rate / floor_rate:.0%} of floor; target >= 60%); submit-to-receipt p50 {cuts[49] * 1000:.0f} ms, "
            f"p99 {cuts[98] * 1000:.0f} ms; CPU per exchange: {cpu}"
        )


if __name__ == "__main__":
    main()
