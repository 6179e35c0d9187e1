"""The tables of the state layer (SQLAlchemy Core), shared by SQLite and PostgreSQL.

The migrations in `migrations/versions/` create exactly these; `tests/store` checks that the
migrated schema and this metadata agree, so the two cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: One row per answer (a CDS Hooks response or a $apply plan): the GuidanceResponse as FHIR JSON,
#: with the columns it is searched by.
guidance_response = Table(
    "guidance_response",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("request_identifier", String(256), nullable=False),
    Column("module", String(256), nullable=False),
    Column("subject", String(300), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("status", String(32), nullable=False),
    Column("resource", Text, nullable=False),
    Index("ix_guidance_response_subject", "subject", "occurred_at"),
    Index("ix_guidance_response_request", "request_identifier"),
    Index("ix_guidance_response_occurred", "occurred_at"),
)

#: Every card answered, so feedback can be joined to the answer and counted per kind and rule
#: (`rules`: the rule ids the card cites, extension.rules, a JSON array read by
#: `dialect.rule_ids`).
issued_card = Table(
    "issued_card",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("guidance_response_id", String(64), nullable=False),
    Column("service", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("rules", Text, nullable=False, server_default="[]"),
    Column("suggestions", Text, nullable=False),  # JSON array of suggestion uuids
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Index("ix_issued_card_issued", "issued_at"),
    Index("ix_issued_card_response", "guidance_response_id"),
)

#: CDS Hooks feedback, one row per feedback item; `dedupe_key` makes a resent item a no-op.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(64), nullable=False),
    Column("service", String(128), nullable=False),
    Column("card_uuid", String(256), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON array
    Column("unknown_suggestions", Text, nullable=False),  # JSON array
    Column("override_reason_system", String(256), nullable=True),
    Column("override_reason_code", String(128), nullable=True),
    Column("outcome_timestamp", String(64), nullable=False),
    Column("card_known", Boolean, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dedupe_key", name="uq_feedback_dedupe_key"),
    Index("ix_feedback_card", "card_uuid"),
    Index("ix_feedback_received", "received_at"),
)

#: Token identifiers already used, per issuer, kept until the token is dead.
replay_token = Table(
    "replay_token",
    metadata,
    Column("iss", String(512), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
    PrimaryKeyConstraint("iss", "jti", name="pk_replay_token"),
    Index("ix_replay_token_expires", "expires_at"),
)

#: Cards raised once per hook instance (order-select fires again with every order picked),
#: kept until the hook instance is over.
raised_card = Table(
    "raised_card",
    metadata,
    Column("hook_instance", String(256), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
    PrimaryKeyConstraint("hook_instance", "kind", name="pk_raised_card"),
    Index("ix_raised_card_expires", "expires_at"),
)
