"""permit lines keep a 1971 preparation's name and whether the line is for re-export

Without them an import line read back from the store had neither, so two rules did nothing on stored data:
BR-07 (an export of another preparation than the import authorizes, EA-008) and the estimate, which counted
the amounts for re-export (1961 Art. 31(1)(b)) against the importing country's.

Lines kept before this revision get NULL and false: the migration reads no payload files (where each document's
own text is), so what they said is not known. Such an import line is not held to its preparation's name, as
before, and a re-export line on it counts against the estimate, as before: the rules err towards refusing.

It also makes each document carried by a message built anew (one that supersedes a FAILED message) name the
message that carries it now, as the store has done since this revision: the registry named the FAILED message,
so once the retention purge had removed that one, resubmitting the document was refused.

It adds an index of the documents by their message, which that step and every supersede use.

Both columns are added in place (SQLite's ADD COLUMN takes a NOT NULL column with a constant default), so no
table is rebuilt and no row that refers to permit_lines is touched.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


DOCUMENTS_BY_MESSAGE = "ix_permit_documents_direction_message_id"
_messages = sa.table("messages", sa.column("id"), sa.column("direction"), sa.column("message_id"))
_events = sa.table("message_events", sa.column("message_pk"), sa.column("kind"), sa.column("detail", sa.JSON()))
_documents = sa.table("permit_documents", sa.column("direction"), sa.column("message_id"))


def upgrade() -> None:
    with op.batch_alter_table("permit_lines") as batch:
        batch.add_column(sa.Column("preparation_name", sa.Text(), nullable=True))
        # a literal, not sa.false(): Alembic rebuilds an SQLite table for a default given as an expression
        batch.add_column(sa.Column("re_export", sa.Boolean(), nullable=False, server_default="0"))
    # before the data step, which looks documents up by their message: without it, a scan of the registry each
    op.create_index(DOCUMENTS_BY_MESSAGE, "permit_documents", ["direction", "message_id"], unique=False)
    _carried_by_successors()


def _carried_by_successors() -> None:
    """Each outbound document names the last message of its chain of successors."""
    superseded = (
        sa.select(_messages.c.message_id, _events.c.detail)
        .join(_events, _events.c.message_pk == _messages.c.id)
        .where(_events.c.kind == "superseded", _messages.c.direction == "out")
    )
    successor = {
        old: detail["superseded_by"]
        for old, detail in op.get_bind().execute(superseded)
        if isinstance(detail, dict) and isinstance(detail.get("superseded_by"), str)
    }
    for old in successor:
        last, seen = successor[old], {old}
        while last in successor and last not in seen:
            seen.add(last)
            last = successor[last]
        op.execute(
            sa.update(_documents)
            .where(_documents.c.direction == "out", _documents.c.message_id == old)
            .values(message_id=last)
        )


def downgrade() -> None:
    op.drop_index(DOCUMENTS_BY_MESSAGE, table_name="permit_documents")
    with op.batch_alter_table("permit_lines") as batch:
        batch.drop_column("re_export")
        batch.drop_column("preparation_name")
