"""messages number their claims (claim_seq) and name the message that superseded them (superseded_by)

claim_seq: every outcome of a send, a lease renewal and a delivery's notes were fenced on the attempts counted
when the message was claimed. An operator's retry or a resubmission starts attempts again from 0, so the numbers
came round: an old send whose lease had run out (claim 1) matched the first claim after the retry (also 1), and
its outcome landed on the new claim while that one was still posting; the message was then claimed and sent
again beside it. claim_seq counts every claim over the message's life and nothing resets it. It starts at the
attempts of the messages that may still be claimed (unfinished, or FAILED and so retried), so the claims already
made keep their numbers; final messages keep 0 (they are never claimed again, and the column is added in place,
with no rewrite of every row).

superseded_by: a FAILED message built anew under a new MessageId was marked so only by an event in its timeline,
which an operator's retry read before moving it: a supersede committed between the two sent the document under
both MessageIds. The move that supersedes it now records the successor's MessageId on the row, and sending it
again requires none. Messages superseded before the upgrade get it from their ``superseded`` event.

Both columns are added in place (claim_seq NOT NULL with a server default of 0), so no table is rebuilt.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# as of this revision: the states a message may still be claimed from, or retried from (FAILED)
CLAIMABLE = ("SUBMITTED", "SENDING", "RETRY_WAIT", "FAILED", "RECEIVED", "ACCEPTED")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("claim_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("superseded_by", sa.String(length=255), nullable=True))
    messages = sa.table(
        "messages",
        sa.column("id"),
        sa.column("state"),
        sa.column("attempts"),
        sa.column("claim_seq"),
        sa.column("superseded_by"),
    )
    op.execute(
        messages.update()
        .where(messages.c.state.in_(CLAIMABLE), messages.c.attempts > 0)
        .values(claim_seq=messages.c.attempts)
    )
    _superseded_from_events(messages)


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("claim_seq")


def _superseded_from_events(messages: sa.TableClause) -> None:
    """Each ``superseded`` event's successor on its message; a message superseded twice (two racing rebuilds
    before this revision) keeps the first."""
    events = sa.table(
        "message_events", sa.column("id"), sa.column("message_pk"), sa.column("kind"), sa.column("detail", sa.JSON)
    )
    connection = op.get_bind()
    found = connection.execute(
        sa.select(events.c.message_pk, events.c.detail).where(events.c.kind == "superseded").order_by(events.c.id)
    )
    for pk, detail in found.all():
        successor = (detail or {}).get("superseded_by")
        if successor:
            connection.execute(
                messages.update()
                .where(messages.c.id == pk, messages.c.superseded_by.is_(None))
                .values(superseded_by=str(successor))
            )
