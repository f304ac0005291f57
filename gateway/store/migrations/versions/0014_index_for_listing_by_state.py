"""an index on messages (direction, state, id) for the listing by state and the pull inbox: ``GET
/api/v1/messages?direction=out&state=RETRY_WAIT`` (``messages list --state``) and the national system's poll of
the messages waiting in its inbox, oldest first, read every message of the direction through
ix_messages_direction_id on SQLite (70-200 ms at 300,000 messages, with the store's one SQLite connection
held); they now read only the messages in that state, in the order asked for

The index is created in place, so no table is rebuilt.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 18:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NAME = "ix_messages_direction_state_id"


def upgrade() -> None:
    op.create_index(NAME, "messages", ["direction", "state", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(NAME, table_name="messages")
