"""messages keep the findings a received document was accepted with

The checks may accept a received permit with warnings (EA-012: an emergency export the importing authority should
confirm; X-027: over the estimate). They were only in the message's timeline; the national system gets them with
the permit (the folder's .json, the webhook's headers, SOAP contract 1.3, REST pull), read from this column.

Messages still waiting to be delivered (inbound, ACCEPTED) get the findings of their ``accept`` event, so those
received before the upgrade are delivered with them too. Others keep NULL: they were delivered already, and their
timeline still has the findings.

The column is added in place (nullable), so no table is rebuilt.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


_messages = sa.table(
    "messages", sa.column("id"), sa.column("direction"), sa.column("state"), sa.column("findings", sa.JSON())
)
_events = sa.table("message_events", sa.column("message_pk"), sa.column("kind"), sa.column("detail", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("findings", sa.JSON(), nullable=True))
    _waiting_get_their_findings()


def _waiting_get_their_findings() -> None:
    accepted = (
        sa.select(_messages.c.id, _events.c.detail)
        .join(_events, _events.c.message_pk == _messages.c.id)
        .where(_messages.c.direction == "in", _messages.c.state == "ACCEPTED", _events.c.kind == "accept")
    )
    found = [
        {"pk": pk, "findings": detail["findings"]}
        for pk, detail in op.get_bind().execute(accepted)
        if isinstance(detail, dict) and isinstance(detail.get("findings"), list)
    ]
    if found:
        # SET findings from each row's parameters
        op.get_bind().execute(sa.update(_messages).where(_messages.c.id == sa.bindparam("pk")), found)


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("findings")
