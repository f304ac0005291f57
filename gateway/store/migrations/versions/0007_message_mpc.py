"""the MPC a message was signed for: a PullRequest takes only messages assigned to the MPC it names (ebMS 3.0
core 3.4); a message queued before its partner's pull.mpc changed was handed out on the new MPC, and the
partner refused it for good

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 21:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("mpc", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("mpc")
