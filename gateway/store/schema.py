"""Every table of the message store and the permit registry, on one MetaData. Alembic migrates exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
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
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from gateway.store.lifecycle import State


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC on every database: SQLite keeps a timestamp's wall-clock time and drops its
    offset, so 07:00-05:00 would be read back as 07:00 UTC; a naive datetime is refused, not guessed at."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime {value.isoformat()} cannot be stored: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Id = BigInteger().with_variant(Integer, "sqlite")
# A state outside the lifecycle, written by plain SQL, would break every listing that met it (migration 0008).
_KNOWN_STATE = "state IN ({})".format(", ".join(f"'{state.value}'" for state in State))

messages = Table(
    "messages",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("direction", String(3), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("conversation_id", String(255), nullable=False),
    Column("ref_to_message_id", String(255)),
    Column("mpc", String(255)),  # the MPC its signed header names; NULL for final messages stored before 0007
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
    Column("attachments", JSON),
    # the findings (Finding.to_json()) a received document was accepted with, for the national system; NULL for
    # outbound messages and those received before 0010
    Column("findings", JSON),
    # a received message's signed eb:UserMessage, one SHA-256 per item (header_digests() in inbound/receive.py):
    # a resend under its MessageId must match; NULL for outbound messages and those received before 0011
    Column("header_digests", JSON),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # this round's; an operator's retry starts it at 0
    # every claim's number, never reset (0013): the fence of a claim's outcomes, which attempts was until an
    # operator's retry made its numbers come round again and an old claim's outcome land on a new one
    Column("claim_seq", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime()),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", UtcDateTime()),
    Column("expires_at", UtcDateTime()),
    Column("last_error", Text),
    # the MessageId of the message built anew in a FAILED one's place (0013): set by the move that supersedes
    # it, so the database refuses to send it again (the superseded event in its timeline says why)
    Column("superseded_by", String(255)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("direction", "message_id", "from_party"),
    Index(None, "state", "next_attempt_at"),  # claim_due, recover_leases, the pull listing
    Index(None, "state", "updated_at"),  # the retention purge: final state, last moved before the cutoff
    Index(None, "payload_sha256"),  # the purge asks which payload files a message still names
    Index(None, "wire_sha256"),
    Index(None, "direction", "id"),  # the REST listing: newest first in one direction
    Index(None, "direction", "state", "id"),  # the listing by state, the pull inbox's oldest first (0014)
    Index(None, "state", "id"),  # the listing by state in either direction, newest first (0015)
    Index(None, "direction", "partner_id", "state"),  # the queue-depth metric counts from this index alone
    CheckConstraint(_KNOWN_STATE, name="ck_messages_state"),
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("message_pk", _Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("state", String(20)),
    Column("detail", JSON, nullable=False),
    CheckConstraint(_KNOWN_STATE, name="ck_message_events_state"),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("message_pk", _Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("content_type", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("message_pk", "kind"),
)

# Which payload files a message's attachments name (their full description is the messages.attachments JSON):
# the retention purge asks it whether a file is still in use.
message_attachments = Table(
    "message_attachments",
    metadata,
    Column("message_pk", _Id, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Index(None, "sha256"),
)

# The permit registry: every permit document the gateway has sent or received, the current version of its
# content, where it stands (status), and its lines. Quantities are whole micrograms of anhydrous base, exact
# on every database; remaining (an ImportAuthorization line) and drawn (an ExportAuthorization line: what it
# takes from its import line) can never go below zero.

permit_documents = Table(
    "permit_documents",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("document_type", String(40), nullable=False),
    Column("issuing_country", String(2), nullable=False),
    Column("number", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(24), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("issuing_authority", String(64), nullable=False),
    Column("importing_country", String(2), nullable=False),
    Column("exporting_country", String(2), nullable=False),
    Column("valid_from", Date),
    Column("valid_until", Date),
    Column("importer", JSON),
    Column("exporter", JSON),
    Column("multiple_consignments", Boolean, nullable=False),
    Column("estimate_year", Integer, nullable=False),
    Column("emergency_reason", Text),
    Column("effective_date", Date),
    Column("cancelled_on", Date),
    Column("cited", JSON, nullable=False),
    Column("refers_to", _Id, ForeignKey("permit_documents.id"), index=True),
    Column("content_sha256", String(64), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("document_type", "issuing_country", "number"),
    Index(None, "document_type", "status", "valid_until"),
    Index(None, "importing_country", "estimate_year"),
    Index(None, "direction", "message_id"),  # a message built anew takes over its predecessor's documents
    Index(None, "cancelled_on"),  # the daily job's due cancellations: a range of dates, not the whole table
)

permit_lines = Table(
    "permit_lines",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("document_pk", _Id, ForeignKey("permit_documents.id", ondelete="CASCADE"), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("substance_id", String(64), nullable=False),
    Column("inn", String(255)),
    Column("pharmaceutical_form", Text),
    Column("preparation_name", Text),  # a 1971 preparation's name (BR-07); NULL on lines kept before 0009
    Column("re_export", Boolean, nullable=False, default=False, server_default="0"),  # Purpose reExport
    Column("gross_quantity", String(40), nullable=False),
    Column("unit_code", String(16), nullable=False),
    Column("base_micrograms", BigInteger),
    Column("reference_line_number", Integer),
    Column("remaining_micrograms", BigInteger),
    Column("drawn_micrograms", BigInteger),
    UniqueConstraint("document_pk", "line_number"),
    CheckConstraint("remaining_micrograms >= 0", name="ck_permit_lines_remaining_not_negative"),
    CheckConstraint("drawn_micrograms >= 0", name="ck_permit_lines_drawn_not_negative"),
)

# PullRequests answered, by MessageId, until a replay of one would be refused as stale (fresh_until): every
# node of a store answers a PullRequest once (the key decides between two nodes that receive it at once).
pull_requests_answered = Table(
    "pull_requests_answered",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("partner_id", String(100), nullable=False),
    Column("answered_at", UtcDateTime(), nullable=False),
    Column("fresh_until", UtcDateTime(), nullable=False, index=True),
)
