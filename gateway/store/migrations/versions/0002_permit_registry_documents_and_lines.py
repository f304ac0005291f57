"""permit registry: documents and their lines

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:48:14.054638
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "permit_documents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("document_type", sa.String(length=40), nullable=False),
        sa.Column("issuing_country", sa.String(length=2), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("issuing_authority", sa.String(length=64), nullable=False),
        sa.Column("importing_country", sa.String(length=2), nullable=False),
        sa.Column("exporting_country", sa.String(length=2), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("importer", sa.JSON(), nullable=True),
        sa.Column("exporter", sa.JSON(), nullable=True),
        sa.Column("multiple_consignments", sa.Boolean(), nullable=False),
        sa.Column("estimate_year", sa.Integer(), nullable=False),
        sa.Column("emergency_reason", sa.Text(), nullable=True),
        sa.Column("effective_date", sa.Date(), nullable=True),
        sa.Column("cancelled_on", sa.Date(), nullable=True),
        sa.Column("cited", sa.JSON(), nullable=False),
        sa.Column("refers_to", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["refers_to"], ["permit_documents.id"], name=op.f("fk_permit_documents_refers_to_permit_documents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permit_documents")),
        sa.UniqueConstraint(
            "document_type",
            "issuing_country",
            "number",
            name=op.f("uq_permit_documents_document_type_issuing_country_number"),
        ),
    )
    with op.batch_alter_table("permit_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_permit_documents_document_type_status_valid_until"),
            ["document_type", "status", "valid_until"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_permit_documents_importing_country_estimate_year"),
            ["importing_country", "estimate_year"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_permit_documents_refers_to"), ["refers_to"], unique=False)

    op.create_table(
        "permit_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("document_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("substance_id", sa.String(length=64), nullable=False),
        sa.Column("inn", sa.String(length=255), nullable=True),
        sa.Column("pharmaceutical_form", sa.Text(), nullable=True),
        sa.Column("gross_quantity", sa.String(length=40), nullable=False),
        sa.Column("unit_code", sa.String(length=16), nullable=False),
        sa.Column("base_micrograms", sa.BigInteger(), nullable=True),
        sa.Column("reference_line_number", sa.Integer(), nullable=True),
        sa.Column("remaining_micrograms", sa.BigInteger(), nullable=True),
        sa.Column("drawn_micrograms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("drawn_micrograms >= 0", name="ck_permit_lines_drawn_not_negative"),
        sa.CheckConstraint("remaining_micrograms >= 0", name="ck_permit_lines_remaining_not_negative"),
        sa.ForeignKeyConstraint(
            ["document_pk"],
            ["permit_documents.id"],
            name=op.f("fk_permit_lines_document_pk_permit_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permit_lines")),
        sa.UniqueConstraint("document_pk", "line_number", name=op.f("uq_permit_lines_document_pk_line_number")),
    )


def downgrade() -> None:
    op.drop_table("permit_lines")
    with op.batch_alter_table("permit_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_permit_documents_refers_to"))
        batch_op.drop_index(batch_op.f("ix_permit_documents_importing_country_estimate_year"))
        batch_op.drop_index(batch_op.f("ix_permit_documents_document_type_status_valid_until"))

    op.drop_table("permit_documents")
