"""Every table of the message store, on one MetaData. Alembic migrates exactly this."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Id = BigInteger().with_variant(Integer, "sqlite")

messages = Table(
    "messages",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("direction", String(3), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("conversation_id", String(255), nullable=False),
    Column("ref_to_message_id", String(255)),
    Column("partner_id", String(100), nullable=False),
    Column("from_party", String(255), nullable=False),
    Column("to_party", String(255), nullable=False),
    Column("service", String(255), nullable=False),
    Column("action", String(255), nullable=False),
    Column("document_type", String(64)),
    Column("document_number", String(64)),
    Column("payload_sha256", String(64), nullable=False),
    Column("payload_mime_type", String(100), nullable=False),
    Column("wire_sha256", String(64)),
    Column("wire_content_type", Text),
    Column("signed_references", JSON),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("direction", "message_id", "from_party"),
    Index(None, "state", "next_attempt_at"),
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("message_pk", _Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("state", String(20)),
    Column("detail", JSON, nullable=False),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("message_pk", _Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("content_type", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("message_pk", "kind"),
)
