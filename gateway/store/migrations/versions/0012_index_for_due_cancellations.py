"""an index on permit_documents.cancelled_on for the daily permit job: the cancellations whose date has come
(``cancelled_on <= today``) were found by scanning every permit document, on each run and as each document
that names others is recorded; they are now a range of this index. Few documents have a cancellation, so it
stays small.

The index is created in place, so no table is rebuilt.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME = "ix_permit_documents_cancelled_on"


def upgrade() -> None:
    op.create_index(NAME, "permit_documents", ["cancelled_on"], unique=False)


def downgrade() -> None:
    op.drop_index(NAME, table_name="permit_documents")
