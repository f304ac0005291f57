"""A new, empty store is created from ``schema.metadata`` and stamped with the head (the fast way); a store with
tables is migrated. Both ways must give one schema, on SQLite and PostgreSQL: every table's columns (type,
nullability, default), keys, indexes, unique and CHECK constraints are compared as the database reports them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import create_engine, upgrade
from gateway.store.migrate import head_revision, require_head


def _squash(text: Any) -> str:
    """SQL text as the database reports it, without the spacing, quoting and casts that differ between a table
    SQLite's batch mode rebuilt and one created directly."""
    return re.sub(r"[\s\"'()]|::[a-z ]+", "", str(text)).lower()


def _schema(connection: Any) -> dict[str, Any]:
    found = inspect(connection)
    tables: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        tables[table] = {
            "columns": sorted(  # a migration adds a column at the end; the order is never relied on
                (c["name"], str(c["type"]), c["nullable"], _squash(c.get("default")))
                for c in found.get_columns(table)
            ),
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    _squash(fk.get("options", {}).get("ondelete")),
                )
                for fk in found.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in found.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table)),
            "checks": sorted(_squash(c["sqltext"]) for c in found.get_check_constraints(table)),
        }
    return tables


async def _read(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        return await connection.run_sync(_schema)


@pytest.fixture
def second_store_url(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Another empty store on the same database server as ``store_url``."""
    if store_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    make: Callable[[], str] = request.getfixturevalue("pg_databases")
    return make()


async def test_a_new_store_has_the_schema_the_migrations_build(store_url: str, second_store_url: str) -> None:
    fresh = create_engine(store_url)
    migrated = create_engine(second_store_url)
    try:
        await upgrade(fresh)
        await upgrade(migrated, "0001")  # a store with tables: the rest comes by the migrations
        await upgrade(migrated)
        await require_head(fresh)
        await require_head(migrated)
        fresh_schema, migrated_schema = await _read(fresh), await _read(migrated)
        assert fresh_schema.keys() == migrated_schema.keys()
        for table, shape in migrated_schema.items():
            assert fresh_schema[table] == shape, table
        async with fresh.connect() as connection:
            stamped = (await connection.exec_driver_sql("SELECT version_num FROM alembic_version")).scalars().all()
        assert stamped == [head_revision()]
    finally:
        await fresh.dispose()
        await migrated.dispose()


async def test_a_store_with_tables_of_its_own_is_migrated_not_created(store_url: str) -> None:
    """Only a store with no tables at all takes the fast way: one whose tables a failed first run or someone
    else left is migrated, and the migrations say what is wrong with it."""
    engine = create_engine(store_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE leftover (id INTEGER PRIMARY KEY)")
        await upgrade(engine)
        await require_head(engine)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"leftover", "messages", "permit_documents"} <= names
    finally:
        await engine.dispose()
