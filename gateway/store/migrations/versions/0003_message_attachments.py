"""supporting documents: the attachments of a permit message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("attachments", sa.JSON(), nullable=True))
    op.create_table(
        "message_attachments",
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.id"],
            name=op.f("fk_message_attachments_message_pk_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_pk", "position", name=op.f("pk_message_attachments")),
    )
    op.create_index(op.f("ix_message_attachments_sha256"), "message_attachments", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_message_attachments_sha256"), table_name="message_attachments")
    op.drop_table("message_attachments")
    op.drop_column("messages", "attachments")
