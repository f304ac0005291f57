"""the PullRequests answered, shared by every node of a store: a PullRequest replayed to another node within
its freshness window was answered again (each node remembered only its own)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "pull_requests_answered"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("partner_id", sa.String(length=100), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fresh_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_pull_requests_answered")),
    )
    op.create_index(op.f("ix_pull_requests_answered_fresh_until"), TABLE, ["fresh_until"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pull_requests_answered_fresh_until"), table_name=TABLE)
    op.drop_table(TABLE)
