"""Shared fixtures: real RSA key pairs and certificates, and fresh PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.as4 import KeyPair
from gateway.interfaces.demo import AUTHORITIES
from gateway.profiles.devpki import DevAuthority, DevPki, generate_dev_pki

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_key_pair(
    common_name: str, *, not_before: datetime | None = None, days: int = 365, key_size: int = 2048
) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or NOW - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(private_key=key, certificate=cert)


@pytest.fixture(scope="session")
def alice() -> KeyPair:
    return make_key_pair("BE-FAMHP")


@pytest.fixture(scope="session")
def bob() -> KeyPair:
    return make_key_pair("CH-SWISSMEDIC")


@pytest.fixture(scope="session")
def mallory() -> KeyPair:
    return make_key_pair("MALLORY")


def missing(what: str, *, locally: str) -> NoReturn:
    """A test that needs ``what`` from the machine: it fails in CI (which must provide it) and is skipped
    locally saying how to get it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what}: .ci/run must provide it")
    pytest.skip(locally)


def _pg_base_url() -> str:
    url = os.environ.get("PG_TEST_URL")
    if url:
        return url
    missing(
        "PG_TEST_URL is not set (.ci/postgres.sh starts PostgreSQL)",
        locally="PostgreSQL tests need a server: run `source .ci/postgres.sh` first (it installs and starts one)",
    )


async def _admin(base: str, statement: str) -> None:
    connection = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def pg_databases() -> Iterator[Callable[[], str]]:
    """Makes fresh, empty PostgreSQL databases on demand; all are dropped after the test."""
    base = _pg_base_url()
    names: list[str] = []

    def create() -> str:
        name = f"gw_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
        names.append(name)
        return base.rsplit("/", 1)[0] + f"/{name}"

    yield create
    for name in names:
        try:
            asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except asyncpg.PostgresError as exc:  # a leftover test database is clutter, not a test failure
            warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_databases()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh message store: an SQLite file, then a PostgreSQL database (the test runs once on each)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def free_port() -> int:
    """A port free now, below Linux's ephemeral range (32768-60999): a port the kernel hands out for binding to
    port 0 may be taken as the source port of an outgoing connection before the test's server binds it."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


@asynccontextmanager
async def serving(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> AsyncIterator[str]:
    """``handler`` answering POSTs to ``path`` on a loopback port, for as long as the block runs; yields its URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}{path}"
    finally:
        await server.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """The demo's authorities, and Germany's for tests that need a third partner (each signs with its own key:
    one certificate may not be pinned for two partners)."""
    authorities = (*AUTHORITIES, DevAuthority(party_id="DE-BFARM", authority_name="BfArM", country="DE"))
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), authorities, now=datetime.now(UTC))


def _plain_tracebacks() -> None:
    """structlog's defaults, but tracebacks printed as the service prints them: the default renders each with
    rich and every frame's locals, which takes seconds of the event loop per logged failure and starved the
    gateways under test (a store outage logs a failure per job and sweep)."""
    structlog.reset_defaults()
    defaults = structlog.get_config()["processors"]
    plain = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=[plain if isinstance(p, structlog.dev.ConsoleRenderer) else p for p in defaults])


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Commands under test configure logging; put structlog back so no test inherits another's streams."""
    _plain_tracebacks()
    yield
    _plain_tracebacks()
