"""indexes for the retention purge, the payload files still named and the message listing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 01:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_messages_state_updated_at", ["state", "updated_at"]),
    ("ix_messages_payload_sha256", ["payload_sha256"]),
    ("ix_messages_wire_sha256", ["wire_sha256"]),
    ("ix_messages_direction_id", ["direction", "id"]),
)


def upgrade() -> None:
    for name, columns in INDEXES:
        op.create_index(name, "messages", columns, unique=False)


def downgrade() -> None:
    for name, _ in reversed(INDEXES):
        op.drop_index(name, table_name="messages")
