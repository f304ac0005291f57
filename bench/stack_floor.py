"""What the prescribed stack costs before a gateway does any work of its own: the CPU of one aiohttp request, of one
SQLAlchemy asyncio statement and commit on the gateway's own engine (SQLite with WAL and synchronous=FULL; and
PostgreSQL through asyncpg when PG_BENCH_URL or PG_TEST_URL names a server), of the same statement through the
bare driver, and of one small durable file.

It then sets these beside what the throughput target leaves: bench/throughput.py's target of 60 % of the floor
allows floor / 0.6 of CPU per exchange, so everything that is not the floor's library calls (HTTP, XML, SQL,
files, logging, on both gateways) must fit in floor * (1 / 0.6 - 1). The smallest stack work an exchange can do
is counted from the design the issue prescribes: three HTTP legs (the national system's submission, the AS4 POST
as client and as server), on each side one INSERT before acknowledging and one UPDATE when the receipt or the
delivery is recorded (two commits that group commit cannot merge away, because each answers a waiting request),
and three durable files (the sender's permit and wire message, the receiver's payload).

    .venv/bin/python bench/stack_floor.py [--count 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.as4_pipeline import floor_exchange_seconds  # noqa: E402
from bench.throughput import drop_pg_database, pg_database  # noqa: E402
from gateway.files import write_atomically  # noqa: E402
from gateway.interfaces.node import new_event_loop  # noqa: E402
from gateway.store.store import create_engine  # noqa: E402

TARGET_SHARE = 0.6
HTTP_LEGS, STATEMENTS, COMMITS, DURABLE_FILES = 3, 4, 2, 3
BODY = os.urandom(1024)
_metadata = sa.MetaData()
_rows = sa.Table(
    "rows",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_id", sa.String(255), nullable=False, unique=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
)
_INSERT = _rows.insert()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_post("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop())


async def _post_all(port: int, count: int) -> None:
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with limit, session.post(f"http://127.0.0.1:{port}/", data=BODY) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(count)))


def http_request_ms(count: int) -> float:
    """Server-side CPU of one 1 KiB POST answered by an empty aiohttp handler on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    _wait_listening(port)
    asyncio.run(_post_all(port, 50))  # warm
    before = _process_cpu(server.pid or 0)
    asyncio.run(_post_all(port, count))
    spent = _process_cpu(server.pid or 0) - before
    server.kill()
    server.join()
    return 1000 * spent / count


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _per_call(work: Callable[[], Awaitable[None]], count: int) -> float:
    for _ in range(20):
        await work()
    before = _cpu()
    for _ in range(count):
        await work()
    return 1000 * (_cpu() - before) / count


async def sqlalchemy_ms(url: str, count: int) -> tuple[float, float]:
    """(per statement, per commit) of the gateway's engine: transactions of one and of five INSERTs."""
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)

    def transaction(statements: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with engine.begin() as connection:
                for _ in range(statements):
                    await connection.execute(_INSERT, {"message_id": os.urandom(16).hex(), "body": BODY})

        return run

    one = await _per_call(transaction(1), count)
    five = await _per_call(transaction(5), count // 5)
    await engine.dispose()
    statement = (five - one) / 4
    return statement, one - statement


def sync_statement_ms(path: Path, count: int) -> float:
    """One INSERT through SQLAlchemy's synchronous engine (pysqlite), inside a transaction: what the statement
    costs without the asyncio adaptation (a greenlet and three trips to aiosqlite's thread per statement)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    _metadata.create_all(engine)
    with engine.begin() as connection:
        before = _cpu()
        for _ in range(count):
            connection.execute(_INSERT, {"message_id": os.urandom(16).hex(), "body": BODY})
        spent = _cpu() - before
    engine.dispose()
    return 1000 * spent / count


def driver_ms(path: Path, count: int) -> float:
    """One INSERT and commit through the sqlite3 module alone, with the gateway's pragmas."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, message_id TEXT UNIQUE NOT NULL, body BLOB)")
    before = _cpu()
    for _ in range(count):
        connection.execute("INSERT INTO rows (message_id, body) VALUES (?, ?)", (os.urandom(16).hex(), BODY))
        connection.commit()
    spent = _cpu() - before
    connection.close()
    return 1000 * spent / count


def durable_file_ms(folder: Path, count: int) -> float:
    before = _cpu()
    for n in range(count):
        write_atomically(folder / f"{n}.bin", BODY)
    return 1000 * (_cpu() - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count
    floor = 1000 * floor_exchange_seconds()
    allowance = floor * (1 / TARGET_SHARE - 1)
    http = http_request_ms(count)
    with tempfile.TemporaryDirectory(prefix="stack-floor-") as tmp:
        folder = Path(tmp)
        measured = {"sqlite": asyncio.run(sqlalchemy_ms(f"sqlite+aiosqlite:///{folder / 'bench.db'}", count))}
        pg_base = os.environ.get("PG_BENCH_URL") or os.environ.get("PG_TEST_URL")
        if pg_base:
            url = pg_database(pg_base)
            try:
                measured["postgresql"] = asyncio.run(sqlalchemy_ms(url, count))
            finally:
                drop_pg_database(pg_base, url)
        driver = driver_ms(folder / "driver.db", count)
        sync_statement = sync_statement_ms(folder / "sync.db", count)
        files = durable_file_ms(folder, count // 4)
    print(f"floor of one exchange (library calls, one core): {floor:.2f} ms")
    print(
        f"the {TARGET_SHARE:.0%} target allows {floor / TARGET_SHARE:.2f} ms of CPU per exchange: {allowance:.2f} ms"
    )
    print("  beyond the floor for everything else, on both gateways together")
    print(f"aiohttp request, server side:         {http:.3f} ms")
    print(f"durable 1 KiB file (fsync + rename):  {files:.3f} ms")
    print(f"sqlite3 module, INSERT + commit:      {driver:.3f} ms")
    print(f"SQLAlchemy synchronous statement:     {sync_statement:.3f} ms (SQLite, for comparison)")
    for name, (statement, commit) in measured.items():
        least = HTTP_LEGS * http + STATEMENTS * statement + COMMITS * commit
        with_files = least + DURABLE_FILES * files
        print(f"{name:10}: SQLAlchemy asyncio statement {statement:.3f} ms, commit {commit:.3f} ms")
        print(
            f"{'':10}  least stack work per exchange, {HTTP_LEGS} HTTP legs + {STATEMENTS} statements + {COMMITS} "
            f"commits: {least:.2f} ms = {least / allowance:.1f}x the allowance; with the {DURABLE_FILES} durable "
            f"payload files: {with_files:.2f} ms = {with_files / allowance:.1f}x"
        )


if __name__ == "__main__":
    main()
