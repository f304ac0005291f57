"""The ``permit-gateway`` command line."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import secrets
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from aiohttp import web
from sqlalchemy.exc import DBAPIError

from gateway.errors import GatewayError
from gateway.interfaces import logs, validate_cli
from gateway.interfaces.cli_common import (
    DEFAULT_CONFIG,
    STORE_ERRORS,
    ConfigOption,
    console,
    err,
    fail,
    settings_of,
    shown_url,
    store_unusable,
)
from gateway.interfaces.messages_cli import messages_app
from gateway.interfaces.profiles_cli import keys_app, profiles_app

app = typer.Typer(help="Permit Gateway: AS4 exchange of controlled-substance import and export authorizations.")
db_app = typer.Typer(help="The message store.")
app.add_typer(db_app, name="db")
app.add_typer(profiles_app, name="profiles")
app.add_typer(keys_app, name="keys")
app.add_typer(messages_app, name="messages")
admin_app = typer.Typer(help="The admin API's credentials.")
app.add_typer(admin_app, name="admin")

SHUTDOWN_SECONDS = 10.0
"""How long a stopping node lets HTTP requests in progress finish before it cancels them and closes its own work
(sends, deliveries, pulls: their messages given back). aiohttp's default, 60 s, outlasted a supervisor's grace
(Kubernetes': 30 s), and an upload under way at SIGTERM never finishes anyway, so the SIGKILL came before the
messages were given back. This and ``node.JOBS_SHUTDOWN_SECONDS`` (10 s) leave the cleanup time within 30 s. A
request cut off is sent again by its sender (a partner's AS4 retry, the national system's resubmission)."""


@app.command()
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Run a gateway: the AS4 endpoint, the REST API, the send loop and the outbox folder watcher."""
    from gateway.interfaces.node import create_app, new_event_loop

    logs.configure(log_level)
    settings = settings_of(config)
    host, port = settings.http.host, settings.http.port
    try:
        asyncio.run(_try_listen(host, port))
    except OSError as exc:
        raise _cannot_listen(host, port, config, exc) from None
    try:
        web.run_app(
            create_app(settings),
            host=host,
            port=port,
            print=None,
            loop=new_event_loop(),
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
    except GatewayError as exc:  # what starting found wrong (keys, profiles, tokens, reference data): named
        raise fail(f"the gateway did not start: {exc}") from None
    except (DBAPIError, ConnectionError) as exc:
        raise store_unusable(settings.store.url, exc) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:  # taken since the probe
            raise _cannot_listen(host, port, config, exc) from None
        where = f" {exc.filename}" if exc.filename else ""
        raise fail(
            f"the gateway did not start:{where} {exc.strerror or exc}; check the folders and files [folders], "
            f"[keys], [profiles] and data_dir name in {config}"
        ) from None


def _cannot_listen(host: str, port: int, config: Path, exc: OSError) -> typer.Exit:
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    fix = (
        "stop what holds that port, or set another [http] port"
        if exc.errno == errno.EADDRINUSE
        else ("check [http] host, an address or name of this machine")
    )
    return fail(f"cannot listen on {host}:{port}: {reason}; {fix} in {config}")


async def _try_listen(host: str, port: int) -> None:
    """Bind as the gateway will, before it starts anything, so a taken port stops it at once."""
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port, reuse_address=True)
    server.close()
    await server.wait_closed()


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its PKI, stores and inboxes")] = Path(
        "var/demo"
    ),
    profiles: Annotated[Path, typer.Option(help="the partner profile folder")] = Path("partner_profiles"),
    examples: Annotated[Path, typer.Option(help="the folder with the example permits")] = Path("examples/valid"),
    keep_running: Annotated[bool, typer.Option(help="leave both gateways up afterwards")] = False,
) -> None:
    """Two gateways on loopback exchange an ImportAuthorization and its ExportAuthorization over AS4."""
    from gateway.interfaces.demo import run_demo

    logs.configure("ERROR")
    try:
        code = asyncio.run(
            run_demo(
                data_dir=data_dir.resolve(),
                profiles=profiles.resolve(),
                examples=examples.resolve(),
                console=console,
                keep_running=keep_running,
            )
        )
    except GatewayError as exc:
        raise fail(f"demo failed: {exc}") from None
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


validate_cli.register(app)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Create or migrate the message store's tables to the current schema."""
    from gateway.store import create_engine, upgrade

    settings = settings_of(config)

    async def run() -> None:
        engine = create_engine(settings.store.url, wait_seconds=settings.store.wait_seconds)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except STORE_ERRORS as exc:
        raise store_unusable(settings.store.url, exc) from None
    except GatewayError as exc:  # a schema newer than ours, rows a migration cannot take: named, with the fix
        raise fail(str(exc)) from None
    console.print(f"store at {shown_url(settings.store.url)} is up to date", markup=False)


def main() -> None:
    app()


@db_app.command("backup")
def db_backup(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="a new (or empty) folder for this backup")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Copy the message store (SQLite: a consistent copy, while the gateway runs) and the payload files it names,
    each checked against its SHA-256, into FOLDER. PostgreSQL: back the database up with pg_dump; the payload
    files are copied here all the same."""
    from gateway.clock import SystemClock
    from gateway.store.backup import BackupError, backup

    settings = settings_of(config)
    try:
        report = backup(
            settings.store.url, settings.data_dir / "payloads", folder.resolve(), now=SystemClock().now()
        )
    except (BackupError, OSError, sqlite3.Error) as exc:
        raise fail(f"no backup made in {folder}: {exc}") from None
    if report.database is None:
        err.print(
            "note: the store is PostgreSQL: back the database up with its own tools first (pg_dump "
            "--format=custom --file=FOLDER/gateway.dump, then this command): a payload file is written before "
            "the commit that names it, so the files copied after the dump are every one it names",
            markup=False,
        )
    for damaged in report.damaged:
        err.print(
            f"warning: payload {damaged} no longer matches its SHA-256 (a damaged file): not copied",
            markup=False,
        )
    console.print(
        f"backup in {report.folder}: "
        + (f"message store {report.database.name}, " if report.database else "")
        + f"{report.payloads} payload files ({report.payload_bytes:,} bytes)",
        markup=False,
    )


@admin_app.command("token")
def admin_token(
    name: Annotated[str, typer.Argument(help="the administrator, as the audit log will name them")],
) -> None:
    """A new token for one administrator: give them the token, and add the line to \\[admin].tokens_file."""
    if not re.fullmatch(r"[\w.@-]+", name):
        raise fail(f"{name!r} is not a usable name; use letters, digits and . @ - _")
    token = secrets.token_urlsafe(32)
    console.print(
        f"token for {name} (shown once; give it to {name} alone): {token}", markup=False, highlight=False
    )
    line = f"{name} {hashlib.sha256(token.encode()).hexdigest()}"
    console.print(f"line for [admin].tokens_file: {line}", markup=False, highlight=False)
