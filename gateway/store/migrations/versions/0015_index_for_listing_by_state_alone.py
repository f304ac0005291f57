"""an index on messages (state, id) for the listing by state in either direction: ``GET
/api/v1/messages?state=FAILED`` (``messages list --state`` without ``--direction``) had no index on the state and
the order together: SQLite found the state's messages on another index and sorted them all to keep one page (27 ms
at 300,000 messages, growing with the table, with the store's one SQLite connection held); it now reads only the
page it returns, newest first

The index is created in place, so no table is rebuilt.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 19:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_messages_state_id"


def upgrade() -> None:
    op.create_index(NAME, "messages", ["state", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(NAME, table_name="messages")
