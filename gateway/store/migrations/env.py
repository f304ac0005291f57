"""Alembic environment: always handed a live connection by gateway.store.migrate."""

from __future__ import annotations

from alembic import context

from gateway.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `permit-gateway db upgrade`, which passes the connection")
# The connection comes inside gateway.store.migrate's transaction, which commits the whole run or nothing, also
# on SQLite (where it holds the write lock and has foreign keys off while batch mode rebuilds tables).
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
