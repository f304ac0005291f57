"""messages keep digests of the signed ebMS header a received message came with

A partner's message sent again under its MessageId is answered with the stored receipt only when it is the same
message. The columns kept (ConversationId, Service, Action, RefToMessageId, the To PartyId, the payloads'
SHA-256) miss the rest of the signed eb:UserMessage: the PartyIds' types and the roles, the Service type, the
AgreementRef, the MessageProperties and each PartInfo's part properties. This column keeps one SHA-256 for each
of those items (``{"MessageProperties": "ab12...", "PartInfo 2": "cd34...", ...}``), so a resend that changed
one is refused naming it.

Messages received before the upgrade keep NULL: their duplicates are compared on the columns alone, as before.
The column is added in place (nullable), so no table is rebuilt.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("header_digests", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("header_digests")
