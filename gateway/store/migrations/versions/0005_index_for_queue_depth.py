"""a covering index for the queue-depth metric: every /metrics scrape counts messages by direction, partner
and state, which scanned the whole table (0.75 s on SQLite at 300,000 messages, with the store's one SQLite
connection held) and now reads only this index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAME = "ix_messages_direction_partner_id_state"


def upgrade() -> None:
    op.create_index(NAME, "messages", ["direction", "partner_id", "state"], unique=False)


def downgrade() -> None:
    op.drop_index(NAME, table_name="messages")
