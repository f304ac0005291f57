"""Alembic migrations of the store, run programmatically on the gateway's own async engine.

Every run is one transaction that holds the store's migration lock: nodes starting at once (each ``serve``
upgrades) migrate one after the other, and the later ones find the schema at the head. On PostgreSQL the lock
is an advisory lock, on SQLite the write lock ``BEGIN IMMEDIATE`` takes; there, DDL is made transactional too
(the driver would commit each statement on its own, and a run killed part way left tables without the
revision that made them), and foreign keys are off while tables are rebuilt, since SQLite's batch mode drops
the old table and the drop would cascade to every row that refers to it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import suppress
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import URL, Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATION_LOCK = 0x7065726D69745F67  # "permit_g": the key of the PostgreSQL advisory lock migrations hold


class SchemaMismatch(StoreError):
    """The store's schema is not at the revision this gateway's code is written for."""


def alembic_config() -> Config:
    from alembic.config import Config  # imported on use: Alembic costs a third of a second at start

    config = Config()
    config.set_main_option("script_location", str(resources.files("gateway.store") / "migrations"))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """Read once per process: the scripts ship with this code and do not change under it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The revision this gateway's migrations end at."""
    head = _scripts().get_current_head()
    assert head is not None, "the migration scripts have a single head"
    return head


def _current(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _where(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _refuse_unknown(connection: Connection, scripts: ScriptDirectory) -> None:
    """A store a newer gateway upgraded: Alembic would only say it cannot locate the revision."""
    current = _current(connection)
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise _newer(_where(connection.engine.url), current, scripts.get_current_head())


def _newer(where: str, current: str, head: str | None) -> SchemaMismatch:
    return SchemaMismatch(
        f"the store's schema at {where} is at revision {current}, newer than this gateway's (head {head}): "
        "run the gateway version that upgraded it, or upgrade this one"
    )


def _apply(command: str, revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        from alembic import command as commands

        config = alembic_config()
        config.attributes["connection"] = connection
        scripts = _scripts()
        _refuse_unknown(connection, scripts)
        if command == "upgrade" and _is_empty(connection) and revision in ("head", scripts.get_current_head()):
            _create_at_head(connection, scripts)
            return
        getattr(commands, command)(config, revision)

    return run


def _is_empty(connection: Connection) -> bool:
    from sqlalchemy import inspect

    return _current(connection) is None and not inspect(connection).get_table_names()


def _create_at_head(connection: Connection, scripts: ScriptDirectory) -> None:
    """A new store is created from the schema and stamped with the head, as Alembic's cookbook does it: replaying
    every migration (SQLite rebuilds tables in batch mode) made a first start several times slower. The tests
    hold the two ways to one schema (tests/store/test_migrations.py)."""
    from alembic.migration import MigrationContext

    from gateway.store.schema import metadata

    metadata.create_all(connection, checkfirst=False)  # the store has no tables
    MigrationContext.configure(connection).stamp(scripts, "head")


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (idempotent); SchemaMismatch for a schema newer than ours."""
    await _migrate(engine, _apply("upgrade", revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the database schema back to ``revision``, under the same lock and safeguards as an upgrade."""
    await _migrate(engine, _apply("downgrade", revision))


async def _migrate(engine: AsyncEngine, work: Callable[[Connection], None]) -> None:
    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            await _migrate_sqlite(await connection.execution_options(isolation_level="AUTOCOMMIT"), work)
        return
    async with engine.begin() as connection:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await connection.run_sync(work)


async def _migrate_sqlite(connection: AsyncConnection, work: Callable[[Connection], None]) -> None:
    """``connection`` in autocommit, so the driver begins nothing itself: the one transaction is ours."""
    await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
    try:
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            await connection.run_sync(work)
            broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
            if broken:
                raise StoreError(
                    f"migrating the store at {_where(connection.engine.url)} would leave rows whose "
                    f"foreign key names no row (table, rowid, parent): {[tuple(r[:3]) for r in broken[:5]]}; "
                    "nothing was changed: report this with the gateway version"
                )
            await connection.exec_driver_sql("COMMIT")
        except BaseException:
            with suppress(DBAPIError):  # SQLite may have rolled back already; the first error is the one to tell
                await connection.exec_driver_sql("ROLLBACK")
            raise
    finally:
        try:
            await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        except BaseException:
            await connection.invalidate()  # never pooled again with its foreign keys off
            raise


async def require_head(engine: AsyncEngine) -> None:
    """SchemaMismatch unless the store's schema is exactly the one this gateway's code reads and writes."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current)
    head = head_revision()
    if current == head:
        return
    where = _where(engine.url)
    if current is None:
        raise SchemaMismatch(f"the store at {where} has no tables yet; run 'permit-gateway db upgrade' first")
    if current not in {s.revision for s in _scripts().walk_revisions()}:
        raise _newer(where, current, head)
    raise SchemaMismatch(
        f"the store's schema at {where} is at revision {current}, older than this gateway's (head {head}); "
        "run 'permit-gateway db upgrade' first"
    )
